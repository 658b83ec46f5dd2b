"""The ``hyperfleet`` command line. Commands parse options and call plain functions.

Options also come from ``HYPERFLEET_<COMMAND>_<OPTION>`` variables (click's auto_envvar_prefix), and
the worker additionally understands hyperkops' variables (see ``hyperfleet.envmap``). Precedence:
command line > hyperkops variables > ``HYPERFLEET_`` variables > defaults.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import os
import re
import sys
import time

import click

from .contract import COMMAND_ENV_PREFIX, DASHBOARD_PORT, GPU_ID_PATTERN, DOCKER_ENGINE_ENV, MONGO_URL_ENV, command_env
from .envmap import EnvMappingError, worker_args_from_env
from .logs import configure_logging
from .mongo_url import MongoUrlError, compose_mongo_url, parse_mongo_url, redact_url
from .settings import (DEFAULT_MONGO_URL, IDLE_POLL_FRACTION, LIVENESS_CHECKS, MODULE_NAME_PATTERN, POLICIES, MonitorSettings,
                       WorkerSettings)
from .startup import defer_unused_imports
from .store import StoreUnavailable

# the defaults of the options: the settings' own (one place for each)
W, M = WorkerSettings, MonitorSettings


class CommandError(click.ClickException):
    """What a command could not do, for the user: one line on stderr, ``error: MESSAGE``, and its exit
    code (1: it could not be done, e.g. MongoDB unreachable; 2: bad input, e.g. a bad spec)."""

    def __init__(self, message: str, exit_code: int = 1, prefix: str = "error"):
        super().__init__(message)
        self.exit_code, self.prefix = exit_code, prefix

    def show(self, file=None) -> None:
        click.echo(f"{self.prefix}: {self.format_message()}", err=True)


def _mongo_url(_ctx, param, value):
    if value is None:  # the monitor builds its address from hyperkops' options instead
        return None
    try:
        parse_mongo_url(value)
    except MongoUrlError as err:
        raise click.BadParameter(str(err), param=param) from None
    return value


def _gpu_id(_ctx, param, value):
    if value is not None and not re.match(GPU_ID_PATTERN, value):
        raise click.BadParameter(f"a GPU index (0, 1, …) or UUID (GPU-…), not {value!r}", param=param)
    return value


def _module_names(_ctx, param, value):
    """--preload a,b.c: the names, each checked."""
    names = tuple(name.strip() for name in (value or "").split(",") if name.strip())
    bad = [name for name in names if not re.fullmatch(MODULE_NAME_PATTERN, name)]
    if bad:
        raise click.BadParameter(f"not a module name: {', '.join(map(repr, bad))}", param=param)
    # the forkserver passes over a module it cannot import without a word: a package missing here is said now
    # (found, not imported: sklearn.ensemble's import is the forkserver's to pay)
    missing = [name for name in names if importlib.util.find_spec(name.partition(".")[0]) is None]
    if missing:
        raise click.BadParameter(f"no such module: {', '.join(map(repr, missing))}", param=param)
    return names


def _mongo_option(command: str):
    """--mongo of the commands that only read and write trials (run, status, report)."""
    return click.option("--mongo", "mongo_url", default=DEFAULT_MONGO_URL, show_default=True, callback=_mongo_url,
                        envvar=[command_env(command, "mongo"), MONGO_URL_ENV], help="MongoDB address.")


_connect_timeout_option = click.option(
    "--connect-timeout-seconds", type=click.FloatRange(min=0.1), default=W.connect_timeout_seconds, show_default=True,
    help="Give up reaching MongoDB after this long.")
_LOG_OPTIONS = [
    click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
                 show_default=True),
    click.option("--log-json", is_flag=True, help="Write logs as JSON lines."),
]


def _with_options(options: list):
    """A decorator that adds ``options`` in their order (click applies decorators bottom-up)."""
    def decorate(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn
    return decorate


_log_options = _with_options(_LOG_OPTIONS)


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
                     envvar=command_env("worker", "mongo"),
                     help="MongoDB address: mongodb://…, mongo://host:port/db[/collection] or host:port/db."),
        click.option("--exp-key", default=None, help="Only run trials of this experiment."),
        click.option("--heartbeat-seconds", type=click.FloatRange(min=0.01), default=W.heartbeat_seconds, show_default=True,
                     help="How often the running trial's refresh_time advances."),
        click.option("--poll-interval", "poll_interval_seconds", type=click.FloatRange(min=0.001),
                     default=W.poll_interval_seconds, show_default=True,
                     help="Longest wait between reservation attempts while idle (seconds)."),
        click.option("--idle-poll-interval", "idle_poll_interval_seconds", type=click.FloatRange(min=0.001),
                     default=W.idle_poll_interval_seconds, show_default=True,
                     help=f"Longest wait once idle for long: the wait grows past --poll-interval up to "
                          f"{IDLE_POLL_FRACTION:.0%} of the time idle, at most this (seconds; --poll-interval or less: "
                          "never past it)."),
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
        click.option("--alive-file", type=click.Path(dir_okay=False), default=None,
                     help="Touch this file while the worker loop runs (for `hyperfleet alive`, a liveness probe)."),
        click.option("--gpu", default=None, callback=_gpu_id,
                     help="The GPU this worker is pinned to, as its host numbers it (index or UUID): recorded with "
                          "each trial, given to its trial containers, the only one its in-process objectives see."),
        click.option("--subprocesses/--no-subprocesses", "use_subprocesses", default=W.use_subprocesses, show_default=True,
                     help="Evaluate each trial in a fresh child process."),
        click.option("--preload", default="", callback=_module_names, metavar="MODULE[,MODULE…]",
                     help="With --subprocesses: modules imported once, before the first trial, that each trial's "
                          "child then finds loaded (what the objectives import: scipy.stats, sklearn.ensemble)."),
        click.option("--shutdown-deadline-seconds", type=click.FloatRange(min=0.1), default=W.shutdown_deadline_seconds,
                     show_default=True,
                     help="After the first SIGTERM/SIGINT, hand the trial back and exit within this time."),
        _connect_timeout_option,
        *_LOG_OPTIONS,
        click.option("--print-settings", is_flag=True, help="Print the resolved settings as JSON and exit."),
    ]
    return _flag_envvars(_with_options(options)(fn), command_env("worker"))


def _flag_envvars(fn, prefix: str):
    """Each option also reads PREFIX_<FLAG> (``--poll-interval``: ``HYPERFLEET_WORKER_POLL_INTERVAL``), the
    name the docs promise, beside click's PREFIX_<PARAMETER> (``…_POLL_INTERVAL_SECONDS``)."""
    for param in getattr(fn, "__click_params__", []):
        if not isinstance(param, click.Option) or param.name == "print_settings":
            continue
        flag = max(param.opts, key=len).lstrip("-").replace("-", "_").upper()
        names = [f"{prefix}_{flag}", f"{prefix}_{param.name.upper()}"]
        if isinstance(param.envvar, str):
            names.insert(0, param.envvar)
        param.envvar = list(dict.fromkeys(names))
    return fn


