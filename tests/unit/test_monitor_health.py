"""The monitor's /healthz verdict (monitor.Health): healthy while sweeps keep succeeding, unhealthy once
none has for 3 intervals, and never sooner than 10 s (runtime/README.md), so a loaded database does
not get the monitor restarted for one slow sweep."""

import re
import time

import pytest

from hyperfleet.monitor import Health
from tests.helpers import REPO


def test_the_readme_states_the_staleness_rule():
    assert re.search(r"503 with the reason once none has for 3 intervals, 10 s at least",
                     (REPO / "runtime/README.md").read_text())


def test_no_sweep_yet_is_unhealthy_with_the_reason():
    assert Health(1.0).ok() == (False, "no sweep yet")


@pytest.mark.parametrize("interval,stale_after", [(1.0, 10.0), (3.0, 10.0), (5.0, 15.0)])
def test_healthy_until_3_intervals_or_10_s_pass_without_a_successful_sweep(interval, stale_after):
    health = Health(interval)
    health.last_error = "connection refused"
    health.last_ok = time.monotonic() - (stale_after - 0.5)
    assert health.ok() == (True, "ok")
    health.last_ok = time.monotonic() - (stale_after + 0.5)
    ok, text = health.ok()
    age = re.fullmatch(r"last successful sweep (\d+)s ago: connection refused", text)
    assert not ok and age and stale_after <= int(age[1]) <= stale_after + 2, text


@pytest.mark.parametrize("metric", ["hyperfleet_monitor_sweep_duration_seconds", "hyperfleet_monitor_detection_latency_seconds"])
def test_the_readme_states_each_histograms_buckets(metric):
    """Alerts and dashboards query these bounds (le="..."): the README's list is what the monitor exports."""
    from hyperfleet.monitor import Metrics

    short = "…" + metric.removeprefix("hyperfleet_monitor")
    (stated,) = re.findall(rf"`{short}` \([^)]*?buckets ([0-9., ]+) s\)", (REPO / "runtime/README.md").read_text())
    (family,) = [f for f in Metrics().registry.collect() if f.name == metric]
    bounds = [float(s.labels["le"]) for s in family.samples if s.name == metric + "_bucket"]
    assert bounds == [float(b) for b in stated.split(", ")] + [float("inf")]
