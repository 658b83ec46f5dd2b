"""The mutation ledger: every mutant's outcome, kept in the repository (tests/mutation/ledger/<module>.jsonl)
so that a run of hours can be spread over several sittings, on machines that keep nothing between them.

``make mutation`` takes an outcome from the ledger instead of running the mutant again only while
nothing that decided it has changed:

- the mutant: its operator, its line before and after, and the source of the function (or top-level
  statement) it is in, byte for byte (``scope``);
- killed: the test that failed on it, whose source (decorators included) is unchanged and which still
  passes unmutated (it is in this run's coverage map);
- survived: the tests that execute its line, each with unchanged source: a new test that reaches the
  line, or a changed one, runs the mutant again.

A timeout is never carried over (no test is known to decide it). Helpers the tests share (fixtures,
tests/helpers.py) are not hashed: ``make mutation MUTATION_ARGS=--fresh`` ignores the ledger after a
change there.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
LEDGER_DIR = HERE / "ledger"
REPO = HERE.parents[1]
#: the failing tests in pytest's short summary (``-x`` stops at the first)
FAILED_LINE = re.compile(r"^(?:FAILED|ERROR) (.+)$", re.MULTILINE)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def node_source(lines: list[str], node: ast.AST) -> str:
    """A statement's source lines, its decorators included."""
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return "\n".join(lines[first - 1:node.end_lineno])


def scope_source(source: str, line: int) -> str:
    """The source of the innermost function holding ``line``, or of the top-level statement holding it."""
    tree = ast.parse(source)
    lines = source.splitlines()
    best = None
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.lineno <= line <= node.end_lineno:
            if best is None or node.lineno >= best.lineno:
                best = node
    if best is None:
        best = next((n for n in tree.body if n.lineno <= line <= n.end_lineno), None)
    if best is None:
        return lines[line - 1]
    return node_source(lines, best)


class TestSources:
    """Each test's source hash by node id (``path::[Class::]name[params]``), files parsed once."""

    def __init__(self):
        self._files: dict[str, dict[str, str]] = {}

    def sha(self, nodeid: str) -> str | None:
        path, _, rest = nodeid.partition("::")
        name = rest.split("[")[0].split("::")[-1]
        if path not in self._files:
            self._files[path] = {}
            file = REPO / path
            if file.exists():
                source = file.read_text()
                lines = source.splitlines()
                for node in ast.walk(ast.parse(source)):
                    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        self._files[path][node.name] = _sha(node_source(lines, node))
        return self._files[path].get(name)

    def tests_sha(self, nodeids: list[str]) -> str | None:
        shas = [self.sha(t) for t in sorted(nodeids)]
        return None if None in shas else _sha("\n".join(f"{t} {s}" for t, s in zip(sorted(nodeids), shas, strict=True)))


def key(operator: str, line_text: str, mutated_text: str, scope: str, rank: int) -> str:
    """A mutant's identity across edits elsewhere in the module (``rank``: among the mutants of the same
    operator, line and scope, in the order of their occurrence)."""
    return _sha("\0".join([operator, line_text.strip(), mutated_text.strip(), _sha(scope), str(rank)]))


def load(name: str) -> dict[str, dict]:
    path = LEDGER_DIR / f"{name}.jsonl"
    if not path.exists():
        return {}
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {e["key"]: e for e in entries}


def save(name: str, entries: dict[str, dict]) -> None:
    LEDGER_DIR.mkdir(exist_ok=True)
    ordered = sorted(entries.values(), key=lambda e: (e["line_no"], e["operator"], e["key"]))
    (LEDGER_DIR / f"{name}.jsonl").write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in ordered))


def killer(output: str, known) -> str | None:
    """The test that failed on the mutant, from pytest's short summary (``known``: the node ids it may be;
    a parameter's id may hold spaces, and the summary may add `` - <message>``)."""
    for rest in FAILED_LINE.findall(output or ""):
        found = [t for t in known if rest == t or rest.startswith(t + " - ")]
        if found:
            return max(found, key=len)
    return None


def merge(name: str, others: list[Path]) -> int:
    """Take into ``name``'s ledger what other clones' copies of it (``--shard`` runs, begun from this ledger as it
    is) hold that it does not: their new entries, and those they ran again (a changed test). How many entries
    were added or replaced."""
    base = load(name)
    entries = dict(base)
    for path in others:
        for line in Path(path).read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                if entry != base.get(entry["key"]):
                    entries[entry["key"]] = entry
    save(name, entries)
    return sum(entries[k] != base.get(k) for k in entries)


if __name__ == "__main__":
    import sys

    if len(sys.argv) < 4 or sys.argv[1] != "merge":
        sys.exit("usage: python tests/mutation/ledger.py merge MODULE LEDGER_FILE...")
    print(f"{merge(sys.argv[2], [Path(p) for p in sys.argv[3:]])} entries added or replaced in {LEDGER_DIR / sys.argv[2]}.jsonl")
