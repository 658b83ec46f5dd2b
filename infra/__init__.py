"""The hyperfleet Pulumi program (``__main__.py`` runs it), imported as the package ``infra``.

``docker/`` is the Docker-hosts target, ``kubernetes/`` the Kubernetes targets (any cluster by kubeconfig
context, and GKE); ``config.py`` and ``password.py`` are what both use.
"""
