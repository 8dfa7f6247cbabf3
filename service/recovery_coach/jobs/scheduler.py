"""APScheduler 3's scheduler over the store's job table: a job store that survives the
store's failures and batches its removals, and the wake-up policy."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.job import Job
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from sqlalchemy import Connection, Engine, bindparam

from recovery_coach import jobs
from recovery_coach.core.backoff import FIRST_S, Backoff
from recovery_coach.core.models import Nudge
from recovery_coach.jobs.rows import JOBS_TABLE, JobRow, day_row, job_row, nudge_row

log = logging.getLogger(__name__)


class BatchedJobStore(SQLAlchemyJobStore):  # type: ignore[misc]
    """SQLAlchemyJobStore whose removals of fired jobs are written together.

    APScheduler removes each fired date job in a transaction of its own: with PostgreSQL's
    fsync per commit, 10,000 reminders due in one minute fell seconds behind. Here a removal
    is remembered and written (one transaction) before the scheduler's next read of the
    table, so the scheduler never sees a removed job again. A row is only deleted if it is
    still the one that fired (next_run_time not after the removal), so a job written again
    under the same id in between survives. A crash before the write leaves the fired row:
    the job fires again after the restart and the outbox (already published) drops it.
    """

    def __init__(
        self, engine: Engine, tablename: str, fence: Callable[[Connection], None] | None = None
    ) -> None:
        super().__init__(engine=engine, tablename=tablename)
        # Sharded: the removals check, in their transaction, that the shard is still ours.
        self.fence = fence
        self._gone: dict[str, float] = {}
        self._gone_lock = threading.Lock()
        self.error: str | None = None  # the store's last failure, while it lasts
        self._retry = Backoff()
        # Told when the store answers again after failing (jobs may have fired meanwhile).
        self.on_recovered: Callable[[], None] = lambda: None

    def remove_job(self, job_id: str) -> None:
        with self._gone_lock:
            self._gone[job_id] = time.time()

    def _flush(self) -> None:
        with self._gone_lock:
            gone, self._gone = self._gone, {}
        if not gone:
            return
        table = self.jobs_t
        stmt = table.delete().where(
            table.c.id == bindparam("jid"), table.c.next_run_time <= bindparam("at")
        )
        try:
            with self.engine.begin() as conn:
                if self.fence is not None:
                    self.fence(conn)
                conn.execute(stmt, [{"jid": i, "at": at} for i, at in gone.items()])
        except Exception:
            with self._gone_lock:
                self._gone = {**gone, **self._gone}  # retried before the next read
            raise

    def _failed(self, exc: Exception) -> None:
        if self.error is None:
            log.warning("job store error: %s; reminders wait and are retried", exc)
        self.error = f"job store: {type(exc).__name__}: {exc}"[:300]

    def _recovered(self) -> None:
        if self.error is not None:
            log.info("job store works again")
            self.error = None
            self.on_recovered()
        self._retry.reset()

    def get_due_jobs(self, now: datetime) -> list[Job]:
        # APScheduler catches a failure here and retries after jobstore_retry_interval.
        try:
            self._flush()
            jobs: list[Job] = super().get_due_jobs(now)
        except Exception as exc:
            self._failed(exc)
            raise
        return jobs

    def get_next_run_time(self) -> datetime | None:
        # APScheduler calls this outside its try/except: one "database is locked" raised here
        # ended its thread for good. So a failure is logged once and retried with back-off.
        try:
            self._flush()
            at: datetime | None = super().get_next_run_time()
        except Exception as exc:
            self._failed(exc)
            return datetime.now(UTC) + timedelta(seconds=self._retry.next())
        self._recovered()
        return at

    def lookup_job(self, job_id: str) -> Job | None:
        self._flush()
        job: Job | None = super().lookup_job(job_id)
        return job

    def get_all_jobs(self) -> list[Job]:
        self._flush()
        jobs: list[Job] = super().get_all_jobs()
        return jobs

    def shutdown(self) -> None:
        with contextlib.suppress(Exception):
            self._flush()
        super().shutdown()


class Scheduler:
    """The APScheduler BackgroundScheduler over the shared engine's job table."""

    def __init__(
        self,
        engine: Engine,
        workers: int = 4,
        *,
        table: str = JOBS_TABLE,
        fence: Callable[[Connection], None] | None = None,
        on_missed: Callable[[str], None] | None = None,
        on_recovered: Callable[[], None] | None = None,
    ) -> None:
        self.store = BatchedJobStore(engine, table, fence)
        if on_recovered is not None:
            self.store.on_recovered = on_recovered
        self._on_missed = on_missed
        self.aps = BackgroundScheduler(
            jobstores={"default": self.store},
            jobstore_retry_interval=2 * FIRST_S,  # after get_due_jobs fails (default 10 s)
            executors={"default": ThreadPoolExecutor(workers)},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=UTC,
        )
        self.aps.add_listener(self._missed, EVENT_JOB_MISSED)
        self._wake_by: float | None = None  # APScheduler wakes by then on its own

    def _missed(self, event: JobExecutionEvent) -> None:
        if self._on_missed is not None:
            self._on_missed(event.job_id)
        else:
            jobs.missed(event.job_id)

    def _row(
        self, job_id: str, func: str, args: list[Any], at: datetime, grace: timedelta, name: str
    ) -> JobRow:
        return job_row(job_id, func, args, at, grace, name)

    def job_state_via_apscheduler(
        self, job_id: str, func: str, args: list[Any], at: datetime, grace: timedelta, name: str
    ) -> dict[str, Any]:
        """The state APScheduler itself would pickle for this job (for tests)."""
        at = at.astimezone(UTC)
        job = Job(
            self.aps,
            id=job_id,
            func=func,
            trigger=DateTrigger(run_date=at, timezone=UTC),
            executor="default",
            args=args,
            kwargs={},
            name=name,
            misfire_grace_time=max(1, int(grace.total_seconds())),
            coalesce=True,
            max_instances=1,
            next_run_time=at,
        )
        state: dict[str, Any] = job.__getstate__()
        return state

    def nudge_row(self, nudge: Nudge) -> JobRow:
        return nudge_row(nudge)

    def day_row(self, user: str, at: datetime) -> JobRow:
        return day_row(user, at)

    def start(self) -> None:
        self.aps.start()

    def wakeup(self) -> None:
        """New job rows were committed behind APScheduler's back: recompute the next wake."""
        if self.aps.running:
            self.aps.wakeup()

    def committed(self, earliest: float | None, *, cancelled: bool) -> None:
        """Job rows were committed, the soonest due at `earliest` (epoch s); `cancelled`:
        some were deleted. APScheduler wakes by itself at the run time it last read and
        then re-reads the table, so it is woken only for a job due before that; each
        wake-up costs it two queries that compete with the worker for the GIL."""
        if cancelled:
            # The cancelled job may be the one it would have woken for; if it re-reads the
            # table meanwhile it may sleep past jobs we did not wake it for.
            self._wake_by = None
        if earliest is None:
            return
        wake_by = self._wake_by
        if wake_by is None or wake_by <= time.time() or earliest < wake_by:
            self._wake_by = earliest
            self.wakeup()

    def shutdown(self) -> None:
        if self.aps.running:
            self.aps.shutdown(wait=False)
