import dataclasses

import pytest

from hyperfleet.mongo_url import MongoUrlError, compose_mongo_url, parse_mongo_url, parse_uri_user, redact_url


@pytest.mark.parametrize(
    "text,uri,database,collection",
    [
        ("localhost/hyperopt", "mongodb://localhost/hyperopt", "hyperopt", "jobs"),
        ("db:27017/trials", "mongodb://db:27017/trials", "trials", "jobs"),
        ("mongo://h:27017/db/jobs2", "mongodb://h:27017/db", "db", "jobs2"),
        ("mongodb://h", "mongodb://h/hyperopt", "hyperopt", "jobs"),
        ("mongodb://u:pw@h:1/x?authSource=admin", "mongodb://u:pw@h:1/x?authSource=admin", "x", "jobs"),
        ("mongodb://a:1,b:2/x?replicaSet=rs", "mongodb://a:1,b:2/x?replicaSet=rs", "x", "jobs"),
    ],
)
def test_accepted_spellings(text, uri, database, collection):
    address = parse_mongo_url(text)
    assert (address.uri, address.database, address.collection) == (uri, database, collection)


def test_password_is_redacted():
    assert parse_mongo_url("mongodb://user:secret@h/db").redacted() == "mongodb://user:***@h/db"


@pytest.mark.parametrize("text,message", [
    ("", "empty MongoDB address"),
    ("http://h/db", "unsupported scheme 'http': use mongodb:// or mongo://"),
    ("mongodb://h:port/db", "malformed MongoDB URL: "),
    ("mongo://h/db/c/extra", "malformed MongoDB URL: too many path parts in "),
    ("mongodb://h/bad name", "malformed MongoDB URL: Bad database name"),
])
def test_rejected_saying_why(text, message):
    with pytest.raises(MongoUrlError) as err:
        parse_mongo_url(text)
    assert str(err.value).startswith(message), str(err.value)


def test_tls_options_in_the_query_are_kept_and_the_database_and_collection_found(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")  # pymongo only checks that it can be read here
    for text, collection in ((f"mongodb://u:p%2F@h:27017/trials?authSource=admin&tls=true&tlsCAFile={ca}", "jobs"),
                             (f"mongo://u:p@h:27017/trials/jobs2?tls=true&tlsCAFile={ca}", "jobs2"),
                             (f"h:27017/trials?tls=true&tlsCAFile={ca}", "jobs")):
        address = parse_mongo_url(text)
        assert (address.database, address.collection) == ("trials", collection)
        assert address.uri.endswith(f"/trials?{text.split('?')[1]}")
        assert f"tlsCAFile={ca}" in address.redacted() and ":p@" not in address.redacted()


def test_a_tls_file_that_can_not_be_read_is_named():
    with pytest.raises(MongoUrlError) as err:
        parse_mongo_url("mongodb://u:secret@h/db?tls=true&tlsCAFile=/nonexistent/ca.pem")
    assert str(err.value) == "the MongoDB URL names a file that is not readable here: tlsCAFile=/nonexistent/ca.pem"


@pytest.mark.parametrize("query", ["tlsCertificateKeyFilePassword=hunter2", "tlscertificatekeyfilepassword=hunter2",
                                   "authMechanismProperties=AWS_SESSION_TOKEN:hunter2"])
def test_secret_query_options_are_redacted(query):
    redacted = redact_url(f"mongodb://user:pw@h/db?tls=true&{query}&appname=x")
    assert "hunter2" not in redacted and "pw" not in redacted
    assert redacted.startswith("mongodb://user:***@h/db?tls=true&") and redacted.endswith("=***&appname=x")


@pytest.mark.parametrize("port,accepted", [("0", False), ("1", True), ("65535", True), ("65536", False), ("x1", False)])
def test_hyperkops_settings_take_ports_from_1_to_65535(port, accepted):
    if accepted:
        assert compose_mongo_url("db", port, "trials") == f"mongodb://db:{port}/trials"
        return
    with pytest.raises(MongoUrlError) as err:
        compose_mongo_url("db", port, "trials")
    assert str(err.value) == f"the MongoDB port must be a number from 1 to 65535, got '{port}'"


def test_a_trailing_slash_after_the_database_is_not_taken_for_a_collection():
    with pytest.raises(MongoUrlError) as err:
        parse_mongo_url("mongo://h:27017/db/")
    assert str(err.value).startswith("malformed MongoDB URL: ") and "too many path parts" not in str(err.value)


def test_the_default_database_goes_after_every_host_and_before_the_query():
    address = parse_mongo_url("mongodb://h1:27017,h2:27018/?replicaSet=rs")
    assert address.uri == "mongodb://h1:27017,h2:27018/hyperopt?replicaSet=rs"


def test_unknown_query_options_are_refused_not_ignored():
    with pytest.raises(MongoUrlError) as err:
        parse_mongo_url("mongodb://h/db?bogusOption=1")
    assert str(err.value).startswith("malformed MongoDB URL: Unknown option")


def test_the_tls_file_named_is_the_one_pymongo_opens(tmp_path):
    readable = tmp_path / "ca.pem"
    readable.write_text("-----BEGIN CERTIFICATE-----\n")
    # the last of a repeated option wins (pymongo warns of the repetition)
    with pytest.raises(MongoUrlError) as err, pytest.warns(UserWarning, match="Duplicate URI option"):
        parse_mongo_url(f"mongodb://h/db?tls=true&tlsCAFile={readable}&tlsCAFile=/nonexistent/ca.pem")
    assert str(err.value).endswith(": tlsCAFile=/nonexistent/ca.pem")
    # a path that os.access calls readable but that can't be opened as a file: named all the same
    with pytest.raises(MongoUrlError) as err:
        parse_mongo_url(f"mongodb://h/db?tls=true&tlsCAFile={tmp_path}")
    assert str(err.value) == f"the MongoDB URL names a file that is not readable here: tlsCAFile={tmp_path}"


@pytest.mark.parametrize("uri,user", [("mongodb://al%40ice:pw@h/db", "al@ice"), ("mongodb+srv://bob@h/db", "bob"),
                                      ("mongodb://h/db", None), ("mongodb://h/db?authSource=u:p@x", None)])
def test_the_user_name_of_a_uri(uri, user):
    assert parse_uri_user(uri) == user


def test_an_address_cannot_change_once_parsed():
    address = parse_mongo_url("mongodb://h/db")
    with pytest.raises(dataclasses.FrozenInstanceError):
        address.database = "other"


def test_of_several_tls_files_only_the_unreadable_one_is_named(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    with pytest.raises(MongoUrlError) as err:
        parse_mongo_url(f"mongodb://h/db?tls=true&tlsCAFile={ca}&tlsCertificateKeyFile=/nonexistent/client.pem")
    assert str(err.value).endswith(": tlsCertificateKeyFile=/nonexistent/client.pem")


def test_an_unescaped_scheme_separator_in_the_credentials_is_a_url_error():
    with pytest.raises(MongoUrlError):
        parse_mongo_url("mongo://user:pa://ss@h/db/jobs")


def test_an_address_pymongo_cannot_configure_is_the_stores_error_naming_it():
    """Refused before any connection (no server needed): SCRAM without a user."""
    from hyperfleet.store import JobStore, StoreUnavailable

    with pytest.raises(StoreUnavailable, match=r"^cannot use the MongoDB address mongodb://127\.0\.0\.1:1/db\?authMechanism="
                                               r"SCRAM-SHA-256: SCRAM-SHA-256 requires a username$"):
        JobStore.connect("mongodb://127.0.0.1:1/db?authMechanism=SCRAM-SHA-256", timeout_seconds=1)
