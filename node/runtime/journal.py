"""What a node keeps in its data_dir: the audit journal and its persisted state.

**Journal.** An SQLite database (stdlib, WAL) of what happened: partitions
detected, decided and healed, operator resolutions, algedonic signals sent
and received, breaker transitions, peers joining and leaving; each row with
its HLC and wall time. :meth:`Journal.record` is synchronous and only appends
to a list; the rows are written in batches by :meth:`Journal.run` on a worker
thread (``trio.to_thread``), so the trio loop never waits on the disk.
Retention is bounded by age and by row count. A journal that cannot be opened
(corrupt, unwritable) is a :class:`JournalError` naming its path, raised at
start: the node runs without it only when told (``--no-journal``).

**State.** ``state.json`` beside it holds what a restarted node must not
forget: the members (names, addresses, roles) and who left with BYE, and the
newest operator decision with its epoch. Without it a node restarted while cut
off sees only itself and calls itself "a cluster of one": split brain. It is
replaced atomically (write, fsync, rename) on a worker thread when it changes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import trio

from node.errors import JournalError

log = logging.getLogger("vsm.journal")

JOURNAL_FILE = "journal.sqlite3"
STATE_FILE = "state.json"
DEFAULT_RETENTION_DAYS = 30.0
DEFAULT_RETENTION_ROWS = 100_000
DEFAULT_FLUSH_INTERVAL_S = 0.5
#: Rows waiting for the writer at most; past it the oldest are dropped (counted):
#: a stuck disk must not grow the node's memory without bound.
MAX_PENDING = 50_000
# Retention runs after this many rows written, and at open.
_PRUNE_EVERY = 1_000
_MAX_HISTORY = 10_000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    wall REAL NOT NULL,
    hlc TEXT NOT NULL,
    node TEXT NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_kind ON journal (kind, id);
CREATE INDEX IF NOT EXISTS journal_wall ON journal (wall);
"""


