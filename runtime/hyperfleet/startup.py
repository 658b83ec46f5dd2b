"""A command's start-up: what the worker and the driver do before they import hyperopt.

``import hyperopt`` runs hyperopt/__init__.py, which imports hyperopt.atpe, which imports scipy.stats:
about 0.7 s of CPU of the 1.1 s the import takes, paid by every worker, driver and trial pod that
starts, although only ATPE's suggestions (and objectives that use it) ever touch scipy.stats.
``defer_scipy_stats`` puts a stand-in for ``scipy.stats`` in ``sys.modules`` that imports the real
module on the first access to anything it lacks (a function, a class, ``__path__`` for a submodule):
``import scipy.stats`` costs nothing, and ``from scipy.stats import norm`` or ``scipy.stats.skew(...)``
in an objective loads it then. (``importlib.util.LazyLoader`` does not serve: on Python 3.11 an
``import`` statement of a module already in ``sys.modules`` reads its ``__spec__``, which loads it.)

Only the commands call it (``hyperfleet worker``, ``hyperfleet run``), never ``import hyperfleet``: a
program that imports hyperfleet keeps Python's usual imports.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types

DEFERRED = "scipy.stats"
_PARENT, _, _CHILD = DEFERRED.rpartition(".")
_LOADING = threading.Lock()


class _Deferred(types.ModuleType):
    """``sys.modules[DEFERRED]`` until first used; then a copy of the real module's namespace."""

    def __getattr__(self, name: str):  # called only for what the stand-in does not have
        with _LOADING:
            # out of the way first: the real import finds neither sys.modules' entry nor the parent's attribute
            if sys.modules.get(DEFERRED) is self:
                del sys.modules[DEFERRED]
            if vars(sys.modules[_PARENT]).get(_CHILD) is self:
                delattr(sys.modules[_PARENT], _CHILD)
            real = importlib.import_module(DEFERRED)
            vars(self).update(vars(real))
        return getattr(real, name)


def defer_scipy_stats() -> bool:
    """Put the stand-in in place; False when scipy.stats is loaded already or not installed."""
    if DEFERRED in sys.modules:
        return False
    try:
        spec = importlib.util.find_spec(DEFERRED)  # imports scipy itself (cheap), not scipy.stats
    except ImportError:
        return False
    if spec is None:
        return False
    stand_in = _Deferred(DEFERRED)
    stand_in.__spec__ = spec
    sys.modules[DEFERRED] = stand_in
    setattr(sys.modules[_PARENT], _CHILD, stand_in)
    return True
