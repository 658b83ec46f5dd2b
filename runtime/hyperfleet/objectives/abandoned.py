"""Trial containers of an evaluation the worker gave up.

With ``--no-subprocesses`` the objective runs in a thread of the worker, which cannot be stopped. When
the worker gives its trial up (a shutdown's hand-back, or a trial the monitor took back), it removes
every trial container (or pod) labelled with its owner instead. A create that the thread has in
flight at that moment is not in that listing, and its container would outlive the worker.

So a trial container or pod is created inside :func:`creating`, and :func:`abandon` waits for a create
in flight before the worker lists them: what was created before is listed and removed, and the
abandoned thread is refused any create after.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref

from .contract import ContainerTrialError

log = logging.getLogger(__name__)

#: how long :func:`abandon` waits for a create in flight (the Docker SDK's own call timeout is 120 s)
ABANDON_WAIT_SECONDS = 150

_creating = threading.Lock()
_abandoned: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


@contextlib.contextmanager
def creating(name: str):
    """Hold this around the create of trial container or pod ``name``; refused in an abandoned thread."""
    with _creating:
        if threading.current_thread() in _abandoned:
            raise ContainerTrialError(f"trial container {name} not created: the worker gave its trial up")
        yield


def abandon(thread: threading.Thread) -> None:
    """The evaluation in ``thread`` was given up: let a create in flight end, and refuse any later one."""
    _abandoned.add(thread)
    if _creating.acquire(timeout=ABANDON_WAIT_SECONDS):
        _creating.release()
    else:
        log.warning("a trial container create of the abandoned %s did not end in %gs; it may be left behind",
                    thread.name, ABANDON_WAIT_SECONDS)
