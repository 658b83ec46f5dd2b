"""infra/certificates.py: the CA and server certificate Mongo's TLS uses, made by the provider's own code."""

import datetime
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from infra.certificates import RENEW_DAYS, VALID_DAYS, _provider, generate


@pytest.fixture(scope="module")
def made():
    return generate("hyperfleet t mongo", ["hyperfleet-t-mongo", "10.0.0.5", "mongo.example", "::1"])


def test_the_server_certificate_names_each_address_and_is_signed_by_a_ca_that_can_sign_nothing_below_it(made):
    ca = x509.load_pem_x509_certificate(made["ca_cert"].encode())
    server = x509.load_pem_x509_certificate(made["server_cert"].encode())
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["hyperfleet-t-mongo", "mongo.example"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["10.0.0.5", "::1"]
    server.verify_directly_issued_by(ca)
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    assert server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usage = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]
    lifetime = server.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(days=VALID_DAYS - 1) < lifetime <= datetime.timedelta(days=VALID_DAYS)
    assert made["not_after"] == server.not_valid_after_utc.isoformat()


def test_the_one_private_key_kept_is_the_servers_and_the_cas_is_thrown_away(made):
    key = serialization.load_pem_private_key(made["server_key"].encode(), password=None)
    server = x509.load_pem_x509_certificate(made["server_cert"].encode())
    assert key.public_key() == server.public_key()
    assert [k for k, v in made.items() if "PRIVATE KEY" in str(v)] == ["server_key"]


def test_new_certificates_when_the_names_change_or_the_end_is_near(made):
    provider = _provider()
    news = {"common_name": made["common_name"], "names": made["names"], "valid_days": VALID_DAYS, "renew_days": RENEW_DAYS}
    assert provider.diff("id", made, news).changes is False
    moved = provider.diff("id", made, {**news, "names": ["hyperfleet-t-mongo", "10.0.0.6"]})
    assert moved.changes and moved.replaces == ["names"]
    soon = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=RENEW_DAYS - 1)).isoformat()
    expiring = provider.diff("id", {**made, "not_after": soon}, news)
    assert expiring.changes and expiring.replaces == ["not_after"]


def test_the_provider_is_kept_by_value_and_works_where_infra_is_not_importable(tmp_path):
    from pulumi.dynamic.dynamic import serialize_provider

    (tmp_path / "provider").write_text(serialize_provider(_provider()))
    props = "{'common_name': 'c', 'names': ['h'], 'valid_days': 5, 'renew_days': 30}"
    script = ("import base64, dill, sys\n"
              "provider = dill.loads(base64.b64decode(open('provider').read()))\n"
              f"outs = provider.create({props}).outs\n"
              "assert 'infra' not in sys.modules and 'BEGIN PRIVATE KEY' in outs['server_key']\n"
              f"print(provider.diff('i', outs, {props}).replaces)\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['not_after']"  # valid 5 days, renewed in the last 30: made again at once
