"""Turning a trial document into a call of the user's objective, in this process or a child.

A trial's ``misc.cmd`` says how to find the objective, as in hyperopt:

* ``("domain_attachment", NAME)``: a pickled ``hyperopt.base.Domain`` stored by the driver as the
  experiment attachment NAME (what ``fmin`` does). Workers keep the unpickled domain per stored file,
  so it is downloaded and unpickled once per experiment run, not once per trial;
* ``("token_load", "package.module.function")``: an importable function ``fn(spec, ctrl)``.

``run_job_file()`` is what the child process of a worker started with ``--subprocesses`` runs: it
reads the job from a pickle and writes the outcome to another.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import pickle
import traceback
from typing import Any, Callable

import gridfs
from hyperopt import base

from .pruning import TrialPruned, check_value, reporting
from .store import JobStore


class ObjectiveUnavailable(Exception):
    """The trial's objective cannot be loaded (bad command, missing attachment, unpicklable)."""


class ChildDied(RuntimeError):
    """The child process evaluating a trial exited without writing its outcome (killed, crashed)."""


@dataclasses.dataclass
class Outcome:
    """What one evaluation produced: a result and attachments, or an error with its traceback."""

    result: dict | None = None
    attachments: dict[str, bytes] = dataclasses.field(default_factory=dict)
    error: tuple[str, str] | None = None
    traceback: str = ""
    #: set when the trial's pruning rule stopped it: ``hyperfleet.pruned`` (step, rule, at)
    pruned: dict | None = None

    @classmethod
    def from_exception(cls, err: BaseException, attachments: dict[str, bytes] | None = None) -> Outcome:
        return cls(error=(str(type(err)), str(err)), traceback="".join(traceback.format_exception(err)),
                   attachments=dict(attachments or {}))


@dataclasses.dataclass(frozen=True)
class Job:
    """Everything a child process needs to evaluate one trial without a database connection."""

    cmd: tuple
    spec: dict
    domain_blob: bytes | None = None
    workdir: str | None = None
    #: the trial as the objective's ``ctrl.current_trial`` sees it (tid, exp_key, owner, the worker's identity)
    trial: dict = dataclasses.field(default_factory=dict)


class ObjectiveLoader:
    """Finds the job behind a trial, caching experiment domains by their stored file id."""

    def __init__(self, store: JobStore):
        self._store = store
        self._blobs: dict[Any, bytes] = {}
        self._domains: dict[Any, base.Domain] = {}

    def job(self, doc: dict, workdir: str | None) -> Job:
        cmd = tuple(doc["misc"].get("cmd") or ())
        spec = base.spec_from_misc(doc["misc"])
        trial = {"tid": doc.get("tid"), "exp_key": doc.get("exp_key"), "owner": doc.get("owner"),
                 "hyperfleet": {"worker": (doc.get("hyperfleet") or {}).get("worker") or {}}}
        if cmd and cmd[0] == "domain_attachment":
            _, blob = self._domain_blob(cmd[1], doc)
            return Job(cmd=cmd, spec=spec, domain_blob=blob, workdir=workdir, trial=trial)
        return Job(cmd=cmd, spec=spec, workdir=workdir, trial=trial)

    def function(self, doc: dict) -> Callable[[dict, base.Ctrl], Any]:
        cmd = tuple(doc["misc"].get("cmd") or ())
        if cmd and cmd[0] == "domain_attachment":
            file_id, blob = self._domain_blob(cmd[1], doc)
            if file_id not in self._domains:
                self._domains.clear()
                self._domains[file_id] = unpickle_domain(blob)
            return self._domains[file_id].evaluate
        return resolve_function(cmd)

    def _domain_blob(self, name: str, doc: dict) -> tuple[Any, bytes]:
        # trials inserted through hyperfleet name the file; others (from a stock driver) are looked up,
        # and so are trials whose file was replaced since (a driver that ran fmin again)
        stamped = (doc.get("hyperfleet") or {}).get("domain_file_id")
        blob = self._blob(stamped) if stamped else None
        if blob is not None:
            return stamped, blob
        latest = self._store.latest_attachment_id(name, doc.get("exp_key"))
        blob = self._blob(latest) if latest else None
        if blob is None:
            raise ObjectiveUnavailable(f"attachment {name!r} of experiment {doc.get('exp_key')!r} not found")
        return latest, blob

    def _blob(self, file_id: Any) -> bytes | None:
        """The stored file, cached; None when it no longer exists."""
        if file_id not in self._blobs:
            try:
                blob = self._store.read_file(file_id)
            except gridfs.NoFile:
                return None
            self._blobs.clear()  # one experiment's domain at a time: drivers replace it on each fmin
            self._blobs[file_id] = blob
        return self._blobs[file_id]


