"""The timer: APScheduler 3 with the store's persistent job table (scheduler.py), rows the
store writes in its own transaction (rows.py), and the job functions stored in those rows
by their import path, `recovery_coach.jobs:fire_nudge` and `recovery_coach.jobs:start_day`:
they stay here, under these names, as long as stored jobs name them."""

from __future__ import annotations

from typing import Protocol


class JobTarget(Protocol):
    """The running service, as the job functions see it."""

    def on_nudge_due(self, user: str, nudge_id: str) -> None: ...

    def on_day_start(self, user: str) -> None: ...

    def on_missed(self, job_id: str) -> None: ...


_target: JobTarget | None = None


def bind(target: JobTarget | None) -> None:
    """Point the module-level job functions at the running service (None on stop)."""
    global _target
    _target = target


def fire_nudge(user: str, nudge_id: str) -> None:
    """Job function: a scheduled nudge is due."""
    if _target is None:
        raise RuntimeError("no running service to publish the nudge")
    _target.on_nudge_due(user, nudge_id)


def start_day(user: str) -> None:
    """Job function: the user's day starts (their wake time)."""
    if _target is None:
        raise RuntimeError("no running service to start the day")
    _target.on_day_start(user)


def missed(job_id: str) -> None:
    """APScheduler dropped a job past its grace time: the running service is told."""
    if _target is not None:
        _target.on_missed(job_id)
