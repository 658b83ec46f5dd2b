"""Webhooks for an experiment's events: finished, failed, stalled (the spec's ``notify``).

The driver (``hyperfleet run``) sends them: it is the one process that follows an experiment from its
first trial to its last. A message is a Slack-compatible ``{"text": ...}`` (Slack, Mattermost and
others take it as it is) or, with ``format: json``, the event itself::

    {"event": "finished", "exp_key": "branin", "text": "...", "done": 60, "error": 0, "best_loss": 0.4, ...}

A webhook that fails (no answer, or a status other than 2xx) is tried again after 1 s and 2 s, then
given up and logged. It never stops the experiment.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger("hyperfleet.notify")

ATTEMPTS = 3
TIMEOUT_SECONDS = 10.0


def message(event: str, exp_key: str, facts: dict[str, Any]) -> str:
    """One line for people: what happened, and the numbers that say how it went."""
    what = {"finished": "finished", "failed": "failed: no trial succeeded", "stalled": "stalled"}.get(event, event)
    parts = [f"{k.replace('_', ' ')} {v:.6g}" if isinstance(v, float) else f"{k.replace('_', ' ')} {v}"
             for k, v in facts.items() if v is not None and k != "reason"]
    reason = f" ({facts['reason']})" if facts.get("reason") else ""
    return f"hyperfleet: experiment {exp_key} {what}{reason}" + (f": {', '.join(parts)}" if parts else "")


def payload(fmt: str, event: str, exp_key: str, facts: dict[str, Any]) -> dict[str, Any]:
    text = message(event, exp_key, facts)
    if fmt == "json":
        return {"event": event, "exp_key": exp_key, "text": text, **facts}
    return {"text": text}


def post(url: str, body: dict[str, Any], attempts: int = ATTEMPTS, sleep: Callable[[float], None] = time.sleep) -> bool:
    """POST ``body`` as JSON; True once a 2xx came back. Retries with 1 s, 2 s, ... between tries."""
    data = json.dumps(body).encode()
    for attempt in range(1, attempts + 1):
        request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                if 200 <= response.status < 300:
                    return True
                problem = f"HTTP {response.status}"
        except urllib.error.HTTPError as err:
            problem = f"HTTP {err.code}"
        except (OSError, ValueError) as err:  # refused, timed out, bad address
            problem = str(getattr(err, "reason", err))
        if attempt < attempts:
            log.info("webhook %s: %s; trying again (%d of %d)", _where(url), problem, attempt + 1, attempts)
            sleep(2 ** (attempt - 1))
        else:
            log.warning("webhook %s: %s after %d tries; giving up", _where(url), problem, attempts)
    return False


def _where(url: str) -> str:
    """The webhook's host, not its path: Slack's path is its secret."""
    return urllib.parse.urlsplit(url).netloc or "(bad address)"


class Notifier:
    """Sends an experiment's events to the webhooks that want them."""

    def __init__(self, exp_key: str, webhooks: Iterable[Any], post: Callable[[str, dict], bool] = post):
        self.exp_key = exp_key
        self.webhooks = list(webhooks)
        self._post = post

    def send(self, event: str, **facts: Any) -> int:
        """Tell every webhook that wants ``event``; returns how many took it."""
        sent = 0
        for hook in self.webhooks:
            if event in hook.events:
                sent += bool(self._post(hook.url, payload(hook.format, event, self.exp_key, facts)))
        return sent


class StallWatch:
    """Says "stalled" once when no trial has finished for ``after_seconds`` while work is pending, and
    again only after progress resumed and stopped again."""

    def __init__(self, after_seconds: float, clock: Callable[[], float] = time.monotonic):
        self.after_seconds = after_seconds
        self._clock = clock
        self._finished = -1
        self._since = clock()
        self._told = False

    def check(self, finished: int, pending: int) -> bool:
        now = self._clock()
        if finished != self._finished or not pending:
            self._finished, self._since, self._told = finished, now, False
            return False
        if not self._told and now - self._since >= self.after_seconds:
            self._told = True
            return True
        return False
