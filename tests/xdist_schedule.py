"""How ``make test``'s pytest-xdist workers take files (``--dist loadfile``): a worker still busy with a slow
file (``SLOW_FIRST`` in ``tests/conftest.py``) gets its next file from the end of the queue, the quick unit
tests, not from its head.

Why: xdist hands a worker its next file while its current one still runs (a worker runs a test only once it
knows the next). Taken from the queue's head, a slow file could wait behind both KEDA tests (9 minutes) on
one worker while the other workers had run out of work.
"""

from __future__ import annotations

from xdist.scheduler import LoadFileScheduling


class SlowFilesApart(LoadFileScheduling):
    def __init__(self, config, log, slow: set[str]):
        super().__init__(config, log)
        self.slow = slow  # the slow files, as xdist scopes them (tests/...)

    def _assign_work_unit(self, node) -> None:
        busy_slow = any(scope in self.slow and not all(tests.values())
                        for scope, tests in self.assigned_work.get(node, {}).items())
        if busy_slow and len(self.workqueue) > 1:
            self.workqueue.move_to_end(next(reversed(self.workqueue)), last=False)
        super()._assign_work_unit(node)
