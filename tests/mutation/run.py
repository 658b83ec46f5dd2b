"""``make mutation``: mutation testing of the core with cosmic-ray (docs/testing.md, "Mutation testing").

For each module: cosmic-ray lists its mutants; those this file leaves out are marked skipped with the
reason (operators outside the selective set, logging-only statements, the equivalent mutants of
tests/mutation/equivalent.toml, and those outside a --sample); cosmic-ray then applies each remaining
mutant to the file in place, runs tests/mutation/run_selected.py (only the tests that execute the
mutated line, from a coverage map made once per run), and puts the file back. The report is the
killed share of the mutants run, per module, and the survivors' diffs.

Runs with the interpreter that has cosmic-ray (make mutation makes .venv-mutation); the tests run with
--python (the project's virtualenv). Never run it in a checkout where others work: the modules are
rewritten in place while it runs (it refuses to start when one has uncommitted changes, and checks
afterwards that each is back as it was).

    python tests/mutation/run.py --python .venv/bin/python [--modules spec,store] [--sample N] [--seed S]
        [--shard K/N]
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import cosmic_ray.plugins
from cosmic_ray.mutating import mutate_code
from cosmic_ray.work_db import WorkDB, WorkResultStorage, use_db
from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ledger  # noqa: E402 - tests/mutation/ledger.py, beside this file
from run_selected import select  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
RUNTIME = "runtime/hyperfleet"
#: the unit tests and the integration tests that need only the test database, the slow ones too (make test-core
#: without its "not slow": the outage and the hand-back on a signal are tested only there); HYPERFLEET_TESTS_WITHOUT,
#: set by make mutation from the Makefile's CORE_WITHOUT, opts out of the rest
CORE_TESTS = ["tests/unit", "tests/integration"]
#: module -> the tests run against it
MODULES = {
    "spec": ["tests/unit"],
    "settings": ["tests/unit"],
    "envmap": ["tests/unit"],
    "mongo_url": ["tests/unit"],
    "store": CORE_TESTS,
    "worker": CORE_TESTS,
    "monitor": CORE_TESTS,
}
#: at most this many tests may fail the unmutated run (flakes on a loaded machine): they are left out of the map
MAX_FAILED_IN_MAP = 3

# Selective mutation: each binary operator is replaced by its counterpart only, and each comparison by
# its boundary and its negation; cosmic-ray's other replacements of the same operator (+ by **, <<, ^
# ...) are killed by the same tests and would multiply the run time by 5 to 11.
BINARY = {"Add": "Sub", "Sub": "Add", "Mul": "Div", "Div": "Mul", "FloorDiv": "Div", "Mod": "Div", "Pow": "Mul",
          "LShift": "RShift", "RShift": "LShift", "BitOr": "BitAnd", "BitAnd": "BitOr", "BitXor": "BitAnd"}
COMPARISON = {"Eq": {"NotEq"}, "NotEq": {"Eq"}, "Lt": {"LtE", "GtE"}, "LtE": {"Lt", "Gt"}, "Gt": {"GtE", "LtE"},
              "GtE": {"Gt", "Lt"}, "Is": {"IsNot"}, "IsNot": {"Is"}, "In": {"NotIn"}, "NotIn": {"In"}}
#: calls whose mutation changes only what is logged (the log level and message): not behaviour the tests own;
#: a module logger or one an object keeps (self._log)
LOGGING_CALL = re.compile(r"^(self\._?)?(log|logger)\.(debug|info|warning|error|exception|critical)$")


def kept_operator(name: str) -> bool:
    match = re.fullmatch(r"core/Replace(Binary|Comparison)Operator_(\w+)_(\w+)", name)
    if not match:
        return True
    kind, old, new = match.groups()
    return BINARY.get(old) == new if kind == "Binary" else new in COMPARISON.get(old, ())


def _logs_only(node: ast.AST) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and bool(
        LOGGING_CALL.match(ast.unparse(node.value.func)))


def logging_lines(source: str) -> set[int]:
    """The lines of statements that only log (``log.info(...)`` and the like, all their lines), and the
    condition of an ``if`` whose only statements log (``if removed: log.info(...)``, no else)."""
    lines = set()
    for node in ast.walk(ast.parse(source)):
        if _logs_only(node):
            lines.update(range(node.lineno, node.end_lineno + 1))
        elif isinstance(node, ast.If) and not node.orelse and all(_logs_only(n) for n in node.body):
            lines.update(range(node.lineno, node.body[0].lineno))
    return lines


def annotation_spans(source: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Where the type annotations are, when the module never evaluates them (``from __future__ import
    annotations``): a mutant there (``str | None`` -> ``str & None``) changes nothing that runs."""
    tree = ast.parse(source)
    if not any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and any(a.name == "annotations" for a in n.names)
               for n in tree.body):
        return []
    spans = []
    for node in ast.walk(tree):
        found = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found.append(node.returns)
        elif isinstance(node, ast.arg):
            found.append(node.annotation)
        elif isinstance(node, ast.AnnAssign):
            found.append(node.annotation)
        spans += [((a.lineno, a.col_offset), (a.end_lineno, a.end_col_offset)) for a in found if a is not None]
    return spans


