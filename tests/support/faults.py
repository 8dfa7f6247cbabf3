"""Faults a machine has, done to the real service's parts: a store held locked, a database
ending the service's connections, a process stalled. Shared by the fault tests (not a test
module itself)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, text

# A process that takes SQLite's write lock on the file argv[1] and holds it for argv[2] s
# (WAL: readers go on, writers wait), saying "locked" once it has it.
HOLD_SQLITE = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
"""


class SqliteLock:
    """The store's file held by another process for `seconds` (past the service's 10 s
    busy timeout or not)."""

    def __init__(self, db: Path, seconds: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLD_SQLITE, str(db), str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        assert line == "locked", line

    def wait(self) -> None:
        self.proc.wait(60)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def end_connections(admin_url: str, database: str) -> int:
    """pg_terminate_backend on every connection to `database` (a failover, a restart, a
    pooler's idle kill); returns how many were ended."""
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            ended = conn.execute(
                text(
                    "select count(pg_terminate_backend(pid)) from pg_stat_activity "
                    "where datname = :d and pid <> pg_backend_pid()"
                ),
                {"d": database},
            ).scalar()
        return int(ended or 0)
    finally:
        engine.dispose()
