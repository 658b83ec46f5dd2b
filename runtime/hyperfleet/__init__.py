"""hyperfleet: hyperopt's distributed mode on pymongo 4, with heartbeats and graceful shutdown."""

from importlib.metadata import version as _version

from .mongo_url import MongoAddress, parse_mongo_url
from .settings import WorkerSettings
from .store import JobStore, StoreUnavailable

__version__ = _version("hyperfleet")  # one place: runtime/pyproject.toml


def __getattr__(name):
    # MongoTrials pulls in hyperopt.fmin; import it on first use so the CLI starts fast
    if name == "MongoTrials":
        from .trials import MongoTrials

        return MongoTrials
    raise AttributeError(name)


__all__ = ["JobStore", "MongoAddress", "MongoTrials", "StoreUnavailable", "WorkerSettings", "parse_mongo_url"]
