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


@pytest.mark.parametrize("text", ["", "http://h/db", "mongodb://h:port/db", "mongo://h/db/c/extra", "mongodb://h/bad name"])
def test_rejected(text):
    with pytest.raises(MongoUrlError):
        parse_mongo_url(text)
