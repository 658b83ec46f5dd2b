"""The Kubernetes targets: ``target.py``'s KubernetesTarget deploys the chart charts/hyperfleet with the
values ``values.py`` maps from the stack config, on any cluster by kubeconfig context or on GKE (``gke.py``)."""