def unpickle_domain(blob: bytes) -> base.Domain:
    try:
        return pickle.loads(blob)
    except Exception as err:
        raise ObjectiveUnavailable(f"cannot unpickle the experiment's domain: {type(err).__name__}: {err}") from err


def resolve_function(cmd: tuple) -> Callable:
    if len(cmd) != 2 or cmd[0] != "token_load":
        raise ObjectiveUnavailable(f"unsupported trial command {cmd!r}")
    module_name, _, attr = str(cmd[1]).rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as err:
        raise ObjectiveUnavailable(f"cannot import {cmd[1]!r}: {err}") from err


class CollectingCtrl(base.Ctrl):
    """The ``ctrl`` of a child process: attachments are collected and sent back to the worker."""

    def __init__(self, trial: dict | None = None):
        super().__init__(trials=None, current_trial=trial)
        self._attachments: dict[str, bytes] = {}

    def checkpoint(self, r=None):  # the parent worker heartbeats for the child
        pass

    @property
    def attachments(self):
        return self._attachments


class ParentReporter:
    """``hyperfleet.report`` in a child process: each value goes to the worker (the parent), which
    stores and judges it; its answer says whether the trial was pruned."""

    def __init__(self, conn):
        self._conn = conn
        self._pruned = False

    def report(self, step, loss) -> None:
        step, loss = check_value(step, loss)
        if not self._pruned:
            self._conn.send((step, loss))
            self._pruned = bool(self._conn.recv())
        if self._pruned:
            raise TrialPruned(f"the trial was pruned at step {step}")


def evaluate_job(job: Job, conn=None) -> Outcome:
    """Evaluate a job in this process with a ``CollectingCtrl`` (the child side); its reports go to
    ``conn`` (the worker's end of a pipe) when given."""
    ctrl = CollectingCtrl(job.trial)
    try:
        if job.domain_blob is not None:
            fn = unpickle_domain(job.domain_blob).evaluate
        else:
            fn = resolve_function(job.cmd)
        if job.workdir:
            os.makedirs(job.workdir, exist_ok=True)
            os.chdir(job.workdir)
        with reporting(ParentReporter(conn)) if conn is not None else contextlib.nullcontext():
            result = base.SONify(fn(job.spec, ctrl))
    except BaseException as err:  # noqa: BLE001 - every failure of the objective is the trial's ERROR
        return Outcome.from_exception(err, ctrl.attachments)
    attachments = dict(ctrl.attachments)
    attachments.update(result.pop("attachments", None) or {})
    return Outcome(result=result, attachments=attachments)


def run_job_file(in_path: str, out_path: str, conn=None) -> None:
    """Evaluate the pickled job at ``in_path`` once and write the pickled outcome to ``out_path``
    (atomically: a half-written file never looks like a result); reports go to ``conn``."""
    with open(in_path, "rb") as f:
        job = pickle.load(f)
    outcome = evaluate_job(job, conn)
    try:
        payload = pickle.dumps(outcome)
    except Exception as err:  # an unpicklable result is the trial's error, not the child's crash
        payload = pickle.dumps(Outcome.from_exception(err))
    with open(out_path + ".tmp", "wb") as f:
        f.write(payload)
    os.replace(out_path + ".tmp", out_path)
