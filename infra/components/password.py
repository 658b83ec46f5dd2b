"""A generated password kept in the stack's state as a secret (a dynamic provider: no plugin needed).

Generated once at create and read back from the state afterwards, so every `pulumi up` sees the same
value and a no-op update stays a no-op.
"""

from __future__ import annotations

import secrets

import pulumi
from pulumi.dynamic import CreateResult, Resource, ResourceProvider


class _PasswordProvider(ResourceProvider):
    def create(self, props):
        return CreateResult(id_=secrets.token_hex(8), outs={"length": props["length"],
                                                            "result": secrets.token_urlsafe(int(props["length"]))})


class GeneratedPassword(Resource):
    result: pulumi.Output[str]

    def __init__(self, name: str, length: int = 24, opts: pulumi.ResourceOptions | None = None):
        super().__init__(_PasswordProvider(), name, {"length": length, "result": None},
                         pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["result"])))
