"""The ``hyperfleet`` command line. Commands parse options and call plain functions.

Options also come from ``HYPERFLEET_<COMMAND>_<OPTION>`` variables (click's auto_envvar_prefix), and
the worker additionally understands hyperkops' variables (see ``hyperfleet.envmap``). Precedence:
command line > hyperkops variables > ``HYPERFLEET_`` variables > defaults.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import click

from .envmap import EnvMappingError, worker_args_from_env
from .logs import configure_logging
from .mongo_url import MongoUrlError, parse_mongo_url
from .settings import DEFAULT_MONGO_URL, WorkerSettings
from .store import StoreUnavailable


def _mongo_url(_ctx, param, value):
    try:
        parse_mongo_url(value)
    except MongoUrlError as err:
        raise click.BadParameter(str(err), param=param) from None
    return value


class _EnvMappedCommand(click.Command):
    """Prepends the arguments mapped from hyperkops' variables, so the command line wins."""

    def parse_args(self, ctx, args):
        try:
            env_args = worker_args_from_env(os.environ)
        except EnvMappingError as err:
            raise click.UsageError(str(err), ctx=ctx) from None
        return super().parse_args(ctx, env_args + list(args))


def _worker_options(fn):
    options = [
        click.option("--mongo", "mongo_url", default=DEFAULT_MONGO_URL, show_default=True, callback=_mongo_url,
                     help="MongoDB address: mongodb://…, mongo://host:port/db[/collection] or host:port/db."),
        click.option("--exp-key", default=None, help="Only run trials of this experiment."),
        click.option("--heartbeat-seconds", type=click.FloatRange(min=0.01), default=2.0, show_default=True,
                     help="How often the running trial's refresh_time advances."),
        click.option("--poll-interval", "poll_interval_seconds", type=click.FloatRange(min=0.001), default=0.05,
                     show_default=True, help="Longest wait between reservation attempts while idle (seconds)."),
        click.option("--reserve-timeout", "reserve_timeout_seconds", type=click.FloatRange(min=0), default=None,
                     help="Exit after this many seconds without a trial to run (default: never)."),
        click.option("--last-job-timeout", "last_job_timeout_seconds", type=click.FloatRange(min=0), default=None,
                     help="Reserve no trial once this many seconds have passed since start."),
        click.option("--max-jobs", type=click.IntRange(min=1), default=None, help="Exit after this many trials."),
        click.option("--max-consecutive-failures", type=click.IntRange(min=1), default=None,
                     help="Exit after this many trials in a row ended in ERROR (default: never)."),
        click.option("--max-jobs-in-db", type=click.IntRange(min=1), default=None,
                     help="Exit once the jobs collection holds this many documents."),
        click.option("--workdir", type=click.Path(file_okay=False), default=None,
                     help="Directory the objective runs in."),
        click.option("--subprocesses/--no-subprocesses", "use_subprocesses", default=False, show_default=True,
                     help="Evaluate each trial in a fresh child process."),
        click.option("--shutdown-deadline-seconds", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
                     help="After the first SIGTERM/SIGINT, hand the trial back and exit within this time."),
        click.option("--connect-timeout-seconds", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
                     help="Give up reaching MongoDB after this long."),
        click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
                     show_default=True),
        click.option("--log-json", is_flag=True, help="Write logs as JSON lines."),
        click.option("--print-settings", is_flag=True, help="Print the resolved settings as JSON and exit."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@click.command(cls=_EnvMappedCommand, context_settings={"auto_envvar_prefix": "HYPERFLEET_WORKER"})
@_worker_options
def worker(log_level: str, log_json: bool, print_settings: bool, **options):
    """Run trials from MongoDB until stopped (SIGTERM once: hand back and exit; twice: exit now)."""
    settings = WorkerSettings(**options)
    if print_settings:
        click.echo(json.dumps(dataclasses.asdict(settings), indent=2, sort_keys=True))
        return
    configure_logging(log_level, log_json)
    from .worker import run_worker  # imports hyperopt; keep --help and --print-settings fast

    try:
        sys.exit(run_worker(settings))
    except StoreUnavailable as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(1)


@click.group(context_settings={"auto_envvar_prefix": "HYPERFLEET", "help_option_names": ["-h", "--help"]})
def main():
    """hyperfleet: distributed hyperopt on Kubernetes and Docker hosts."""


main.add_command(worker)


def mongo_worker_main():
    """``hyperfleet-mongo-worker``: the worker under hyperopt-mongo-worker's name and flags."""
    worker.main(prog_name="hyperfleet-mongo-worker", auto_envvar_prefix="HYPERFLEET_WORKER")
