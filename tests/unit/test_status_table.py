"""`hyperfleet status` as a new user sees it in an 80-column terminal: whole names, whole headers."""

from rich.console import Console

from hyperfleet.status import ExperimentStatus, status_table

HEADERS = ("experiment", "new", "run", "done", "prn", "err", "max", "best", "tid", "/min", "ETA")


def render(statuses, width=80) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(status_table(statuses))
    return console.export_text()


def test_names_and_headers_are_never_cut_in_80_columns():
    statuses = [ExperimentStatus(exp_key=name, new=120, running=8, done=1234, error=3, max_evals=2000,
                                 best_loss=0.3978873577, best_tid=977, trials_per_minute=41.5, eta_seconds=3723,
                                 pruned=611)
                for name in ("holdout-search-lr", "branin")]
    text = render(statuses)
    assert "holdout-search-lr" in text and "branin" in text
    header = next(line for line in text.splitlines() if line.startswith("┃"))
    assert all(h in header for h in HEADERS), header
    assert max(len(line) for line in text.splitlines()) <= 80
    # the table's right edge is drawn (not cropped)
    assert all(line.rstrip()[-1] in "┓┃┩│┘" for line in text.splitlines() if line[:1] in "┏┃┡│└"), text
