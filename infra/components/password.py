"""The name under which stacks deployed before infra/docker and infra/kubernetes keep their generated
password's provider (``components.password._PasswordProvider``, pickled by reference). Pulumi unpickles it,
in a process started in infra/, to refresh or destroy those stacks; reading and deleting need nothing but
the defaults. New passwords use ../password.py, whose provider is kept by value."""

from pulumi.dynamic import ResourceProvider


class _PasswordProvider(ResourceProvider):
    """Read returns the state as it is; delete has nothing to remove (the password lives in the state)."""
