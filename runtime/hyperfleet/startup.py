"""A command's start-up: what the worker and the driver do before they import hyperopt.

``import hyperopt`` runs hyperopt/__init__.py, which imports every algorithm and what they need:
hyperopt.atpe imports scipy.stats (about 0.6 s of CPU), hyperopt.tpe imports scipy.special (0.15 s),
and hyperopt.pyll imports networkx (0.1 s), for its ``toposort``. A worker touches none of them: it
unpickles the driver's Domain (no toposort) and never suggests. Every worker, driver and trial pod
paid them at start.

``defer_unused_imports`` puts a finder first on ``sys.meta_path`` that answers the first import of
each module of ``DEFERRED`` with a stand-in: an empty module, made by the usual import machinery
(so ``sys.modules``, the parent package's attribute and ``__spec__`` are as Python makes them), that
imports the real module on the first access to anything it lacks (a function, a class, ``__path__``
for a submodule) and takes a copy of its namespace. ``import scipy.stats`` then costs nothing, and
``from scipy.stats import norm``, ``tpe.suggest`` or ``nx.DiGraph()`` load the real module then.
(``importlib.util.LazyLoader`` does not serve: on Python 3.11 an ``import`` statement of a module
already in ``sys.modules`` reads its ``__spec__``, which loads it.)

Only the commands call it (``hyperfleet worker``, ``hyperfleet run``) and the ``--subprocesses``
forkserver (hyperfleet.lean), never ``import hyperfleet``: a program that imports hyperfleet keeps
Python's usual imports. What the trials' objectives import (scipy.stats, say: scikit-learn does), the
worker's ``--preload`` loads in full in the forkserver, once, before the stand-ins are put in place.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
import types

#: the modules hyperopt imports at ``import hyperopt`` that a worker never uses (a driver uses the
#: ones its algorithm needs, loaded at their first use)
DEFERRED = ("scipy.stats", "hyperopt.tpe", "networkx")
_LOADING = threading.Lock()


class _Deferred(types.ModuleType):
    """A deferred module until first used; then a copy of the real module's namespace."""

    def __getattr__(self, name: str):  # called only for what the stand-in does not have
        if name.startswith("__") and sys.modules.get(self.__name__) is not self:
            raise AttributeError(name)  # Python asks for __path__ while it makes the stand-in: not a first use
        with _LOADING:
            # out of the way first: the real import finds neither sys.modules' entry nor the parent's attribute
            if sys.modules.get(self.__name__) is self:
                del sys.modules[self.__name__]
            parent, _, child = self.__name__.rpartition(".")
            if parent and vars(sys.modules[parent]).get(child) is self:
                delattr(sys.modules[parent], child)
            real = importlib.import_module(self.__name__)  # the finder served this name once: not again
            vars(self).update(vars(real))
        return getattr(real, name)


class _DeferringFinder(importlib.abc.MetaPathFinder):
    """Answers the first import of each of ``names`` with a ``_Deferred``; then steps aside for it."""

    def __init__(self, names: set[str]):
        self.names = names
        self.served: set[str] = set()

    def find_spec(self, fullname, path, target=None):
        parent = fullname.rpartition(".")[0]
        if target is None and parent in self.served and fullname in sys.modules:
            # ``import scipy.stats.qmc`` as the first touch: Python read the stand-in's __path__, which loaded
            # the real package, which imported this submodule; without this, Python would run it a second time
            return importlib.machinery.ModuleSpec(fullname, _ALREADY_LOADED, loader_state=sys.modules[fullname].__spec__)
        if fullname not in self.names or importlib.machinery.PathFinder.find_spec(fullname, path) is None:
            return None  # not ours, or not installed: the usual finders (and their ImportError)
        self.names.discard(fullname)
        self.served.add(fullname)
        return importlib.util.spec_from_loader(fullname, _STAND_IN)


class _StandIn(importlib.abc.Loader):
    def create_module(self, spec):
        return _Deferred(spec.name)

    def exec_module(self, module):
        pass  # the real module runs at the stand-in's first use


class _AlreadyLoaded(importlib.abc.Loader):
    def create_module(self, spec):
        return sys.modules[spec.name]

    def exec_module(self, module):
        module.__spec__ = module.__spec__.loader_state  # Python put this spec there: the module's own, back


_STAND_IN = _StandIn()
_ALREADY_LOADED = _AlreadyLoaded()


def defer_unused_imports() -> list[str]:
    """Put the finder in place; the modules of DEFERRED it will defer (none already loaded, or once done)."""
    if any(isinstance(finder, _DeferringFinder) for finder in sys.meta_path):
        return []
    names = {name for name in DEFERRED if name not in sys.modules}
    if names:
        sys.meta_path.insert(0, _DeferringFinder(names))
    return sorted(names)
