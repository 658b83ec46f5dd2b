import pytest

from hyperfleet.mongo_url import MongoUrlError, parse_mongo_url, redact_url


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
