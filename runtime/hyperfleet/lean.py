"""Imported first by the ``--subprocesses`` forkserver (hyperfleet.worker.forkserver_preload), before
hyperfleet.evaluation: the imports hyperopt makes that no trial uses are deferred there as in the worker
(hyperfleet.startup), so that a worker with children starts in about a quarter of the CPU. What the
objectives do import, ``--preload`` loads in full before it."""

from .startup import defer_unused_imports

defer_unused_imports()
