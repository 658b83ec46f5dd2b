"""`hyperfleet report EXP`: plots and an export of every trial of one experiment.

Writes into one directory:

* ``loss_by_trial.png``: each finished trial's loss by tid, the best loss so far as a step line, and
  failed trials marked along the top;
* ``loss_vs_params.png``: loss against each parameter (log axis for log-scaled distributions, the
  option values for a choice);
* ``learning_curves.png``, when trials reported intermediate values (``hyperfleet.report``): one curve
  per trial, loss against step, the trials the pruning rule stopped in grey;
* ``report.html``: one self-contained page (the plots embedded) with the summary and the best trials;
* ``trials.csv`` and ``trials.json``: every trial, one row each, parameters as columns, with the
  number of steps it reported (``reported_steps``), its last step and whether it was pruned; ``trials.json``
  also has each trial's curve (``[[step, loss], ...]``).
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import html
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .placement import gpu_of, host_of, worker_of
from .spec import space_labels
from .status import is_pruned
from .store import STATE_NAMES, JobStore

_LOG_KINDS = ("loguniform", "qloguniform", "lognormal", "qlognormal")


class ReportError(ValueError):
    pass


def trial_rows(trials: list[dict], labels: Mapping[str, tuple[str, list]]) -> tuple[list[dict[str, Any]], list[str]]:
    """One flat row per trial and the parameter names, choice indices turned into option values
    (``labels``: the space's parameters, from ``space_labels``; empty when the spec is unknown)."""
    params: list[str] = []
    rows = []
    for trial in trials:
        result = trial.get("result") or {}
        progress = (trial.get("hyperfleet") or {}).get("progress") or {}
        row: dict[str, Any] = {
            "tid": trial.get("tid"),
            "state": STATE_NAMES.get(trial.get("state"), str(trial.get("state"))),
            "loss": result.get("loss") if result.get("status") == "ok" else None,
            "status": result.get("status"),
            "book_time": iso_time(trial.get("book_time")),
            "refresh_time": iso_time(trial.get("refresh_time")),
            "duration_seconds": _seconds(trial.get("book_time"), trial.get("refresh_time")),
            "error": ": ".join(str(e) for e in trial["error"]) if trial.get("error") else None,
            "reported_steps": progress.get("steps"),
            "last_step": progress.get("step"),
            "pruned": is_pruned(trial),
            # where it ran (the host, and the GPU of a worker pinned to one); names no parameter of a space takes
            # (a parameter named like a column would overwrite it)
            "ran_on": host_of(worker_of(trial)),
            "ran_on_gpu": gpu_of(worker_of(trial)),
        }
        for label, values in ((trial.get("misc") or {}).get("vals") or {}).items():
            if not values:
                continue  # a parameter of an option this trial did not take
            if label not in params:
                params.append(label)
            row[label] = option_value(labels.get(label), values[0])
        rows.append(row)
    return rows, params


def option_value(kind_args: tuple[str, list] | None, value: Any) -> Any:
    if kind_args and kind_args[0] == "choice":
        option = kind_args[1][int(value)]
        return f"option {int(value)}" if isinstance(option, Mapping) else option
    if isinstance(value, float) and value.is_integer() and kind_args and kind_args[0] == "randint":
        return int(value)
    return value


def iso_time(value: Any) -> str | None:
    return value.replace(tzinfo=_dt.timezone.utc).isoformat() if isinstance(value, _dt.datetime) else None


def _seconds(start: Any, end: Any) -> float | None:
    if isinstance(start, _dt.datetime) and isinstance(end, _dt.datetime):
        return round((end - start).total_seconds(), 3)
    return None


def write_report(store: JobStore, exp_key: str, out_dir: str | Path) -> dict[str, Path]:
    """Write the plots, the page and the exports; returns what was written, by kind."""
    trials = store.experiment_trials(exp_key)
    if not trials:
        known = ", ".join(store.experiment_keys()) or "none"
        raise ReportError(f"experiment {exp_key!r} has no trials (experiments: {known})")
    record = store.experiment(exp_key) or {}
    space = (record.get("spec") or {}).get("space")
    labels = space_labels(space) if space else {}
    rows, params = trial_rows(trials, labels)
    curves = store.trial_curves(exp_key)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "csv": out / "trials.csv",
        "json": out / "trials.json",
        "loss_by_trial": out / "loss_by_trial.png",
        "loss_vs_params": out / "loss_vs_params.png",
        "html": out / "report.html",
    }
    if curves:
        files["learning_curves"] = out / "learning_curves.png"
    columns = ["tid", "state", "loss", "status", "reported_steps", "last_step", "pruned", *params, "duration_seconds",
               "book_time", "refresh_time", "ran_on", "ran_on_gpu", "error"]
    with open(files["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    exported = [{**r, "curve": [list(point) for point in curves.get(r["tid"], [])]} for r in rows]
    files["json"].write_text(json.dumps({"exp_key": exp_key, "max_evals": record.get("max_evals"),
                                         "spec": record.get("spec"), "trials": exported}, indent=1, default=str))
    plot_loss_by_trial(rows, exp_key, files["loss_by_trial"])
    plot_loss_vs_params(rows, params, labels, exp_key, files["loss_vs_params"])
    if curves:
        plot_learning_curves(rows, curves, exp_key, files["learning_curves"])
    files["html"].write_text(render_html(exp_key, rows, params, record, files))
    return files


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_loss_by_trial(rows: list[dict], exp_key: str, path: Path) -> None:
    plt = _pyplot()
    ok = [r for r in rows if r["loss"] is not None]
    failed = [r for r in rows if r["state"] == "error"]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    if ok:
        ax.scatter([r["tid"] for r in ok], [r["loss"] for r in ok], s=18, color="#1f77b4", label="loss", zorder=3)
        best, steps = math.inf, []
        for r in sorted(ok, key=lambda r: r["tid"]):
            best = min(best, r["loss"])
            steps.append((r["tid"], best))
        ax.step([t for t, _ in steps], [b for _, b in steps], where="post", color="#d62728", label="best so far")
    if failed:
        top = max((r["loss"] for r in ok), default=1.0)
        ax.scatter([r["tid"] for r in failed], [top] * len(failed), marker="x", color="#7f7f7f",
                   label=f"failed ({len(failed)})", zorder=3)
    ax.set_xlabel("trial id (tid)")
    ax.set_ylabel("loss")
    ax.set_title(f"{exp_key}: loss by trial ({len(ok)} finished, {len(failed)} failed)")
    ax.grid(alpha=0.3)
    if ok or failed:
        ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_loss_vs_params(rows: list[dict], params: list[str], labels: Mapping[str, tuple[str, list]],
                        exp_key: str, path: Path) -> None:
    plt = _pyplot()
    ok = [r for r in rows if r["loss"] is not None]
    count = max(1, len(params))
    ncols = min(3, count)
    nrows = math.ceil(count / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), dpi=110, squeeze=False)
    for index, name in enumerate(params):
        ax = axes[index // ncols][index % ncols]
        points = [(r[name], r["loss"]) for r in ok if r.get(name) is not None]
        kind = labels.get(name, ("", []))[0]
        if points and (kind == "choice" or not all(isinstance(x, (int, float)) for x, _ in points)):
            categories = list(dict.fromkeys(str(x) for x, _ in points))
            ax.scatter([categories.index(str(x)) for x, _ in points], [y for _, y in points], s=16, alpha=0.8)
            ax.set_xticks(range(len(categories)), categories, rotation=30 if len(categories) > 4 else 0)
            ax.set_xlim(-0.5, len(categories) - 0.5)
        elif points:
            ax.scatter([x for x, _ in points], [y for _, y in points], s=16, alpha=0.8)
            if kind in _LOG_KINDS and all(x > 0 for x, _ in points):
                ax.set_xscale("log")
        ax.set_xlabel(f"{name} ({kind})" if kind else name)
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
    for index in range(len(params), nrows * ncols):
        axes[index // ncols][index % ncols].axis("off")
    if not params:
        axes[0][0].text(0.5, 0.5, "no parameters recorded", ha="center", va="center")
    fig.suptitle(f"{exp_key}: loss against each parameter")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_learning_curves(rows: list[dict], curves: Mapping[int, list[tuple[int, float]]], exp_key: str,
                         path: Path) -> None:
    """One line per trial that reported (loss against step); pruned trials in grey, under the others."""
    plt = _pyplot()
    pruned = {r["tid"] for r in rows if r["pruned"]}
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for tid, points in curves.items():
        grey = tid in pruned
        ax.plot([s for s, _ in points], [v for _, v in points], color="#b0b0b0" if grey else "#1f77b4",
                alpha=0.7 if grey else 0.8, linewidth=0.9, zorder=2 if grey else 3,
                marker="x" if grey and len(points) == 1 else None)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(f"{exp_key}: learning curves ({len(curves)} trials, {len(pruned & curves.keys())} pruned, in grey)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def render_html(exp_key: str, rows: list[dict], params: list[str], record: Mapping, files: Mapping[str, Path]) -> str:
    ok = sorted((r for r in rows if r["loss"] is not None), key=lambda r: r["loss"])
    counts = {name: sum(1 for r in rows if r["state"] == name) for name in STATE_NAMES.values()}
    counts["pruned (of done)"] = sum(1 for r in rows if r["pruned"])
    images = "".join(
        f'<figure><img alt="{html.escape(key)}" src="data:image/png;base64,'
        f'{base64.b64encode(files[key].read_bytes()).decode()}"></figure>'
        for key in ("loss_by_trial", "loss_vs_params", "learning_curves") if key in files)
    head = ["tid", "loss", *params, "reported_steps", "pruned", "duration_seconds",
            *(["ran_on", "ran_on_gpu"] if any(r["ran_on_gpu"] for r in rows) else [])]
    table_rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(r.get(c)))}</td>" for c in head) + "</tr>" for r in ok[:20])
    summary = ", ".join(f"{n} {name}" for name, n in counts.items())
    best = f"best loss {ok[0]['loss']:.6g} (trial {ok[0]['tid']})" if ok else "no finished trial"
    spec = html.escape(json.dumps(record.get("spec"), indent=2)) if record.get("spec") else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hyperfleet report: {html.escape(exp_key)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}img{{max-width:100%}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}
pre{{background:#f6f6f6;padding:1em}}</style></head><body>
<h1>{html.escape(exp_key)}</h1>
<p>{len(rows)} trials: {summary}; {best}; max_evals {record.get('max_evals', '-')}.</p>
{images}
<h2>Best trials</h2>
<table><tr>{''.join(f'<th>{html.escape(c)}</th>' for c in head)}</tr>{table_rows}</table>
{'<h2>Spec</h2><pre>' + spec + '</pre>' if spec else ''}
</body></html>
"""


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
