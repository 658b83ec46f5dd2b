"""Parse the MongoDB addresses users already have into one canonical form.

Accepted spellings:

* ``mongodb://[user:pw@]host[:port][,host2...]/db[?options]`` and ``mongodb+srv://...``
* hyperopt's ``mongo://[user:pw@]host[:port]/db[/collection]``
* hyperopt-mongo-worker's bare ``host[:port]/db`` (its ``--mongo`` flag)

TLS options go in the query as pymongo takes them (``?tls=true&tlsCAFile=/path/ca.pem``: what a deployed
stack gives its containers when Mongo is reachable beyond one machine); a file they name must be readable.

The database defaults to ``hyperopt`` and the jobs collection to ``jobs``, as in hyperopt.
"""

from __future__ import annotations

import dataclasses
import os
import re
import urllib.parse

from pymongo.errors import ConfigurationError, InvalidURI
from pymongo.uri_parser import parse_uri

from .contract import MONGO_PORT

DEFAULT_DATABASE = "hyperopt"
DEFAULT_COLLECTION = "jobs"

_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")


class MongoUrlError(ValueError):
    """The address cannot be understood; the message says why."""


@dataclasses.dataclass(frozen=True)
class MongoAddress:
    uri: str  # a mongodb:// URI that pymongo accepts, without the collection part
    database: str
    collection: str = DEFAULT_COLLECTION

    def redacted(self) -> str:
        """The URI with any password replaced, for logs and error messages."""
        return redact_url(self.uri)


#: query options whose values are secrets (a client key's passphrase; AWS_SESSION_TOKEN in the properties)
SECRET_OPTIONS = ("tlsCertificateKeyFilePassword", "authMechanismProperties")
_SECRET_OPTION = re.compile(r"([?&](?:%s)=)[^&#]*" % "|".join(SECRET_OPTIONS), re.IGNORECASE)
#: query options that name files the client reads (pymongo checks they are readable)
_FILE_OPTIONS = ("tlsCAFile", "tlsCertificateKeyFile", "tlsCRLFile")


def redact_url(url: str) -> str:
    """``url`` with the password of its user part (``user:password@``) and the values of secret query options
    (``SECRET_OPTIONS``) replaced by ``***``."""
    return _SECRET_OPTION.sub(r"\1***", re.sub(r"(://[^:/@]+:)[^@/]*@", r"\1***@", url))


def parse_uri_user(uri: str) -> str | None:
    """The user name in a ``mongodb://user:password@host`` URI, if any."""
    match = re.match(r"^[a-z+]+://([^:/@]+)(?::[^@/]*)?@", uri)
    return urllib.parse.unquote(match.group(1)) if match else None


def compose_mongo_url(address: str | None, port: str | int | None, database: str | None) -> str:
    """hyperkops' three settings (``mongo_db_address``, ``mongo_db_port``, ``trials_db``) as one URL."""
    port = str(port or MONGO_PORT)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise MongoUrlError(f"the MongoDB port must be a number from 1 to 65535, got {port!r}")
    return f"mongodb://{address or 'localhost'}:{port}/{database or 'model_db'}"


def parse_mongo_url(text: str) -> MongoAddress:
    text = (text or "").strip()
    if not text:
        raise MongoUrlError("empty MongoDB address")

    collection = DEFAULT_COLLECTION
    if text.startswith("mongo://"):
        text = "mongodb://" + text[len("mongo://"):]
        text, collection = _split_collection(text)
    elif "://" not in text:
        text, collection = _split_collection("mongodb://" + text)
    elif not text.startswith(("mongodb://", "mongodb+srv://")):
        scheme = text.split("://", 1)[0]
        raise MongoUrlError(f"unsupported scheme {scheme!r}: use mongodb:// or mongo://")

    try:
        parsed = parse_uri(text, validate=True, warn=False, connect_timeout=1)
    except (InvalidURI, ConfigurationError, ValueError) as err:
        raise MongoUrlError(f"malformed MongoDB URL: {redact_url(str(err))}") from None
    except OSError:  # a TLS file the query names (pymongo opens it to check)
        raise MongoUrlError(f"the MongoDB URL names a file that is not readable here: {_unreadable(text)}") from None

    database = parsed.get("database") or DEFAULT_DATABASE
    if not _NAME.match(database):
        raise MongoUrlError(f"bad database name {database!r}")
    if parsed.get("collection"):
        collection = parsed["collection"]
    if not _NAME.match(collection):
        raise MongoUrlError(f"bad collection name {collection!r}")
    if not parsed.get("database"):
        text = _with_database(text, database)
    return MongoAddress(uri=text, database=database, collection=collection)


def _unreadable(uri: str) -> str:
    """The ``option=path`` pairs of ``uri``'s query whose file can't be read."""
    query = urllib.parse.parse_qs(uri.partition("?")[2])
    named = {key: values[-1] for key, values in query.items() if key.lower() in {o.lower() for o in _FILE_OPTIONS}}
    bad = [f"{key}={path}" for key, path in named.items() if not os.access(path, os.R_OK)]
    return ", ".join(bad) or ", ".join(f"{key}={path}" for key, path in named.items())


def _split_collection(uri: str) -> tuple[str, str]:
    """Take hyperopt's trailing ``/collection`` off ``mongodb://host/db/collection``."""
    head, sep, query = uri.partition("?")
    scheme, rest = head.split("://", 1)
    parts = rest.split("/")
    collection = DEFAULT_COLLECTION
    if len(parts) == 3 and parts[2]:
        collection = parts.pop()
    elif len(parts) > 3:
        raise MongoUrlError(f"malformed MongoDB URL: too many path parts in {uri!r}")
    return f"{scheme}://{'/'.join(parts)}{sep}{query}", collection


def _with_database(uri: str, database: str) -> str:
    head, sep, query = uri.partition("?")
    scheme, rest = head.split("://", 1)
    hosts = rest.split("/", 1)[0]
    return f"{scheme}://{hosts}/{database}{sep}{query}"