def _serve(settings, module: str, function: str, print_settings: bool, log_level: str, log_json: bool) -> None:
    """--print-settings, or run ``hyperfleet.<module>.<function>(settings)`` (imported only then) and
    exit with its code; MongoDB unavailable for good is the command's error."""
    if print_settings:
        click.echo(_settings_json(settings))
        return
    configure_logging(log_level, log_json)
    run = getattr(importlib.import_module(f"{__package__}.{module}"), function)
    try:
        sys.exit(run(settings))
    except StoreUnavailable as err:
        raise CommandError(str(err)) from None


def _settings_json(settings) -> str:
    """--print-settings: the resolved settings, the Mongo password replaced by ***."""
    values = dataclasses.asdict(settings)
    values["mongo_url"] = redact_url(values["mongo_url"])
    if values.get("dashboard_token"):
        values["dashboard_token"] = "***"
    return json.dumps(values, indent=2, sort_keys=True)


@click.command(cls=_EnvMappedCommand, context_settings={"auto_envvar_prefix": command_env("worker")})
@_worker_options
def worker(log_level: str, log_json: bool, print_settings: bool, **options):
    """Run trials from MongoDB until stopped (SIGTERM once: hand back and exit; twice: exit now)."""
    # the worker module imports hyperopt: loaded only to run, so --help and --print-settings stay fast
    if not print_settings:
        defer_unused_imports()
    _serve(WorkerSettings(**options), "worker", "run_worker", print_settings, log_level, log_json)


