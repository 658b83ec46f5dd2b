import pytest

from hyperfleet.mongo_url import MongoUrlError, parse_mongo_url


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
