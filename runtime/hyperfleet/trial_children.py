"""What the ``--subprocesses`` forkserver imports before it forks trial children (worker.py sets it as
the forkserver's preload): the commands' deferral of unused imports (startup.py), then what a trial runs.
The forkserver is a fresh interpreter, so the worker's own deferral does not reach it."""

from .startup import defer_unused_imports

defer_unused_imports()

from . import evaluation  # noqa: E402,F401  (after the deferral: it imports hyperopt)