@click.command(context_settings={"auto_envvar_prefix": command_env("monitor")})
@click.option("--mongo", "mongo_url", default=None, callback=_mongo_url,
              envvar=[command_env("monitor", "mongo"), MONGO_URL_ENV],
              help=f"MongoDB address (default {DEFAULT_MONGO_URL}, or built from the three options below).")
@click.option("--mongo-db-address", "--mongo_db_address", "-d", envvar="MONGO_DB_ADDRESS",
              help="hyperkops: MongoDB host.")
@click.option("--mongo-db-port", "--mongo_db_port", "-p", envvar="MONGO_DB_PORT", help="hyperkops: MongoDB port.")
@click.option("--trials-db", "--trials_db", "-t", envvar="TRIALS_DB", help="hyperkops: database of the trials.")
@click.option("--trials-collection", "--trials_collection", "-c", "collection", envvar="TRIALS_COLLECTION",
              help="Collection of the trials (default: jobs).")
@click.option("--exp-key", default=None, help="Only watch this experiment.")
@click.option("--grace-seconds", "--timeout-interval", "--timeout_interval", "-i", "grace_seconds",
              type=click.FloatRange(min=0.1), default=M.grace_seconds, show_default=True,
              envvar=[command_env("monitor", "grace_seconds"), "TIMEOUT_INTERVAL"],
              help="A RUNNING trial with no heartbeat for this long is orphaned.")
@click.option("--interval-seconds", "--update-interval", "--update_interval", "-u", "interval_seconds",
              type=click.FloatRange(min=0.01), default=M.interval_seconds, show_default=True,
              envvar=[command_env("monitor", "interval_seconds"), "UPDATE_INTERVAL"], help="Time between sweeps.")
@click.option("--metrics-interval-seconds", type=click.FloatRange(min=0.01), default=M.metrics_interval_seconds,
              show_default=True, help="Time between refreshes of the per-experiment metrics on /metrics.")
@click.option("--metrics-retention-seconds", type=click.FloatRange(min=0.01), default=M.metrics_retention_seconds,
              show_default=True, help="An experiment idle this long (nothing open, nothing finished) leaves /metrics.")
@click.option("--policy", type=click.Choice(POLICIES), default=M.policy, show_default=True,
              help="requeue orphans (until --max-retries, then ERROR) or mark them ERROR at once.")
@click.option("--max-retries", type=click.IntRange(min=0), default=M.max_retries, show_default=True,
              help="Recoveries from lost infrastructure per trial before it is marked ERROR.")
@click.option("--max-objective-retries", type=click.IntRange(min=0), default=M.max_objective_retries, show_default=True,
              help="Times a trial whose objective raised is queued again.")
@click.option("--liveness", type=click.Choice(LIVENESS_CHECKS + ("none",)), multiple=True, default=M.liveness,
              show_default=True, help="Owner checks besides the heartbeat (repeat for several; none: heartbeat only).")
@click.option("--docker-url", default=None, help="Docker engine for --liveness docker (default: DOCKER_HOST).")
@click.option("--docker-engine-id", default=None,
              help=f"With several Docker hosts: judge only workers whose {DOCKER_ENGINE_ENV} is this.")
@click.option("--docker-engine", "docker_engines", multiple=True,
              help="Another Docker host whose worker containers to watch (ssh://user@host, tcp://host:port; "
                   "repeat). ssh:// takes its key and known hosts from ~/.ssh.")
@click.option("--docker-cert-path", default=None, envvar="DOCKER_CERT_PATH",
              help="Docker's cert path (ca.pem, cert.pem, key.pem) for tcp:// hosts: TLS. Without it, plain HTTP.")
@click.option("--namespace", default=M.namespace, show_default=True, envvar=[command_env("monitor", "namespace"), "NAMESPACE"],
              help="Namespace of worker pods for --liveness kubernetes.")
@click.option("--label-selector", default="", envvar=[command_env("monitor", "label_selector"), "LABEL_SELECTOR"],
              help="Label selector of worker pods.")
@click.option("--health-host", default=M.health_host, show_default=True, help="Address of /healthz and /metrics.")
@click.option("--health-port", type=click.IntRange(min=0, max=65535), default=M.health_port, show_default=True,
              help="Port of /healthz and /metrics (0: off).")
@click.option("--dashboard-port", type=click.IntRange(min=0, max=65535), default=0, show_default=True,
              help=f"Also serve the dashboard on this port of --health-host (0: off; {DASHBOARD_PORT} is usual).")
