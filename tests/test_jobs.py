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
