"""The audit journal (SQLite, WAL) and the state file in data_dir."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from node.errors import JournalError
from node.runtime import journal as journal_mod
from node.runtime.journal import Journal, StateFile


def open_journal(path: Path, **kw: Any) -> Journal:
    return Journal.open(path / "journal.sqlite3", node="a", **kw)


def run(fn: Any, *args: Any) -> Any:
    async def main() -> Any:
        with trio.fail_after(10):
            return await fn(*args)

    return trio.run(main)


def test_rows_are_written_in_wal_mode_and_read_newest_first(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    j.record("partition_decided", {"reason": "r1"}, hlc="1.0.a")
    j.record("peer_joined", {"peer": "b"}, hlc="2.0.a")
    j.record("partition_healed", {"reason": "r2"}, hlc="3.0.a")
    assert j.pending == 3 and j.written == 0  # record() does no I/O
    rows = run(j.history, 10)
    assert [r["kind"] for r in rows] == ["partition_healed", "peer_joined", "partition_decided"]
    assert rows[0]["data"] == {"reason": "r2"} and rows[0]["hlc"] == "3.0.a"
    assert rows[0]["node"] == "a" and abs(rows[0]["wall"] - time.time()) < 60
    assert [r["kind"] for r in run(j.history, 10, ["peer_joined"])] == ["peer_joined"]
    assert len(run(j.history, 2)) == 2
    j.close()
    conn = sqlite3.connect(tmp_path / "journal.sqlite3")
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute("SELECT COUNT(*) FROM journal").fetchone() == (3,)


@pytest.mark.parametrize("limit", [0, -1, 10_001, 1.5, "5"])
def test_history_limit_is_checked(tmp_path: Path, limit: object) -> None:
    j = open_journal(tmp_path)
    with pytest.raises(ValueError, match=r"limit must be an int in 1\.\.10000"):
        run(j.history, limit)


def test_retention_keeps_the_newest_rows_and_drops_old_ones(tmp_path: Path) -> None:
    j = open_journal(tmp_path, retention_rows=50)
    for i in range(120):
        j.record("breaker", {"i": i})
    run(j.flush)
    j.close()
    conn = sqlite3.connect(tmp_path / "journal.sqlite3")
    conn.execute(
        "INSERT INTO journal (wall, hlc, node, kind, data) VALUES (?, '', 'a', 'old', '{}')",
        (time.time() - 31 * 86_400,),
    )
    conn.commit()
    conn.close()
    j = open_journal(tmp_path, retention_rows=50)  # retention runs at open
    rows = run(j.history, 1000)
    assert len(rows) == 50
    assert [r["data"]["i"] for r in rows] == list(range(119, 69, -1))
    assert not run(j.history, 10, ["old"])


def test_retention_by_age(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    j.close()
    conn = sqlite3.connect(tmp_path / "journal.sqlite3")
    for age_days in (40, 29):
        conn.execute(
            "INSERT INTO journal (wall, hlc, node, kind, data) VALUES (?, '', 'a', ?, '{}')",
            (time.time() - age_days * 86_400, f"d{age_days}"),
        )
    conn.commit()
    conn.close()
    j = open_journal(tmp_path, retention_days=30.0)
    assert [r["kind"] for r in run(j.history, 10)] == ["d29"]


def test_corrupt_journal_is_reported_with_its_path(tmp_path: Path) -> None:
    (tmp_path / "journal.sqlite3").write_bytes(b"this is not a database" * 100)
    with pytest.raises(JournalError, match=r"journal .*journal\.sqlite3 is corrupt or unwritable"):
        open_journal(tmp_path)


def test_unwritable_location_is_reported_with_its_path(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(JournalError, match="cannot be opened"):
        open_journal(blocker)
    with pytest.raises(JournalError, match="not writable"):
        StateFile(blocker / "state.json").check_writable()


def test_a_failed_write_loses_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    j = open_journal(tmp_path)
    real = j._write
    calls = {"n": 0}

    def flaky(rows: list[Any]) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise sqlite3.OperationalError("disk I/O error")
        real(rows)

    monkeypatch.setattr(j, "_write", flaky)
    j.record("a", {})
    j.record("b", {})
    run(j.flush)
    assert j.failures == 1 and j.pending == 2 and j.last_error == "disk I/O error"
    j.record("c", {})
    assert [r["kind"] for r in run(j.history, 10)] == ["c", "b", "a"]


def test_pending_rows_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_mod, "MAX_PENDING", 5)
    j = open_journal(tmp_path)
    for i in range(8):
        j.record("k", {"i": i})
    assert j.pending == 5 and j.dropped == 3
    assert [r["data"]["i"] for r in run(j.history, 10)] == [7, 6, 5, 4, 3]


def test_state_file_round_trip_and_atomic_replace(tmp_path: Path) -> None:
    sf = StateFile(tmp_path / "state.json")
    assert sf.load() == {}
    state = {"members": {"b": {"address": "b:1", "role": "member"}}, "departed": ["c"]}
    assert run(sf.save, state)
    assert json.loads((tmp_path / "state.json").read_text()) == state
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
    assert StateFile(tmp_path / "state.json").load() == state


@pytest.mark.parametrize("text", ["{not json", "[1, 2]"])
def test_corrupt_state_file_is_reported_with_its_path(tmp_path: Path, text: str) -> None:
    (tmp_path / "state.json").write_text(text)
    with pytest.raises(JournalError, match=r"state file .*state.json is corrupt"):
        StateFile(tmp_path / "state.json").load()


class JournalMachine(RuleBasedStateMachine):
    """Every recorded row is pending or written, in order; failures lose nothing."""

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self.dir = Path(tempfile.mkdtemp())
        self.j = open_journal(self.dir)
        self.model: list[str] = []
        self.fail_next = False
        real = self.j._write

        def write(rows: list[Any]) -> None:
            if self.fail_next:
                self.fail_next = False
                raise sqlite3.OperationalError("injected")
            real(rows)

        self.j._write = write  # type: ignore[method-assign]

    @rule(kind=st.sampled_from(["peer_joined", "breaker", "partition_decided"]))
    def record(self, kind: str) -> None:
        self.j.record(kind, {"n": len(self.model)})
        self.model.append(kind)

    @rule()
    def fail_the_next_write(self) -> None:
        self.fail_next = True

    @rule()
    def flush(self) -> None:
        run(self.j.flush)

    @rule(kinds=st.sets(st.sampled_from(["peer_joined", "breaker", "partition_decided"])))
    def history(self, kinds: set[str]) -> None:
        self.fail_next = False
        rows = run(self.j.history, 10_000, kinds or None)
        expected = [(n, k) for n, k in enumerate(self.model) if not kinds or k in kinds]
        assert [(r["data"]["n"], r["kind"]) for r in rows] == expected[::-1]

    @invariant()
    def nothing_unaccounted(self) -> None:
        assert self.j.written + self.j.pending == len(self.model)

    def teardown(self) -> None:
        self.j.close()


JournalMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=25, deadline=None)
test_journal_machine = JournalMachine.TestCase


def test_retention_also_runs_while_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_mod, "_PRUNE_EVERY", 5)
    j = open_journal(tmp_path / "nested" / "dirs", retention_rows=10)  # created as needed
    for i in range(30):
        j.record("k", {"i": i})
        if i % 5 == 4:
            run(j.flush)
    rows = run(j.history, 100)
    assert [r["data"]["i"] for r in rows] == list(range(29, 19, -1))


def test_a_failed_transaction_is_rolled_back(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    with pytest.raises(sqlite3.IntegrityError):
        j._write([(None, "", "a", "bad", "{}")])  # type: ignore[list-item]
    j.record("good", {})
    assert [r["kind"] for r in run(j.history, 10)] == ["good"]


def test_run_flushes_periodically_and_once_more_when_cancelled(tmp_path: Path) -> None:
    j = open_journal(tmp_path, flush_interval_s=0.01)

    async def main() -> None:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                await nursery.start(j.run)
                j.record("first", {})
                while j.written == 0:  # noqa: ASYNC110 - the writer runs on its own
                    await trio.sleep(0.01)
                j.record("last", {})
                nursery.cancel_scope.cancel()

    trio.run(main)
    assert j.written == 2 and j.pending == 0


def test_state_file_is_written_only_when_it_changed_and_failures_are_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sf = StateFile(tmp_path / "deeper" / "state.json")
    sf.check_writable()  # creates the directory
    writes: list[str] = []
    real = sf._replace
    monkeypatch.setattr(sf, "_replace", lambda text: (writes.append(text), real(text)))
    assert run(sf.save, {"a": 1}) and run(sf.save, {"a": 1})
    assert len(writes) == 1
    assert run(sf.save, {"a": 2}) and len(writes) == 2
    loaded = StateFile(tmp_path / "deeper" / "state.json")
    assert loaded.load() == {"a": 2}
    monkeypatch.setattr(loaded, "_replace", lambda text: writes.append(text))
    assert run(loaded.save, {"a": 2}) and len(writes) == 2  # known since load()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    broken = StateFile(blocker / "state.json")
    assert run(broken.save, {"a": 3}) is False and broken.failures == 1
    assert run(broken.save, {"a": 3}) is False and broken.failures == 2  # not remembered
