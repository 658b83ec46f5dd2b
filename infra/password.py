"""A generated password kept in the stack's state as a secret (a dynamic provider: no plugin needed);
both targets make one for Mongo's root user.

Generated once at create and read back from the state afterwards, so every `pulumi up` sees the same
value and a no-op update stays a no-op.

Pulumi keeps the provider in the state, pickled, and unpickles it from there to read or delete the
password, in a process that runs in infra/ (where this module is not ``infra.password``). So the provider
is pickled by value (its class is made in a function, which the pickler can't import by name): the state
does not depend on where this file is. Its diff compares the length only, so another copy of the same
code (another checkout, a moved file) is no change. Stacks made before infra/docker and infra/kubernetes
name the old module instead (components/password.py keeps that name importable).
"""

from __future__ import annotations

import secrets

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, Resource, ResourceProvider


def _provider() -> ResourceProvider:
    class PasswordProvider(ResourceProvider):
        def create(self, props):
            return CreateResult(id_=secrets.token_hex(8), outs={"length": props["length"],
                                                                "result": secrets.token_urlsafe(int(props["length"]))})

        def diff(self, _id, olds, news):
            changed = olds.get("length") != news.get("length")
            return DiffResult(changes=changed, replaces=["length"] if changed else [])

    return PasswordProvider()


class GeneratedPassword(Resource):
    result: pulumi.Output[str]

    def __init__(self, name: str, length: int = 24, opts: pulumi.ResourceOptions | None = None):
        super().__init__(_provider(), name, {"length": length, "result": None},
                         pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["result"])))
