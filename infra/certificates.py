"""A CA and a server certificate signed by it, kept in the stack's state (a dynamic provider: no plugin
needed, made with the ``cryptography`` package); the Docker target makes one for Mongo when it is
reachable beyond one machine.

Generated at create and read back from the state afterwards, as password.py's GeneratedPassword (and
pickled by value for the same reason: read its docstring). The CA's key is thrown away once it has signed:
no other certificate can ever be made under that CA, so clients that trust it trust this server only. The
server's key is a secret output; the certificates are public. They are made again (replaced) when the
names change, or when ``pulumi up`` runs in the last RENEW_DAYS of their validity.
"""

from __future__ import annotations

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, Resource, ResourceProvider

#: how long the certificates are valid, and how close to the end `pulumi up` makes new ones
VALID_DAYS = 3650
RENEW_DAYS = 30


def _provider() -> ResourceProvider:
    class CertificatesProvider(ResourceProvider):
        def create(self, props):
            import datetime
            import ipaddress
            import secrets

            from cryptography import x509
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.hazmat.primitives.asymmetric import ec
            from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

            def name(common_name: str) -> x509.Name:
                return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hyperfleet"),
                                  x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])

            def san(entry: str) -> x509.GeneralName:
                try:
                    return x509.IPAddress(ipaddress.ip_address(entry))
                except ValueError:
                    return x509.DNSName(entry)

            def pem(cert: x509.Certificate) -> str:
                return cert.public_bytes(serialization.Encoding.PEM).decode()

            names = list(props["names"])
            now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
            not_before, not_after = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=int(props["valid_days"]))
            ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
            ca_name = name(f"{props['common_name']} CA")
            ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
                  .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
                  .not_valid_before(not_before).not_valid_after(not_after)
                  .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                  .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                               data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                               crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
                  .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
                  .sign(ca_key, hashes.SHA256()))
            server = (x509.CertificateBuilder().subject_name(name(names[0])).issuer_name(ca_name)
                      .public_key(server_key.public_key()).serial_number(x509.random_serial_number())
                      .not_valid_before(not_before).not_valid_after(not_after)
                      .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                      .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                                   data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                                   crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
                      .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                      .add_extension(x509.SubjectAlternativeName([san(n) for n in names]), critical=False)
                      .add_extension(x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False)
                      .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
                      .sign(ca_key, hashes.SHA256()))
            key = server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()).decode()
            return CreateResult(id_=secrets.token_hex(8), outs={
                "common_name": props["common_name"], "names": names, "valid_days": props["valid_days"],
                "renew_days": props["renew_days"], "not_after": not_after.isoformat(),
                "ca_cert": pem(ca), "server_cert": pem(server), "server_key": key})

        def diff(self, _id, olds, news):
            import datetime

            changed = [k for k in ("common_name", "names", "valid_days") if olds.get(k) != news.get(k)]
            now = datetime.datetime.now(datetime.timezone.utc)
            not_after = datetime.datetime.fromisoformat(olds["not_after"]) if olds.get("not_after") else now
            if not_after - now < datetime.timedelta(days=int(news.get("renew_days", 0))):
                changed.append("not_after")  # expiring (or from an older state without it): new certificates
            return DiffResult(changes=bool(changed), replaces=changed)

    return CertificatesProvider()


class GeneratedCertificates(Resource):
    #: PEM: the CA clients trust, the server's certificate (both public) and its key (a secret output)
    ca_cert: pulumi.Output[str]
    server_cert: pulumi.Output[str]
    server_key: pulumi.Output[str]
    not_after: pulumi.Output[str]

    def __init__(self, name: str, common_name: str, names: list[str], opts: pulumi.ResourceOptions | None = None):
        """``names``: the server's DNS names and IP addresses (its subjectAltName), the first also its
        common name."""
        if not names:
            raise ValueError("a server certificate needs at least one name")
        super().__init__(_provider(), name, {"common_name": common_name, "names": list(dict.fromkeys(names)),
                                             "valid_days": VALID_DAYS, "renew_days": RENEW_DAYS, "not_after": None,
                                             "ca_cert": None, "server_cert": None, "server_key": None},
                         pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["server_key"])))


def generate(common_name: str, names: list[str], valid_days: int = VALID_DAYS) -> dict[str, str]:
    """The provider's own generation outside Pulumi (tests, the testbed): ca_cert, server_cert, server_key."""
    return _provider().create({"common_name": common_name, "names": names, "valid_days": valid_days,
                               "renew_days": RENEW_DAYS}).outs
