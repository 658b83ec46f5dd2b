"""hyperfleet.startup: the commands' stand-in for scipy.stats (loaded on first use, not by import hyperopt)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.helpers import REPO


def run_fresh(code: str) -> str:
    """``code`` in a fresh interpreter (sys.modules is the point): its stdout."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_import_hyperopt_leaves_scipy_stats_unloaded_and_first_use_loads_the_real_module():
    out = run_fresh("""
        import sys
        from hyperfleet.startup import defer_scipy_stats
        assert defer_scipy_stats()
        assert not defer_scipy_stats()  # once is enough
        import hyperfleet.worker, hyperfleet.driver, hyperopt.atpe
        print(type(sys.modules["scipy.stats"]).__name__, "scipy.stats._stats_py" in sys.modules)
        from scipy.stats import norm
        import scipy, scipy.stats
        real = sys.modules["scipy.stats"]
        print(type(real).__name__, norm.cdf(0.0), scipy.stats is real, hyperopt.atpe.scipy.stats.skew is real.skew)
    """)
    assert out.split() == ["_Deferred", "False", "module", "0.5", "True", "True"]


def test_a_module_held_before_the_load_serves_attributes_and_submodules_after_it():
    out = run_fresh("""
        from hyperfleet.startup import defer_scipy_stats
        defer_scipy_stats()
        import scipy.stats as held          # what hyperopt.atpe holds: the stand-in
        print(round(float(held.kurtosis([1, 2, 3, 10])), 4))
        import scipy.stats._continuous_distns as distns
        print(distns.norm is held.norm)
    """)
    assert out.split() == ["-0.7696", "True"]


def test_already_loaded_is_left_alone():
    out = run_fresh("""
        import sys, scipy.stats
        from hyperfleet.startup import defer_scipy_stats
        print(defer_scipy_stats(), type(sys.modules["scipy.stats"]).__name__)
    """)
    assert out.split() == ["False", "module"]