class Journal:
    """The audit journal of one node. Open it with :meth:`open` (blocking: use a thread)."""

    def __init__(
        self,
        path: Path,
        conn: sqlite3.Connection,
        *,
        node: str,
        retention_days: float = DEFAULT_RETENTION_DAYS,
        retention_rows: int = DEFAULT_RETENTION_ROWS,
        flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
    ) -> None:
        self.path = path
        self.node = node
        self.retention_days = retention_days
        self.retention_rows = retention_rows
        self.flush_interval_s = flush_interval_s
        self._conn = conn
        # One connection shared by worker threads, one statement at a time.
        self._lock = threading.Lock()
        self._flushing = trio.Lock()
        self._pending: list[tuple[float, str, str, str, str]] = []
        self._since_prune = 0
        self.written = 0
        self.dropped = 0
        self.failures = 0
        self.last_error: str | None = None

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, node: str, **options: Any) -> Journal:
        """Open or create the journal; JournalError (with the path) if it is unusable."""
        where = Path(path)
        try:
            where.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(where, check_same_thread=False, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(f"journal {where} cannot be opened: {exc}") from exc
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            (ok,) = conn.execute("PRAGMA quick_check").fetchone()
            if ok != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {ok}")
            conn.executescript(_SCHEMA)
            journal = cls(where, conn, node=node, **options)
            journal._prune()
        except sqlite3.Error as exc:
            conn.close()
            raise JournalError(
                f"journal {where} is corrupt or unwritable: {exc} "
                "(move it aside, or run with --no-journal)"
            ) from exc
        return journal

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # --- writing -----------------------------------------------------------------------

    def record(self, kind: str, data: Mapping[str, Any], *, hlc: object = "") -> None:
        """Queue one row (synchronous, no I/O). Written by the next flush."""
        text = json.dumps(dict(data), default=str, sort_keys=True)
        self._pending.append((time.time(), str(hlc), self.node, kind, text))
        if len(self._pending) > MAX_PENDING:
            del self._pending[0]
            self.dropped += 1

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> None:
        """Write the queued rows on a worker thread; a failure is counted and logged."""
        async with self._flushing:
            rows, self._pending = self._pending, []
            if not rows:
                return
            try:
                await trio.to_thread.run_sync(self._write, rows)
            except BaseException as exc:
                # Not written (a cancel reaches to_thread only before the thread
                # starts): keep them for the next attempt, bounded like any backlog.
                self._pending[:0] = rows
                overflow = max(len(self._pending) - MAX_PENDING, 0)
                del self._pending[:overflow]
                self.dropped += overflow
                if not isinstance(exc, sqlite3.Error):
                    raise
                self.failures += 1
                self.last_error = str(exc)
                log.error("journal %s: write failed: %s", self.path, exc)

    def _write(self, rows: list[tuple[float, str, str, str, str]]) -> None:
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                self._conn.executemany(
                    "INSERT INTO journal (wall, hlc, node, kind, data) VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self.written += len(rows)
            self._since_prune += len(rows)
            if self._since_prune >= _PRUNE_EVERY:
                self._prune_locked()

    def _prune(self) -> None:
        with self._lock:
            self._prune_locked()

    def _prune_locked(self) -> None:
        self._since_prune = 0
        cutoff = time.time() - self.retention_days * 86_400.0
        self._conn.execute("DELETE FROM journal WHERE wall < ?", (cutoff,))
        self._conn.execute(
            "DELETE FROM journal WHERE id <= (SELECT MAX(id) FROM journal) - ?",
            (self.retention_rows,),
        )

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Flush every ``flush_interval_s``; a last flush when cancelled."""
        task_status.started()
        try:
            while True:
                await trio.sleep(self.flush_interval_s)
                await self.flush()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await self.flush()

    # --- reading -----------------------------------------------------------------------

    async def history(
        self, limit: int = 100, kinds: Collection[str] | None = None
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` rows (of ``kinds`` if given), newest first."""
        if type(limit) is not int or not 0 < limit <= _MAX_HISTORY:
            raise ValueError(f"limit must be an int in 1..{_MAX_HISTORY}, got {limit!r:.30}")
        wanted = sorted({kinds} if isinstance(kinds, str) else set(kinds or ()))
        await self.flush()
        return await trio.to_thread.run_sync(self._read, limit, wanted)

    def _read(self, limit: int, kinds: list[str]) -> list[dict[str, Any]]:
        sql = "SELECT id, wall, hlc, node, kind, data FROM journal"
        args: list[Any] = []
        if kinds:
            sql += f" WHERE kind IN ({', '.join('?' for _ in kinds)})"
            args += kinds
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        out = []
        for row_id, wall, hlc, node, kind, data in rows:
            try:
                parsed = json.loads(data)
            except ValueError:
                parsed = {"unparsed": data}
            out.append(
                {"id": row_id, "wall": wall, "hlc": hlc, "node": node, "kind": kind, "data": parsed}
            )
        return out

    def stats(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "written": self.written,
            "pending": self.pending,
            "dropped": self.dropped,
            "failures": self.failures,
            "last_error": self.last_error,
        }


class StateFile:
    """``state.json``: members, departures and the newest operator decision."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._written: str | None = None
        self._lock = trio.Lock()
        self.failures = 0

    def load(self) -> dict[str, Any]:
        """The saved state ({} if none yet); JournalError (with the path) if unreadable."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise JournalError(f"state file {self.path} cannot be read: {exc}") from exc
        try:
            state = json.loads(text)
        except ValueError as exc:
            raise JournalError(
                f"state file {self.path} is corrupt: {exc} (move it aside to start afresh)"
            ) from exc
        if not isinstance(state, dict):
            raise JournalError(f"state file {self.path} is corrupt: not a JSON object")
        self._written = json.dumps(state, sort_keys=True)
        return state

    def check_writable(self) -> None:
        """JournalError (with the path) if the directory cannot be written."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            probe = self.path.with_name(f".{self.path.name}.probe")
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise JournalError(f"data_dir {self.path.parent} is not writable: {exc}") from exc

    async def save(self, state: Mapping[str, Any]) -> bool:
        """Write ``state`` if it changed since the last save; False if the write failed."""
        text = json.dumps(dict(state), sort_keys=True, default=str)
        async with self._lock:
            if text == self._written:
                return True
            try:
                await trio.to_thread.run_sync(self._replace, text)
            except OSError as exc:
                self.failures += 1
                log.error("state file %s: write failed: %s", self.path, exc)
                return False
            self._written = text
            return True

    def _replace(self, text: str) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        with contextlib.suppress(OSError):
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
