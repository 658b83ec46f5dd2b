"""``hyperfleet.report(step, loss)`` stays the function whatever the process imports: a submodule named
``report`` would replace the package's attribute as soon as anything imported it (the dashboard, the
report command), and an objective's next ``hyperfleet.report`` would call a module."""

import importlib
import pkgutil

import hyperfleet
from hyperfleet.pruning import TrialPruned, report


def test_every_module_imported_leaves_report_and_trial_pruned_as_they_are():
    for module in pkgutil.walk_packages(hyperfleet.__path__, "hyperfleet."):
        if module.name != "hyperfleet.__main__":  # runs the command line
            importlib.import_module(module.name)
    assert hyperfleet.report is report and callable(hyperfleet.report)
    assert hyperfleet.TrialPruned is TrialPruned
