"""The WAL checkpoint thread (store/checkpoint.py) on a real SQLite file: the log is copied
back off the commit path and restarts from its beginning, the worker's own connection
checkpoints only as a safety net, and a thread that cannot work leaves the store as
SQLite alone would."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pytest_mock import MockerFixture
from recovery_coach.store import Checkpointer, make_engine
from recovery_coach.store.checkpoint import SAFETY_NET_PAGES
from recovery_coach.store.sql import RawSql
from sqlalchemy import create_engine

ROW = "x" * 3000  # most of a page; a commit with its index and table pages writes ~6


def _wait(cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    until = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > until:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def _passed(cp: Checkpointer, before: int) -> Callable[[], bool]:
    return lambda: cp.passes > before


def _commits(sql: RawSql, n: int, cp: Checkpointer | None) -> None:
    """n commits of one row each; with a checkpointer, each of its turns is awaited
    (a stream with gaps, as events arrive)."""
    for i in range(n):
        cur = sql.cursor()
        sql.execute(cur, "DELETE FROM rc_meta WHERE key = ?", (f"k{i % 50}",))
        sql.execute(cur, "INSERT INTO rc_meta (key, value) VALUES (?, ?)", (f"k{i % 50}", ROW))
        cur.close()
        before = cp.passes if cp is not None else 0
        sql.commit()
        if cp is not None and (i + 1) % cp.every == 0:
            _wait(_passed(cp, before), "a checkpoint pass")


def _wal_bytes(db: Path) -> int:
    return Path(f"{db}-wal").stat().st_size


def test_the_log_is_copied_back_by_the_thread_and_starts_over(tmp_path: Path) -> None:
    db = tmp_path / "cp.db"
    engine = make_engine(f"sqlite:///{db}")
    cp = Checkpointer.of(engine)
    assert cp is not None
    sql = RawSql(engine, cp)
    try:
        _commits(sql, 600, cp)
        # Thousands of pages of log without the thread (the control below: its own
        # checkpoints wait for 10,000); with it, the log starts over after each copy and
        # stays about one turn long (16 commits of ~6 pages).
        assert _wal_bytes(db) < 400 * 4096
        assert cp.passes >= 600 // cp.every
        got = sql.query("SELECT count(*), max(length(value)) FROM rc_meta WHERE key LIKE 'k%'")
        assert tuple(got[0]) == (50, len(ROW))
    finally:
        cp.close()
        sql.drop()
        engine.dispose()


def test_without_the_thread_the_same_commits_pile_up_in_the_log(tmp_path: Path) -> None:
    """The control for the test above: the worker's connection alone checkpoints only at
    the safety net, so the same commits leave thousands of pages of log."""
    db = tmp_path / "cp.db"
    engine = make_engine(f"sqlite:///{db}")
    cp = Checkpointer(str(db))
    cp.close()  # its thread is gone: only the safety net is left
    sql = RawSql(engine, cp)
    try:
        _commits(sql, 600, None)
        assert _wal_bytes(db) > 2000 * 4096
        (limit,) = sql.query("PRAGMA wal_autocheckpoint")[0]
        assert limit == SAFETY_NET_PAGES
    finally:
        sql.drop()
        engine.dispose()


def test_other_connections_keep_sqlites_own_checkpoints(tmp_path: Path) -> None:
    db = tmp_path / "cp.db"
    engine = make_engine(f"sqlite:///{db}")
    cp = Checkpointer.of(engine)
    assert cp is not None
    try:
        RawSql(engine, cp).query("SELECT 1")
        other = sqlite3.connect(db)
        assert other.execute("PRAGMA wal_autocheckpoint").fetchone() == (1000,)
        other.close()
    finally:
        cp.close()
        engine.dispose()


def test_no_thread_for_memory_postgres_or_a_uri(tmp_path: Path) -> None:
    assert Checkpointer.of(make_engine("sqlite://")) is None
    uri = create_engine(f"sqlite:///file:{tmp_path / 'u.db'}?mode=rwc&uri=true")
    assert Checkpointer.of(uri) is None
    pg = create_engine("postgresql+psycopg://localhost/test")  # not connected
    assert Checkpointer.of(pg) is None


def test_a_store_the_thread_cannot_open_is_said_and_left_to_sqlite(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "recovery_coach.store.checkpoint")
    cp = Checkpointer(str(tmp_path / "no such dir" / "cp.db"))
    _wait(lambda: not cp._thread.is_alive(), "the thread to give up")
    assert "WAL checkpoints stay in the commits" in caplog.text
    cp.committed()  # told of commits all the same, it does nothing
    cp.close()
    assert cp.passes == 0


def test_close_ends_the_thread(tmp_path: Path) -> None:
    cp = Checkpointer(str(tmp_path / "cp.db"))
    cp.close()
    assert not cp._thread.is_alive()


def test_failing_checkpoints_are_said_once_and_their_end_too(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mocker: MockerFixture
) -> None:
    caplog.set_level(logging.DEBUG, "recovery_coach.store.checkpoint")
    cp = Checkpointer(str(tmp_path / "cp.db"), every=1)
    failure = sqlite3.OperationalError("disk I/O error")
    run = mocker.patch.object(cp, "_checkpoint", side_effect=[failure, failure, failure, None])
    try:
        for turn in range(1, 5):
            cp.committed()
            _wait(lambda t=turn: run.call_count >= t, f"checkpoint turn {turn}")  # type: ignore[misc]
        _wait(lambda: "work again" in caplog.text, "the recovery to be said")
    finally:
        cp.close()
    said = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert said.count((logging.WARNING, "WAL checkpoint failed: disk I/O error")) == 1
    assert said.count((logging.DEBUG, "WAL checkpoint failed: disk I/O error")) == 2
    assert (logging.WARNING, "WAL checkpoints work again") in said
