"""SIGTERM/SIGINT handling that works whatever the main thread is doing.

A Python signal handler runs in the main thread, between bytecodes. It does not run while that thread
waits in C (a read from a server that went silent, when the kernel gave the signal to another thread),
and a handler that takes a lock (``Event.set``, ``Thread.start``) can deadlock on a lock held by the
code it interrupted. So the Python handler here does nothing. Python's C-level handler writes the
signal number to a wakeup pipe, whichever thread the kernel picked, and a watcher thread started
beforehand reads it. That thread asks the program to stop, exits at once on a second signal, and
enforces the shutdown deadline with ``os._exit``. The kernel's alarm clock backs up the deadline for
the one case no thread can act on: an interpreter stuck while it finalizes.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import threading
import time
from typing import Callable

log = logging.getLogger("hyperfleet.shutdown")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: the alarm clock ends the process this long after the deadline, if os._exit has not
_ALARM_AFTER_DEADLINE_SECONDS = 2.0


class _Watcher(threading.Thread):
    def __init__(self, read_fd: int):
        super().__init__(name="hyperfleet-signals", daemon=True)
        self.read_fd = read_fd
        self.on_first: Callable[[str], None] = lambda name: None
        self.deadline_seconds: float | None = None

    def run(self) -> None:
        first_at = None
        while True:
            timeout = None
            if first_at is not None and self.deadline_seconds is not None:
                timeout = max(0.0, first_at + self.deadline_seconds - time.monotonic())
            ready, _, _ = select.select([self.read_fd], [], [], timeout)
            if not ready:
                log.error("shutdown took longer than %gs: exiting now", self.deadline_seconds)
                os._exit(1)
            for signum in os.read(self.read_fd, 64):
                if signum not in STOP_SIGNALS:
                    continue
                name = signal.Signals(signum).name
                if first_at is not None:
                    log.warning("second %s: exiting now", name)
                    os._exit(128 + signum)
                first_at = time.monotonic()
                if self.deadline_seconds is not None:
                    signal.setitimer(signal.ITIMER_REAL, self.deadline_seconds + _ALARM_AFTER_DEADLINE_SECONDS)
                self.on_first(name)


_watcher: _Watcher | None = None


def _no_op(signum, frame) -> None:
    """The watcher acts; a Python-level handler must exist for the wakeup pipe to be written."""


def watch_stop_signals(on_first: Callable[[str], None], deadline_seconds: float | None = None) -> None:
    """On the first SIGTERM/SIGINT call ``on_first(signal name)`` (in the watcher thread), exit with
    1 if the process is still alive ``deadline_seconds`` later, and exit with 128 + signum on a second
    signal. Call from the main thread; a later call replaces the callback and the deadline."""
    global _watcher
    if _watcher is None:
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        _watcher = _Watcher(read_fd)
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        _watcher.start()
    _watcher.on_first, _watcher.deadline_seconds = on_first, deadline_seconds
    for signum in STOP_SIGNALS:
        signal.signal(signum, _no_op)
