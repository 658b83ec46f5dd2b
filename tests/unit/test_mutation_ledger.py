"""The mutation ledger's merge of clones' copies (make mutation's --shard runs: tests/mutation/ledger.py)."""

import json

from tests.mutation import ledger


def write(path, entries):
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))


def test_merge_takes_the_new_and_the_rerun_entries_of_each_copy(tmp_path, monkeypatch):
    monkeypatch.setattr(ledger, "LEDGER_DIR", tmp_path / "ledger")
    old = {"key": "a", "line_no": 1, "operator": "op", "outcome": "killed", "test": "t1"}
    stale = {"key": "b", "line_no": 2, "operator": "op", "outcome": "survived"}
    ledger.save("store", {"a": old, "b": stale})
    rerun = {**stale, "outcome": "killed", "test": "t2"}
    new = {"key": "c", "line_no": 3, "operator": "op", "outcome": "survived"}
    write(tmp_path / "one.jsonl", [old, rerun])  # a clone that ran "b" again
    write(tmp_path / "two.jsonl", [old, stale, new])  # a clone that kept "b" as it was and ran "c"
    assert ledger.merge("store", [tmp_path / "one.jsonl", tmp_path / "two.jsonl"]) == 2
    assert ledger.load("store") == {"a": old, "b": rerun, "c": new}
    write(tmp_path / "same.jsonl", [old, rerun, new])
    assert ledger.merge("store", [tmp_path / "same.jsonl"]) == 0  # nothing it does not hold already
