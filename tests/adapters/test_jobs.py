"""Job rows written by the store are exactly what APScheduler would pickle, and load back."""

from __future__ import annotations

import pickle
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.job import Job
from recovery_coach import jobs
from recovery_coach.jobs import scheduler as job_scheduler
from recovery_coach.store import make_engine

from tests.support.faults import HOLD_SQLITE as LOCK_FOR


def test_job_row_state_equals_apschedulers_own() -> None:
    engine = make_engine("sqlite://")
    sched = job_scheduler.Scheduler(engine)
    at = datetime(2030, 5, 1, 12, 30, tzinfo=UTC)
    row = sched._row("n1", "recovery_coach.jobs:fire_nudge", ["alex", "n1"], at,
                     timedelta(minutes=15), "protein for alex")  # fmt: skip
    ours = pickle.loads(row.state)
    theirs = sched.job_state_via_apscheduler(
        "n1", "recovery_coach.jobs:fire_nudge", ["alex", "n1"], at, timedelta(minutes=15),
        "protein for alex",
    )  # fmt: skip
    assert ours.keys() == theirs.keys()
    for key in ours:
        if key == "trigger":
            assert ours[key].run_date == theirs[key].run_date
            assert type(ours[key]) is type(theirs[key])
        else:
            assert ours[key] == theirs[key], key
            assert type(ours[key]) is type(theirs[key]), key
    assert row.next_run_time == at.timestamp()
    job = Job.__new__(Job)
    job.__setstate__(ours)  # the job store restores it like this
    assert job.func is jobs.fire_nudge
    assert job.next_run_time == at
    engine.dispose()


def test_fired_job_removals_are_batched_and_spare_a_job_written_again() -> None:
    from recovery_coach.store import jobs as jobs_table
    from sqlalchemy import insert

    engine = make_engine("sqlite://")
    sched = job_scheduler.Scheduler(engine)
    store = sched.store
    past = datetime(2020, 1, 1, tzinfo=UTC)
    rows = [
        sched._row(i, "recovery_coach.jobs:fire_nudge", ["alex", i], past, timedelta(hours=1), i)
        for i in ("a", "b")
    ]
    with engine.begin() as conn:
        conn.execute(
            insert(jobs_table),
            [
                {"id": r.job_id, "next_run_time": r.next_run_time, "job_state": r.state}
                for r in rows
            ],
        )
    now = datetime.now(UTC)
    assert {j.id for j in store.get_due_jobs(now)} == {"a", "b"}
    store.remove_job("a")
    store.remove_job("b")
    # "b" is written again (same id, due later) before the removals reach the table.
    later = sched._row("b", "recovery_coach.jobs:fire_nudge", ["alex", "b"],
                       now + timedelta(hours=1), timedelta(hours=1), "b")  # fmt: skip
    with engine.begin() as conn:
        conn.execute(jobs_table.delete().where(jobs_table.c.id == "b"))
        conn.execute(
            insert(jobs_table),
            [{"id": "b", "next_run_time": later.next_run_time, "job_state": later.state}],
        )
    assert store.get_due_jobs(now) == []  # "a" is gone, "b" is not due yet
    assert [j.id for j in store.get_all_jobs()] == ["b"]
    engine.dispose()


class _Fired:
    """The job target: records each fired nudge id."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.cond = threading.Condition()

    def on_nudge_due(self, user: str, nudge_id: str) -> None:
        with self.cond:
            self.ids.append(nudge_id)
            self.cond.notify_all()

    def on_day_start(self, user: str) -> None: ...

    def on_missed(self, job_id: str) -> None: ...

    def wait(self, nudge_id: str, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: nudge_id in self.ids, timeout)


def test_a_store_locked_by_another_process_over_a_due_time_does_not_stop_the_clock(
    tmp_path: Path,
) -> None:
    """Another process holds the SQLite file locked for 12 s. The first reminder fires; its
    removal cannot be written ("database is locked" after the 10 s busy timeout), which used
    to end APScheduler's thread for good. Now the error is visible, retried, and the second
    reminder, due while the file was locked, still fires once when the lock is gone."""
    from recovery_coach.store import jobs as jobs_table
    from sqlalchemy import insert

    db = tmp_path / "coach.db"
    engine = make_engine(f"sqlite:///{db}")
    sched = job_scheduler.Scheduler(engine)
    now = datetime.now(UTC)
    rows = [
        sched._row(
            i,
            "recovery_coach.jobs:fire_nudge",
            ["alex", i],
            now + timedelta(seconds=s),
            timedelta(hours=1),
            i,
        )
        for i, s in (("first", 1.5), ("second", 3.0))
    ]
    with engine.begin() as conn:
        conn.execute(
            insert(jobs_table),
            [
                {"id": r.job_id, "next_run_time": r.next_run_time, "job_state": r.state}
                for r in rows
            ],
        )
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCK_FOR, str(db), "12"], stdout=subprocess.PIPE, text=True
    )
    fired = _Fired()
    jobs.bind(fired)
    try:
        assert locker.stdout is not None
        assert locker.stdout.readline().strip() == "locked"
        sched.start()
        assert fired.wait("first", 10)
        deadline = time.time() + 20
        while sched.store.error is None and time.time() < deadline:
            time.sleep(0.1)
        assert sched.store.error is not None
        assert "locked" in sched.store.error
        assert fired.wait("second", 40)  # after the lock is released
        assert sched.aps.running
        assert fired.ids == ["first", "second"]
        deadline = time.time() + 10
        while sched.store.error is not None and time.time() < deadline:
            time.sleep(0.1)
        assert sched.store.error is None  # recovered, and says so
    finally:
        jobs.bind(None)
        sched.shutdown()
        locker.kill()
        locker.wait()
        engine.dispose()