@click.option("--dashboard-token", default=None, help="The dashboard's actions (cancel, requeue, delete) need this token.")
@click.option("--dashboard-read-token/--no-dashboard-read-token", default=M.dashboard_read_token, show_default=True,
              help="The dashboard's reads (every experiment, trial and log it shows) need the token too. "
                   "Turn it on whenever the dashboard is reachable beyond this machine.")
@_connect_timeout_option
@_log_options
@click.option("--print-settings", is_flag=True, help="Print the resolved settings as JSON and exit.")
def monitor(mongo_url, mongo_db_address, mongo_db_port, trials_db, liveness, health_port, dashboard_port, log_level,
            log_json, print_settings, **options):
    """Recover trials of dead workers: requeue RUNNING trials whose heartbeat is stale or whose owner is gone."""
    if mongo_url is None:
        if mongo_db_address or mongo_db_port or trials_db:
            try:
                mongo_url = compose_mongo_url(mongo_db_address, mongo_db_port, trials_db)
            except MongoUrlError as err:
                raise click.BadParameter(str(err), param_hint="'--mongo-db-port'") from None
        else:
            mongo_url = DEFAULT_MONGO_URL
    if dashboard_port and options["dashboard_read_token"] and not options["dashboard_token"]:
        raise click.BadParameter("the reads are to need the token: give --dashboard-token (or its environment "
                                 "variable) too", param_hint="'--dashboard-read-token'")
    settings = MonitorSettings(mongo_url=mongo_url, liveness=tuple(dict.fromkeys(c for c in liveness if c != "none")),
                               health_port=health_port or None, dashboard_port=dashboard_port or None, **options)
    # the monitor module needs the monitor extra (prometheus-client); it waits out outages, and only
    # refused credentials end it
    _serve(settings, "monitor", "run_monitor", print_settings, log_level, log_json)


@click.command(context_settings={"auto_envvar_prefix": command_env("run")})
@click.argument("spec_path", metavar="SPEC", type=click.Path(exists=True, dir_okay=False))
@_mongo_option("run")
@click.option("--check-objective/--no-check-objective", default=True, show_default=True,
              help="Import the objective here first (turn off when only the workers have its module).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
@_connect_timeout_option
def run(spec_path, mongo_url, check_objective, progress, connect_timeout_seconds):
    """Run (or resume) the experiment described in SPEC (YAML or JSON) and print the best trial.

    Exit code: 0 when a trial succeeded, 1 when none did or MongoDB is unreachable, 2 for a bad spec.
    """
    defer_unused_imports()
    from .driver import ObjectiveImportError, load_spec, run_experiment
    from .spec import SpecError

    try:
        spec = load_spec(spec_path)
    except SpecError as err:
        raise CommandError(f"{spec_path}: {err}", exit_code=2) from None
    try:
        result = run_experiment(spec, mongo_url, check_import=check_objective, show_progressbar=progress,
                                connect_timeout_seconds=connect_timeout_seconds)
    except ObjectiveImportError as err:
        raise CommandError(str(err), exit_code=2) from None
    except StoreUnavailable as err:
        raise CommandError(str(err)) from None
    summary = f"{result.exp_key}: {result.trials} trials, {result.done} done, {result.errors} failed"
    if not result.succeeded:
        click.echo(f"{summary}; no trial succeeded", err=True)
        sys.exit(1)
    click.echo(f"{summary}; best loss {result.best_loss:.6g} with {json.dumps(result.best_params, default=str)}")


def _connect(mongo_url: str, timeout_seconds: float):
    from .store import JobStore

    try:
        return JobStore.connect(mongo_url, timeout_seconds=timeout_seconds)
    except StoreUnavailable as err:
        raise CommandError(str(err)) from None


@click.command(context_settings={"auto_envvar_prefix": command_env("status")})
@click.argument("exp_key", metavar="[EXP]", required=False)
@_mongo_option("status")
@click.option("--watch", is_flag=True, help="Show a live progress bar until the experiments are complete.")
@click.option("--interval-seconds", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
              help="Time between refreshes with --watch.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_connect_timeout_option
def status(exp_key, mongo_url, watch, interval_seconds, as_json, connect_timeout_seconds):
    """Experiments (or EXP) with counts per state, best loss, trials per minute and ETA."""
    from .status import all_statuses, status_table, watch as watch_statuses

    store = _connect(mongo_url, connect_timeout_seconds)
    try:
        if exp_key and exp_key not in store.experiment_keys():
            raise CommandError(f"no experiment {exp_key!r} in {store.address.redacted()}")
        statuses = watch_statuses(store, exp_key, interval_seconds) if watch else all_statuses(store, exp_key)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps([s.as_dict() for s in statuses], indent=2))
    elif not watch:
        from rich.console import Console

        if statuses:
            Console().print(status_table(statuses))
        else:
            click.echo("no experiments yet")


@click.command(context_settings={"auto_envvar_prefix": command_env("report")})
@click.argument("exp_key", metavar="EXP")
@_mongo_option("report")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Directory to write into (default: report-EXP).")
@_connect_timeout_option
def report(exp_key, mongo_url, out_dir, connect_timeout_seconds):
    """Plots (PNG and one self-contained HTML page) and a CSV/JSON export of every trial of EXP."""
    from .experiment_report import ReportError, write_report

    store = _connect(mongo_url, connect_timeout_seconds)
    try:
        files = write_report(store, exp_key, out_dir or f"report-{exp_key}")
    except ReportError as err:
        raise CommandError(str(err)) from None
    finally:
        store.close()
    for kind, path in files.items():
        click.echo(f"{kind:>15}: {path}")


@click.command(context_settings={"auto_envvar_prefix": command_env("dashboard")})
@_mongo_option("dashboard")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface; put it behind your own access control).")
@click.option("--port", type=click.IntRange(min=1, max=65535), default=DASHBOARD_PORT, show_default=True)
@click.option("--token", default=None,
              help="The actions (cancel, requeue, delete) need this token; without one they are off.")
