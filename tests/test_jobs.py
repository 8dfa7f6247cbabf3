"""Job rows written by the store are exactly what APScheduler would pickle, and load back."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta

from apscheduler.job import Job
from recovery_coach import jobs
from recovery_coach.store import make_engine


def test_job_row_state_equals_apschedulers_own() -> None:
    engine = make_engine("sqlite://")
    sched = jobs.Scheduler(engine)
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
    sched = jobs.Scheduler(engine)
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
