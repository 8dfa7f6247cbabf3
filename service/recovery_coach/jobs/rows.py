"""APScheduler's job rows as the store writes them: the table, the row format and the job-id
grammar. Job rows are written by the store in the same transaction as the decisions that
made them, so the scheduler only has to read, fire and remove them. A nudge's misfire grace
is its useful life (expires_at - due_at): missed while the service was down but still
useful, it is sent late; expired, APScheduler drops it.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from apscheduler.triggers.date import DateTrigger
from sqlalchemy import Column, Float, LargeBinary, MetaData, String, Table

from recovery_coach.core.models import Nudge

JOBS_TABLE = "apscheduler_jobs"


def job_table(metadata: MetaData, name: str = JOBS_TABLE) -> Table:
    """APScheduler's table, exactly as SQLAlchemyJobStore declares it (one per shard)."""
    return Table(
        name,
        metadata,
        Column("id", String(191), primary_key=True),
        Column("next_run_time", Float(25), index=True),
        Column("job_state", LargeBinary, nullable=False),
    )


@dataclass(frozen=True)
class JobRow:
    """An APScheduler job, pickled as SQLAlchemyJobStore would pickle it."""

    job_id: str
    next_run_time: float
    state: bytes


DAY_GRACE = timedelta(hours=12)  # a day start missed while down is still worth planning
NO_EXPIRY_GRACE = timedelta(hours=6)


class JobTimer(Protocol):
    """What the worker needs of the timer: job rows to write, and word of what it wrote.
    `Scheduler` (APScheduler) live; `simulate.VirtualJobs` on a virtual clock."""

    def nudge_row(self, nudge: Nudge) -> JobRow: ...

    def day_row(self, user: str, at: datetime) -> JobRow: ...

    def committed(self, earliest: float | None, *, cancelled: bool) -> None: ...


# The job ids: a nudge's job has the nudge's id; a day start's is `day:<user>:<UTC minute>`.
DAY_PREFIX = "day:"


def day_job_id(user: str, at: datetime) -> str:
    # One id per day: the job that fires is removed by APScheduler after it is submitted,
    # which must not race with the next day's job being written.
    return f"{DAY_PREFIX}{user}:{at.astimezone(UTC).strftime('%Y%m%dT%H%M')}"


def is_day_job(job_id: str) -> bool:
    return job_id.startswith(DAY_PREFIX)


def day_job_user(job_id: str) -> str | None:
    """The user of a day-start job id, None for a nudge's."""
    return job_id.split(":")[1] if is_day_job(job_id) else None


def day_jobs_of(user: str) -> str:
    """A SQL LIKE pattern for the user's day-start job ids."""
    return f"{DAY_PREFIX}{user}:%"


def job_row(
    job_id: str, func: str, args: list[Any], at: datetime, grace: timedelta, name: str
) -> JobRow:
    """A date job's row, pickled as SQLAlchemyJobStore pickles it."""
    at = at.astimezone(UTC)
    # Exactly what Job(...).__getstate__() returns (tests/test_jobs.py compares them),
    # built directly: constructing a Job costs more than everything else per nudge.
    state = {
        "version": 1,
        "id": job_id,
        "func": func,
        "trigger": DateTrigger(run_date=at, timezone=UTC),
        "executor": "default",
        "args": args,
        "kwargs": {},
        "name": name,
        "misfire_grace_time": max(1, int(grace.total_seconds())),
        "coalesce": True,
        "max_instances": 1,
        "next_run_time": at,
    }
    return JobRow(job_id, at.timestamp(), pickle.dumps(state, pickle.HIGHEST_PROTOCOL))


def nudge_row(nudge: Nudge) -> JobRow:
    """A nudge's job: fire it at its due time; its grace is its useful life."""
    grace = nudge.expires_at - nudge.due_at if nudge.expires_at else NO_EXPIRY_GRACE
    return job_row(
        nudge.nudge_id,
        "recovery_coach.jobs:fire_nudge",
        [nudge.user, nudge.nudge_id],
        nudge.due_at,
        grace,
        f"{nudge.kind} for {nudge.user}",
    )


def day_row(user: str, at: datetime) -> JobRow:
    """The user's next day start."""
    return job_row(
        day_job_id(user, at),
        "recovery_coach.jobs:start_day",
        [user],
        at,
        DAY_GRACE,
        f"day of {user}",
    )


def job_args(state: bytes) -> list[Any]:
    """The arguments a stored job row calls its function with."""
    args: list[Any] = pickle.loads(state)["args"]
    return args