def mutated_lines(entry: dict) -> list[str]:
    """An equivalent entry's ``mutated``: one line, or a list of the lines of several mutants of its line."""
    mutated = entry["mutated"]
    return [m.strip() for m in ([mutated] if isinstance(mutated, str) else mutated)]


def load_equivalents() -> list[dict]:
    """tests/mutation/equivalent.toml: each equivalent mutant by module, operator and the source line's text."""
    return tomllib.loads((HERE / "equivalent.toml").read_text()).get("equivalent", [])


def coverage_map(python: str, tests: list[str], modules: list[str], out: Path, env: dict,
                 coverage_lib: Path) -> tuple[float, list[str]]:
    """Run ``tests`` once under the coverage plugin; the map goes to ``out``. The run must pass but for at
    most MAX_FAILED_IN_MAP tests, which are left out of the map; returns the time and those tests."""
    start = time.monotonic()
    cmd = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.mutation.coverage_map",
           f"--basetemp={out.parent / 'pytest-map'}", "--durations=0", *tests]
    run_env = dict(env, HYPERFLEET_COVERAGE_MAP=str(out), HYPERFLEET_COVERAGE_MODULES=",".join(modules),
                   PYTHONPATH=os.pathsep.join([str(coverage_lib), str(HERE / "startup"), env["PYTHONPATH"]]))
    result = subprocess.run(cmd, cwd=REPO, env=run_env)
    measured = json.loads(out.read_text()) if out.exists() else {}
    failed = sorted(t for t, e in measured.items() if e.get("failed"))
    if result.returncode != 0 and (not failed or len(failed) > MAX_FAILED_IN_MAP):
        sys.exit(f"mutation: the tests fail before any mutation ({' '.join(cmd)}): fix them first")
    if failed:
        # a test that fails unmutated would "kill" every mutant it runs against: it is left out, and said
        print(f"mutation: left out of the map, failed unmutated (timing under load?): {', '.join(failed)}", flush=True)
        out.write_text(json.dumps({t: e for t, e in measured.items() if t not in failed}, indent=1))
        with (out.parent / "left-out-tests.txt").open("a") as f:
            f.write("".join(f"{t}\n" for t in failed))
    return time.monotonic() - start, failed


def skip(db: WorkDB, job_id: str, reason: str) -> None:
    db.set_result(job_id, WorkResult(output=reason, worker_outcome=WorkerOutcome.SKIPPED))


def shard(text: str) -> tuple[int, int]:
    """--shard K/N, 1 <= K <= N."""
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not K/N (two whole numbers)") from None
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"{text!r}: K must be from 1 to N")
    return k, n


