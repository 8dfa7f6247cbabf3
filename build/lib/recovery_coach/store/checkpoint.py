"""SQLite's write-ahead log copied back into the database file by a thread of its own.

Left to itself, SQLite checkpoints inside the commit that takes the log past 1,000 pages:
that commit copies about 4 MB and syncs both files, and the worker's writes wait for the
sync. Measured (bench latency, 2026-12-02): a 5-6 ms commit every ~50 events, which was the
whole of the p99. Here the worker's commits only append to the log, and this thread copies
it back every CHECKPOINT_EVERY commits, with SQLite working outside the GIL.

A PASSIVE checkpoint never blocks the writer, but the log restarts from its beginning only
once all of it was copied; a pass that commits arrived during is repeated (the rest is
short), or under a steady stream of events the log would grow without end. Should the
thread fall behind or fail, the worker's own connection still checkpoints at
SAFETY_NET_PAGES. Durability is SQLite's either way: a checkpoint moves committed pages.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from typing import Any

from sqlalchemy import Engine

log = logging.getLogger(__name__)

CHECKPOINT_EVERY = 16  # commits (bench: every 10-20 gave the lowest p99; 50 left stalls)
SAFETY_NET_PAGES = 10_000  # the worker's autocheckpoint, 40 MB of log, if this thread lags
MAX_PASSES = 4  # passes per checkpoint before waiting for the next one


class Checkpointer:
    """Checkpoints one SQLite database file; told of each commit by the worker (`RawSql`)."""

    def __init__(self, path: str, every: int = CHECKPOINT_EVERY) -> None:
        self.path = path
        self.every = every
        self.passes = 0  # checkpoint passes run (the tests wait on it)
        self._failing = False  # said once per run of failures, not once per pass
        self._commits = 0
        self._due = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self._thread.start()

    @classmethod
    def of(cls, engine: Engine) -> Checkpointer | None:
        """One for a file SQLite store; None for memory or PostgreSQL (which checkpoints
        in a process of its own), and for a URI or query-string URL, whose file this
        thread's plain connection might not name (SQLite then checkpoints as it does)."""
        db = engine.url.database
        if engine.dialect.name != "sqlite" or not db or db == ":memory:":
            return None
        if db.startswith("file:") or engine.url.query:
            return None
        return cls(db)

    def adopt(self, dbapi_conn: Any) -> None:
        """The worker's connection: its own checkpoints become the safety net."""
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA wal_autocheckpoint={SAFETY_NET_PAGES}")
        cur.close()

    def committed(self) -> None:
        self._commits += 1
        if self._commits % self.every == 0:
            self._due.set()

    def close(self, timeout: float = 5.0) -> None:
        self._stopping = True
        self._due.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=10)
        except sqlite3.Error as exc:
            log.warning("WAL checkpoints stay in the commits: cannot open %s: %s", self.path, exc)
            return
        try:
            while True:
                self._due.wait()
                self._due.clear()
                if self._stopping:
                    return
                try:
                    self._checkpoint(conn)
                except sqlite3.Error as exc:  # the safety net checkpoints meanwhile
                    level = logging.DEBUG if self._failing else logging.WARNING
                    log.log(level, "WAL checkpoint failed: %s", exc)
                    self._failing = True
                    continue
                if self._failing:
                    self._failing = False
                    log.warning("WAL checkpoints work again")
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        for _ in range(MAX_PASSES):
            _busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.passes += 1
            if copied >= frames or self._stopping:
                return
