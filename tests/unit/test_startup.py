"""hyperfleet.startup: the commands' stand-ins for what ``import hyperopt`` loads and a worker never uses
(scipy.stats, hyperopt.tpe, networkx), each loaded on its first use."""

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


def test_import_hyperopt_leaves_the_deferred_modules_unloaded_and_first_use_loads_the_real_ones():
    out = run_fresh("""
        import sys
        from hyperfleet.startup import DEFERRED, defer_unused_imports
        print(",".join(defer_unused_imports()), len(defer_unused_imports()))  # once is enough
        import hyperfleet.worker, hyperfleet.driver, hyperopt.atpe
        print(*[type(sys.modules[name]).__name__ for name in DEFERRED])
        print("scipy.special" in sys.modules, "scipy.stats._stats_py" in sys.modules, "networkx.classes" in sys.modules)
        from scipy.stats import norm
        import scipy, scipy.stats
        real = sys.modules["scipy.stats"]
        print(type(real).__name__, norm.cdf(0.0), scipy.stats is real, hyperopt.atpe.scipy.stats.skew is real.skew)
        import hyperopt
        suggest = sys.modules["hyperopt.fmin"].tpe.suggest  # what fmin.py holds: the stand-in, then the real module's function
        print(suggest.__module__, suggest is sys.modules["hyperopt.tpe"].suggest, hyperopt.tpe is sys.modules["hyperopt.tpe"])
        from hyperopt import hp, pyll
        print([node.name for node in pyll.toposort(hp.uniform("x", 0, 1))][-1], type(sys.modules["networkx"]).__name__)
    """)
    assert out.splitlines() == ["hyperopt.tpe,networkx,scipy.stats 0", "_Deferred _Deferred _Deferred",
                                "False False False", "module 0.5 True True", "hyperopt.tpe True True",
                                "float module"]


def test_a_module_held_before_the_load_serves_attributes_and_submodules_after_it():
    out = run_fresh("""
        from hyperfleet.startup import defer_unused_imports
        defer_unused_imports()
        import scipy.stats as held          # what hyperopt.atpe holds: the stand-in
        print(round(float(held.kurtosis([1, 2, 3, 10])), 4))
        import scipy.stats._continuous_distns as distns
        print(distns.norm is held.norm)
    """)
    assert out.split() == ["-0.7696", "True"]


def test_a_submodule_imported_first_is_the_one_its_package_loaded_not_a_second_copy():
    out = run_fresh("""
        import sys
        from hyperfleet.startup import defer_unused_imports
        defer_unused_imports()
        import scipy.stats
        import scipy.stats._continuous_distns as distns   # the first touch of the stand-in: its __path__
        print(distns.norm is scipy.stats.norm, distns is sys.modules["scipy.stats._continuous_distns"])
        print(distns.__spec__.origin.endswith("_continuous_distns.py"), type(sys.modules["scipy.stats"]).__name__)
        import networkx.algorithms.dag as dag
        import networkx
        print(dag.topological_sort is networkx.topological_sort)
    """)
    assert out.split() == ["True", "True", "True", "module", "True"]


def test_already_loaded_is_left_alone_and_a_missing_module_is_the_usual_import_error():
    out = run_fresh("""
        import sys, scipy.stats
        from hyperfleet.startup import defer_unused_imports
        print(",".join(defer_unused_imports()), type(sys.modules["scipy.stats"]).__name__)
        finder = next(f for f in sys.meta_path if type(f).__name__ == "_DeferringFinder")
        finder.names.add("no_such_module_here")
        try:
            import no_such_module_here
        except ModuleNotFoundError as err:
            print(err.name)
    """)
    assert out.split() == ["hyperopt.tpe,networkx", "module", "no_such_module_here"]


def test_the_forkserver_defers_what_no_trial_uses_and_loads_in_full_what_preload_names():
    """--subprocesses: the forkserver (a fresh interpreter) imports the worker's --preload in full first,
    then hyperopt with the commands' stand-ins; the trials it forks find both so."""
    from hyperfleet.worker import forkserver_preload

    assert forkserver_preload(()) == ["hyperfleet.lean", "hyperfleet.evaluation"]
    out = run_fresh(f"""
        import sys
        for name in {forkserver_preload(("scipy.stats",))!r}:  # as the forkserver does
            __import__(name)
        print(type(sys.modules["scipy.stats"]).__name__, type(sys.modules["hyperopt.tpe"]).__name__)
    """)
    assert out.split() == ["module", "_Deferred"]


def test_a_forkserver_without_preload_gives_its_trials_stand_ins_that_load_at_first_use():
    from hyperfleet.worker import forkserver_preload

    out = run_fresh(f"""
        import sys
        for name in {forkserver_preload(())!r}:
            __import__(name)
        print(type(sys.modules["scipy.stats"]).__name__)
        from scipy.stats import norm  # a trial that uses it loads it
        print(norm.cdf(0))
    """)
    assert out.split() == ["_Deferred", "0.5"]