def prepare(name: str, module: str, workdir: Path, python: str, covmap: Path, sample: int | None, seed: int,
            rerun: bool, resume: bool = False, use_ledger: bool = True, share: tuple[int, int] | None = None) -> Path:
    """The session of ``module``: listed, filtered, its config and pristine copy written. With ``resume``,
    an earlier run's session is kept as it is: cosmic-ray runs only the mutants it has no result for."""
    pristine = workdir / f"{name}.py.orig"
    session = workdir / f"{name}.sqlite"
    if resume and session.exists() and (not pristine.exists() or pristine.read_text() != (REPO / module).read_text()):
        sys.exit(f"mutation: --resume: {module} changed since the run of {name} began: start it again without --resume")
    pristine.write_text((REPO / module).read_text())
    pytest_args = f"-q -p no:cacheprovider --basetemp={workdir / ('pytest-' + name)}"
    command = f"{shlex.quote(python)} {HERE / 'run_selected.py'} {module} {pristine} {covmap} -- {pytest_args}"
    config = workdir / f"{name}.toml"
    config.write_text(f"""[cosmic-ray]
module-path = "{module}"
timeout = 3600.0
excluded-modules = []
test-command = {json.dumps(command)}

[cosmic-ray.distributor]
name = "local"
""")
    if resume and session.exists():
        return config
    if rerun:
        if not session.exists():
            sys.exit(f"mutation: --survivors: no earlier run of {name} in {workdir}")
    else:
        session.unlink(missing_ok=True)
        subprocess.run([sys.executable, "-m", "cosmic_ray.cli", "init", str(config), str(session)], cwd=REPO, check=True)
    source = pristine.read_text()
    source_lines = source.splitlines()
    logged = logging_lines(source)
    annotations = annotation_spans(source)
    equivalents = [e for e in load_equivalents() if e["module"] == module]

    def reason_to_skip(mutation) -> str | None:
        line = mutation.start_pos[0]
        text = source_lines[line - 1].strip()
        if not kept_operator(mutation.operator_name):
            return "operator outside the selective set"
        if any(a <= tuple(mutation.start_pos) < b for a, b in annotations):
            return "equivalent: in a type annotation, never evaluated"
        if line in logged:
            return "a logging-only statement"
        for e in equivalents:
            if e["operator"] == mutation.operator_name and e["line"].strip() == text and (
                    "function" not in e or e["function"] == mutation.definition_name) and (
                    "mutated" not in e or mutated_line(mutation) in mutated_lines(e)):
                return f"equivalent (tests/mutation/equivalent.toml): {e['reason']}"
        return None

    def mutated_line(mutation) -> str:
        """The mutated text of the mutation's line (an operator may make several mutants of one line)."""
        operator = cosmic_ray.plugins.get_operator(mutation.operator_name)(**(mutation.operator_args or {}))
        mutated = mutate_code(source, operator, mutation.occurrence)
        return mutated.splitlines()[mutation.start_pos[0] - 1].strip()

    with use_db(str(session), WorkDB.Mode.open) as db:
        if rerun:
            # the survivors of the earlier run run again (the killed stay killed: tests were only added)
            survivors = [item for item, result in db.completed_work_items
                         if result.worker_outcome == WorkerOutcome.NORMAL and result.test_outcome == TestOutcome.SURVIVED]
            for item in survivors:
                reason = reason_to_skip(item.mutations[0])
                if reason:
                    skip(db, item.job_id, reason)
            with db._session_maker.begin() as session:  # cosmic-ray has no call to forget a result
                session.query(WorkResultStorage).filter(
                    WorkResultStorage.job_id.in_([i.job_id for i in survivors]),
                    WorkResultStorage.worker_outcome == WorkerOutcome.NORMAL).delete(synchronize_session=False)
            return config
        candidates = []
        identities = Identities(source, module, json.loads(covmap.read_text()))
        entries = ledger.load(name) if use_ledger else {}
        for item in db.pending_work_items:
            (mutation,) = item.mutations
            reason = reason_to_skip(mutation)
            if reason:
                skip(db, item.job_id, reason)
                continue
            identity = identities.key(mutation)
            carried = identities.carried(mutation, entries.get(identity))
            if carried:
                db.set_result(item.job_id, carried)
            elif share and int(identity, 16) % share[1] != share[0] - 1:  # the key: the same in every clone
                skip(db, item.job_id, "in another shard")
            else:
                candidates.append(item.job_id)
        if sample is not None and sample < len(candidates):
            chosen = set(random.Random(seed).sample(sorted(candidates), sample))
            for job_id in set(candidates) - chosen:
                skip(db, job_id, "not in the sample")
    return config