@click.option("--read-token/--no-read-token", default=False, show_default=True,
              help="The reads (every experiment, trial and log the page shows) need the token too. Turn it on "
                   "whenever --host is reachable beyond this machine.")
@_connect_timeout_option
@_log_options
def dashboard(mongo_url, host, port, token, read_token, connect_timeout_seconds, log_level, log_json):
    """A live web page of the experiments (and its JSON API): counts, plots, trials, actions."""
    if read_token and not token:
        raise click.BadParameter("the reads are to need the token: give --token (or its environment variable) too",
                                 param_hint="'--read-token'")
    configure_logging(log_level, log_json)
    try:
        from .dashboard.app import serve
    except ImportError as err:
        raise CommandError(f"the dashboard needs the dashboard extra (pip install 'hyperfleet[dashboard]'): {err}") from None
    store = _connect(mongo_url, connect_timeout_seconds)
    click.echo(f"hyperfleet dashboard on http://{host}:{port}/" + ("" if token else " (actions off: no --token)")
               + (" (reads need the token)" if read_token else ""), err=True)
    try:
        serve(store, host, port, token, read_token=read_token)
    finally:
        store.close()


@click.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--max-age-seconds", type=click.FloatRange(min=0), default=120.0, show_default=True)
def alive(path, max_age_seconds):
    """Exit 0 if the worker touched PATH (its --alive-file) within --max-age-seconds, else 1.

    A liveness probe: a worker whose loop is stuck (not an objective that runs long) stops touching it.
    """
    try:
        age = time.time() - os.path.getmtime(path)
    except OSError as err:
        raise CommandError(f"{err.strerror}: {path}", prefix="not alive") from None
    if age > max_age_seconds:
        raise CommandError(f"{path} last touched {age:.0f}s ago (more than {max_age_seconds:g}s)", prefix="not alive")


@click.group(context_settings={"auto_envvar_prefix": COMMAND_ENV_PREFIX, "help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hyperfleet", message="%(prog)s %(version)s")
def main():
    """hyperfleet: distributed hyperopt on Kubernetes and Docker hosts."""


main.add_command(worker)
main.add_command(monitor)
main.add_command(run)
main.add_command(status)
main.add_command(report)
main.add_command(dashboard)
main.add_command(alive)

# each command's --help names the environment variables of its options: the reference for them
for _command in main.commands.values():
    for _param in _command.params:
        if isinstance(_param, click.Option):
            _param.show_envvar = True


def mongo_worker_main():
    """``hyperfleet-mongo-worker``: the worker under hyperopt-mongo-worker's name and flags."""
    worker.main(prog_name="hyperfleet-mongo-worker", auto_envvar_prefix=command_env("worker"))
