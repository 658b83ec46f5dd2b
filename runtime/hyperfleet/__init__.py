"""hyperfleet: hyperopt's distributed mode on pymongo 4, with heartbeats and graceful shutdown."""

from importlib.metadata import version as _version

from .mongo_url import MongoAddress, parse_mongo_url
from .pruning import TrialPruned, report
from .settings import WorkerSettings
from .store import JobStore, StoreUnavailable

__version__ = _version("hyperfleet")  # one place: runtime/pyproject.toml


def __getattr__(name):
    # MongoTrials and fmin pull in hyperopt.fmin; import them on first use so the CLI starts fast
    if name in ("MongoTrials", "fmin"):
        from . import trials

        return getattr(trials, name)
    raise AttributeError(name)


__all__ = ["JobStore", "MongoAddress", "MongoTrials", "StoreUnavailable", "TrialPruned", "WorkerSettings", "fmin",
           "parse_mongo_url", "report"]
