"""Environment variables -> worker arguments, compatible with hyperkops' worker image.

* ``MONGO_URL``: the whole address; otherwise ``MONGO_DB_ADDRESS`` (default ``localhost``),
  ``MONGO_DB_PORT`` (default ``27017``) and ``TRIALS_DB`` (default ``model_db``) when any is set.
* ``HYPEROPT_<FLAG>`` and ``HYPEROPT_ARG_<FLAG>``: ``--<flag-with-dashes> VALUE`` for every flag of
  ``hyperopt-mongo-worker``; a switch (``--no-subprocesses``) is on for ``1/true/yes/on`` or empty,
  off for ``0/false/no/off``.

The mapped arguments go before the command line's, so flags given on the command line win.
An unknown ``HYPEROPT_`` variable is an error that names it, except variables hyperopt itself reads.
"""

from __future__ import annotations

from collections.abc import Mapping

from .contract import MONGO_URL_ENV
from .mongo_url import MongoUrlError, compose_mongo_url

# flag of hyperopt-mongo-worker -> whether it takes a value
WORKER_FLAGS: dict[str, bool] = {
    "exp-key": True,
    "last-job-timeout": True,
    "max-consecutive-failures": True,
    "max-jobs": True,
    "max-jobs-in-db": True,
    "mongo": True,
    "no-subprocesses": False,
    "poll-interval": True,
    "reserve-timeout": True,
    "workdir": True,
}
# read by the hyperopt library itself, not worker flags
HYPEROPT_LIBRARY_VARIABLES = frozenset({"HYPEROPT_FMIN_SEED"})

_TRUE = {"", "1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class EnvMappingError(ValueError):
    """A variable cannot be mapped; the message names it."""


def mongo_url_from_env(environ: Mapping[str, str]) -> str | None:
    if environ.get(MONGO_URL_ENV):
        return environ[MONGO_URL_ENV]
    names = ("MONGO_DB_ADDRESS", "MONGO_DB_PORT", "TRIALS_DB")
    if not any(environ.get(n) for n in names):
        return None
    try:
        return compose_mongo_url(environ.get("MONGO_DB_ADDRESS"), environ.get("MONGO_DB_PORT"), environ.get("TRIALS_DB"))
    except MongoUrlError as err:
        raise EnvMappingError(f"MONGO_DB_PORT: {err}") from None


def flag_for_variable(name: str) -> str | None:
    """``HYPEROPT_ARG_EXP_KEY`` -> ``exp-key``; None for variables that are not worker flags."""
    if name in HYPEROPT_LIBRARY_VARIABLES:
        return None
    for prefix in ("HYPEROPT_ARG_", "HYPEROPT_"):
        if name.startswith(prefix):
            return name[len(prefix):].lower().replace("_", "-")
    return None


def worker_args_from_env(environ: Mapping[str, str]) -> list[str]:
    args: list[str] = []
    url = mongo_url_from_env(environ)
    if url:
        args += ["--mongo", url]
    for name in sorted(environ):
        flag = flag_for_variable(name)
        if flag is None:
            continue
        if flag not in WORKER_FLAGS:
            known = ", ".join("HYPEROPT_" + f.upper().replace("-", "_") for f in WORKER_FLAGS)
            raise EnvMappingError(f"unknown environment variable {name}: it maps to no worker flag (known: {known})")
        value = environ[name]
        if WORKER_FLAGS[flag]:
            args += [f"--{flag}", value]
        elif value.strip().lower() in _TRUE:
            args.append(f"--{flag}")
        elif value.strip().lower() not in _FALSE:
            raise EnvMappingError(f"{name} is a switch: use true or false, got {value!r}")
    return args