class Identities:
    """Each mutant of a module as the ledger (tests/mutation/ledger.py) knows it, and what the ledger may say of it."""

    def __init__(self, source: str, module: str, covmap: dict):
        self.source, self.module, self.covmap = source, module, covmap
        self.lines = source.splitlines()
        self.tests = ledger.TestSources()
        self._ranks: dict[tuple, list[int]] = {}
        self._mutated: dict[tuple, str] = {}

    def mutated(self, mutation) -> str:
        """The module's source with the mutant applied."""
        found = (mutation.operator_name, mutation.occurrence)
        if found not in self._mutated:
            operator = cosmic_ray.plugins.get_operator(mutation.operator_name)(**(mutation.operator_args or {}))
            self._mutated[found] = mutate_code(self.source, operator, mutation.occurrence)
        return self._mutated[found]

    def key(self, mutation) -> str:
        line = mutation.start_pos[0]
        mutated = self.mutated(mutation).splitlines()
        scope = ledger.scope_source(self.source, line)
        group = (mutation.operator_name, self.lines[line - 1], mutated[line - 1] if line <= len(mutated) else "", scope)
        # the mutant's place among those of its operator, line and scope (cosmic-ray counts occurrences in
        # the whole module: they shift with every edit elsewhere)
        ranks = self._ranks.setdefault(group, [])
        if mutation.occurrence not in ranks:
            ranks.append(mutation.occurrence)
            ranks.sort()
        return ledger.key(group[0], group[1], group[2], scope, ranks.index(mutation.occurrence))

    def selected(self, mutation) -> list[str]:
        return select(self.module, self.source, self.mutated(mutation), self.covmap) or []

    def entry(self, mutation, result: WorkResult, commit: str) -> dict | None:
        """The ledger's entry for a mutant that ran (None for one that timed out or could not run)."""
        if result.worker_outcome != WorkerOutcome.NORMAL or "MUTANT-TIMEOUT" in (result.output or ""):
            return None
        line = mutation.start_pos[0]
        entry = {"key": self.key(mutation), "operator": mutation.operator_name, "line_no": line,
                 "line": self.lines[line - 1].strip(), "mutated": self.mutated(mutation).splitlines()[line - 1].strip(),
                 "commit": commit}
        if result.test_outcome == TestOutcome.KILLED:
            test = ledger.killer(result.output, self.covmap)
            if test is None or self.tests.sha(test) is None:
                return None
            return {**entry, "outcome": "killed", "test": test, "test_sha": self.tests.sha(test)}
        tests = self.selected(mutation)
        return {**entry, "outcome": "survived", "tests": len(tests), "tests_sha": self.tests.tests_sha(tests)}

    def carried(self, mutation, entry: dict | None) -> WorkResult | None:
        """The ledger's outcome, when nothing that decided it has changed."""
        if entry is None:
            return None
        if entry["outcome"] == "killed":
            if entry["test"] in self.covmap and self.tests.sha(entry["test"]) == entry["test_sha"]:
                return WorkResult(output=f"{CARRIED} at {entry['commit'][:10]}: killed by {entry['test']}",
                                  test_outcome=TestOutcome.KILLED, worker_outcome=WorkerOutcome.NORMAL, diff="")
            return None
        tests = self.selected(mutation)
        if entry["tests_sha"] is not None and self.tests.tests_sha(tests) == entry["tests_sha"]:
            return WorkResult(output=f"{CARRIED} at {entry['commit'][:10]}: survived {len(tests)} test(s)",
                              test_outcome=TestOutcome.SURVIVED, worker_outcome=WorkerOutcome.NORMAL,
                              diff=mutation_diff(self.source, self.mutated(mutation)))
        return None


#: how a result taken from the ledger starts its output
CARRIED = "from the ledger"


def mutation_diff(before: str, after: str) -> str:
    import difflib
    return "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True), n=1))


