"""What the store says when the server answers a new connection and refuses it (``store._refused``): wrong
credentials (mongod's codes 13 and 18, or FerretDB's backend's "authentication failed") are
CredentialsRefused, naming the user; any other refusal is StoreUnavailable with the first line of the
server's message, at most 300 characters, any URL in it redacted. (tests/integration/test_secrets.py
gives a real server a wrong password.)"""

import pytest
from pymongo.errors import OperationFailure

from hyperfleet.mongo_url import parse_mongo_url
from hyperfleet.store import CredentialsRefused, StoreUnavailable, _refused

ADDRESS = parse_mongo_url("mongodb://ann:s3cret@db.example:27017/hpo")


@pytest.mark.parametrize("error", [OperationFailure("Authentication failed.", code=18),
                                   OperationFailure("not authorized on admin", code=13),
                                   OperationFailure('password authentication failed for user "ann"', code=1)],
                         ids=["mongod 18", "mongod 13", "ferretdb"])
def test_a_refused_login_names_the_user_not_the_password(error):
    refused = _refused(ADDRESS, error)
    assert isinstance(refused, CredentialsRefused)
    assert str(refused) == (f"MongoDB at {ADDRESS.redacted()} refused the credentials of user 'ann': "
                            "authentication failed")
    assert "s3cret" not in str(refused)


def test_another_refusal_says_the_first_line_of_the_servers_message_redacted_and_bounded():
    first = "replica set mongodb://ann:s3cret@other:1/ is not ready " + "x" * 400
    refused = _refused(ADDRESS, OperationFailure(f"{first}\nsecond line", code=2))
    assert type(refused) is StoreUnavailable
    prefix = f"MongoDB at {ADDRESS.redacted()} refused the connection's first command: "
    assert str(refused) == prefix + first.replace("s3cret", "***")[:300]