def record(name: str, module: str, workdir: Path, covmap: Path) -> int:
    """Add the outcomes of this run's mutants (not those taken from the ledger) to the ledger; how many."""
    source = (workdir / f"{name}.py.orig").read_text()
    identities = Identities(source, module, json.loads(covmap.read_text()))
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, check=True, capture_output=True, text=True).stdout.strip()
    entries = ledger.load(name)
    added = 0
    with use_db(str(workdir / f"{name}.sqlite"), WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            if (result.output or "").startswith(CARRIED):
                continue
            entry = identities.entry(item.mutations[0], result, commit)
            if entry is not None:
                entries[entry["key"]] = entry
                added += 1
    ledger.save(name, entries)
    return added


def summarize(name: str, module: str, workdir: Path, seconds: float) -> dict:
    dump = subprocess.run([sys.executable, "-m", "cosmic_ray.cli", "dump", str(workdir / f"{name}.sqlite")],
                          cwd=REPO, check=True, capture_output=True, text=True).stdout
    counts = {"killed": 0, "timeout": 0, "survived": 0, "incompetent": 0, "equivalent": 0, "skipped": 0,
              "from_ledger": 0}
    survivors = []
    for row in dump.splitlines():
        item, result = json.loads(row)
        if result is None:
            continue
        if (result["output"] or "").startswith(CARRIED):
            counts["from_ledger"] += 1
        if result["worker_outcome"] == "skipped":
            counts["equivalent" if result["output"].startswith("equivalent") else "skipped"] += 1
        elif result["test_outcome"] == "killed":
            counts["timeout" if "MUTANT-TIMEOUT" in (result["output"] or "") else "killed"] += 1
        elif result["test_outcome"] == "survived":
            counts["survived"] += 1
            (m,) = item["mutations"]
            survivors.append(f"{m['operator_name']} line {m['start_pos'][0]} ({m['definition_name']}): "
                             f"{(result['output'] or '').splitlines()[0] if result['output'] else ''}\n{result['diff']}")
        else:
            counts["incompetent"] += 1
    run = counts["killed"] + counts["timeout"] + counts["survived"]
    counts["score"] = round(100 * (counts["killed"] + counts["timeout"]) / run, 1) if run else None
    counts["seconds"] = round(seconds)
    (workdir / f"{name}-survivors.txt").write_text("\n\n".join(survivors) + "\n")
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", required=True, help="the project's interpreter (runs the tests)")
    parser.add_argument("--modules", default=",".join(MODULES), help=f"comma-separated, of {', '.join(MODULES)}")
    parser.add_argument("--sample", type=int, help="run at most N mutants of each module, drawn with --seed")
    parser.add_argument("--seed", type=int, default=31)
    parser.add_argument("--shard", type=shard, metavar="K/N",
                        help="run only the K-th of N shares of the mutants left to run (K from 1), so that N clones "
                             "share a module; their ledgers are merged with tests/mutation/ledger.py merge")
    parser.add_argument("--survivors", action="store_true",
                        help="run again only the survivors of the last run (after tests were added); the rest is kept")
    parser.add_argument("--resume", action="store_true",
                        help="go on with an interrupted run: its coverage map and results are kept, only the mutants "
                             "without a result run (a module whose run had not begun starts as usual)")
    parser.add_argument("--fresh", action="store_true",
                        help="run every mutant, taking no outcome from the ledger (tests/mutation/ledger/); "
                             "the outcomes still go into it")
    parser.add_argument("--workdir", default=str(REPO / ".mutation"))
    parser.add_argument("--coverage-lib", required=True, help="a folder with only coverage installed in it")
    parser.add_argument("--coverage-map", help="reuse this coverage map (of the same tests and modules, unchanged since)")
    parser.add_argument("--map-tests", help="with --coverage-map: measure these tests (comma-separated) again into it")
    args = parser.parse_args()
    # started in the background by a shell, SIGINT comes ignored, and the tests (and the time limit's
    # SIGINT) need it to work: Python's own handler here, the default one in the processes started
    signal.signal(signal.SIGINT, signal.default_int_handler)
    names = args.modules.split(",")
    unknown = set(names) - set(MODULES)
    if unknown:
        parser.error(f"--modules: unknown {', '.join(sorted(unknown))}; known: {', '.join(MODULES)}")
    modules = {n: f"{RUNTIME}/{n}.py" for n in names}
    dirty = subprocess.run(["git", "status", "--porcelain", "--", *modules.values()], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout
    if dirty:
        sys.exit(f"mutation: uncommitted changes in a module it would rewrite:\n{dirty}")
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    # the tests and every process they start import the modules of this checkout (absolute paths)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COVERAGE_", "HYPERFLEET_COVERAGE"))}
    if not env.get("HYPERFLEET_TESTS_WITHOUT"):
        sys.exit("mutation: HYPERFLEET_TESTS_WITHOUT is not set: run it through make mutation (make test-core's opt-out)")
    env.update(PYTHONPATH=os.pathsep.join([str(REPO / "runtime"), str(REPO)]))
    os.environ.update(env)
    report = {}
    groups: dict[tuple, list[str]] = {}
    for name in names:
        groups.setdefault(tuple(MODULES[name]), []).append(name)
    for tests, group in groups.items():
        covmap = workdir / f"coverage-map-{'-'.join(group)}.json"
        if args.resume and covmap.exists():
            print(f"mutation: --resume: the coverage map {covmap} of the interrupted run", flush=True)
        elif args.coverage_map:
            reused = json.loads(Path(args.coverage_map).read_text())
            if args.map_tests:  # measure these again (new or changed tests) over the reused map
                fresh = workdir / f"coverage-map-{'-'.join(group)}-fresh.json"
                seconds, failed = coverage_map(args.python, args.map_tests.split(","), [modules[n] for n in group],
                                               fresh, env, Path(args.coverage_lib).resolve())
                print(f"mutation: coverage map of {args.map_tests}: {seconds:.0f} s", flush=True)
                reused.update(json.loads(fresh.read_text()))
                for test in failed:
                    reused.pop(test, None)
            covmap.write_text(json.dumps(reused, indent=1))
        else:
            seconds, _ = coverage_map(args.python, list(tests), [modules[n] for n in group], covmap, env,
                                      Path(args.coverage_lib).resolve())
            print(f"mutation: coverage map of {', '.join(group)}: {seconds:.0f} s", flush=True)
        for name in group:
            start = time.monotonic()
            config = prepare(name, modules[name], workdir, args.python, covmap, args.sample, args.seed,
                             args.survivors, args.resume, use_ledger=not args.fresh, share=args.shard)
            try:
                subprocess.run([sys.executable, "-m", "cosmic_ray.cli", "exec", str(config),
                                str(workdir / f"{name}.sqlite")], cwd=REPO, check=True, env=env)
            finally:
                restored = (REPO / modules[name]).read_text() == (workdir / f"{name}.py.orig").read_text()
                if not restored:
                    sys.exit(f"mutation: {modules[name]} was not restored: `git checkout {modules[name]}`")
                # stopped or not, what ran goes into the ledger (a run of hours spans sittings)
                recorded = record(name, modules[name], workdir, covmap)
                print(f"mutation: {name}: {recorded} outcome(s) recorded in {ledger.LEDGER_DIR / (name + '.jsonl')}",
                      flush=True)
            report[name] = summarize(name, modules[name], workdir, time.monotonic() - start)
            print(f"mutation: {name}: {json.dumps(report[name])}", flush=True)
    (workdir / "report.json").write_text(json.dumps(report, indent=1))
    print(f"\n{'module':<10} {'killed':>6} {'timeout':>7} {'survived':>8} {'equiv.':>6} {'skipped':>7} {'score':>6} {'time':>6}"
          f" {'of which from the ledger':>24}")
    for name, c in report.items():
        print(f"{name:<10} {c['killed']:>6} {c['timeout']:>7} {c['survived']:>8} {c['equivalent']:>6} {c['skipped']:>7} "
              f"{c['score'] if c['score'] is not None else '-':>5}% {c['seconds']:>5}s {c['from_ledger']:>24}")
    print(f"survivors' diffs: {workdir}/<module>-survivors.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
