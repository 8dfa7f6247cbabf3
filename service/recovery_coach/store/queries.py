"""What the shell reads from the store outside a batch's unit of work, and the start-up writes
that say who the users are (before the worker starts, each in a transaction of its own)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from recovery_coach.contract.shards import WHOLE, Shard
from recovery_coach.core.models import Nudge
from recovery_coach.jobs.rows import DAY_PREFIX, day_job_user, day_jobs_of
from recovery_coach.store.schema import (
    CANCELLED,
    PENDING,
    OutboxRow,
    jobs_table,
    meta,
    nudges,
    outbox_row,
    profiles,
    users,
)
from recovery_coach.store.sql import RawSql


class Queries:
    """Reads: the outbox by id (on the worker's own connection, in its batch), and what
    start-up, recovery and diagnostics ask (pooled connections). Sharded, only what
    concerns the shard's own users and its job table is read."""

    def __init__(self, engine: Engine, sql: RawSql, shard: Shard = WHOLE) -> None:
        self.engine = engine
        self.sql = sql
        self.shard = shard
        self.jobs = jobs_table(shard.jobs_table)

    def outbox(self, nudge_id: str) -> OutboxRow | None:
        return self.outbox_many([nudge_id]).get(nudge_id)

    def outbox_many(self, nudge_ids: Sequence[str]) -> dict[str, OutboxRow]:
        """Outbox rows by id, one query per CHUNK ids (the nudges a batch fires)."""
        rows = self.sql.select_in(
            "SELECT nudge_id, user_id, due_at, expires_at, status, payload "
            "FROM rc_nudges WHERE nudge_id IN ({})",
            list(nudge_ids),
        )
        return {
            r[0]: OutboxRow(
                r[0], r[1], r[2], r[3], r[4], Nudge.from_payload(json.loads(r[5])), r[5]
            )
            for r in rows
        }

    def pending_without_job(self, due_by: float | None = None) -> list[OutboxRow]:
        """Pending nudges with no APScheduler job: published-late candidates after a restart
        (only those due by `due_by`, when given: 200,000 pending nudges took a second)."""
        query = select(nudges).where(
            nudges.c.status == PENDING, nudges.c.nudge_id.not_in(select(self.jobs.c.id))
        )
        if due_by is not None:
            query = query.where(nudges.c.due_at <= due_by)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(nudges.c.due_at)).all()
        return [outbox_row(r) for r in rows if self.shard.owns(r.user_id)]

    def users_with_day_job(self) -> set[str]:
        """Users whose next day start is already scheduled (their chain of days is intact)."""
        with self.engine.connect() as conn:
            jobs = self.jobs
            ids = conn.execute(select(jobs.c.id).where(jobs.c.id.like(f"{DAY_PREFIX}%")))
            return {u for u in map(day_job_user, ids.scalars()) if u is not None}

    def get_meta(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            value = conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar()
        return None if value is None else str(value)

    def profiles(self) -> dict[str, str]:
        """Every profile received over MQTT (of the shard's users), as stored."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(profiles.c.user_id, profiles.c.profile))
            return {r[0]: r[1] for r in rows if self.shard.owns(r[0])}

    def counts(self) -> dict[str, int]:
        """Pending nudges (of the whole store), and the jobs of this shard."""
        with self.engine.connect() as conn:
            pending = conn.execute(
                select(func.count()).select_from(nudges).where(nudges.c.status == PENDING)
            ).scalar()
            job_count = conn.execute(select(func.count()).select_from(self.jobs)).scalar()
        return {"nudges_pending": int(pending or 0), "jobs": int(job_count or 0)}


CLIENT_SECRET_KEY = "mqtt_client_secret"


def client_secret(engine: Engine) -> str:
    """The secret part of the service's MQTT client id, made once and kept in the store:
    a broker hands a persistent session to whoever connects with its client id, so the id
    must be one no device can guess. Every instance and restart on the store shares it."""
    with engine.connect() as conn:
        value = conn.execute(select(meta.c.value).where(meta.c.key == CLIENT_SECRET_KEY)).scalar()
    if value:
        return str(value)
    try:
        with engine.begin() as conn:
            conn.execute(insert(meta).values(key=CLIENT_SECRET_KEY, value=secrets.token_hex(6)))
    except IntegrityError:  # another instance made it first: theirs is the one
        pass
    with engine.connect() as conn:
        return str(
            conn.execute(select(meta.c.value).where(meta.c.key == CLIENT_SECRET_KEY)).scalar_one()
        )


class Members:
    """Who the users are: recorded at start, and the pending work of those who left.
    Sharded, only the shard's own users are seen."""

    def __init__(
        self,
        engine: Engine,
        shard: Shard = WHOLE,
        fence: Callable[[Connection], None] | None = None,
    ) -> None:
        self.engine = engine
        self.shard = shard
        self.jobs = jobs_table(shard.jobs_table)
        self.fence = fence  # sharded: each write checks that the shard is still ours

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            if self.fence is not None:
                self.fence(conn)
            yield conn

    def known(self) -> set[str]:
        with self.engine.connect() as conn:
            return {r[0] for r in conn.execute(select(users.c.user_id)) if self.shard.owns(r[0])}

    def record(self, user_ids: Iterable[str], known: set[str] | None = None) -> None:
        wanted = set(user_ids)
        with self._writing() as conn:
            if known is None:
                rows = conn.execute(select(users.c.user_id))
                known = {r[0] for r in rows if self.shard.owns(r[0])}
            if known - wanted:
                conn.execute(delete(users).where(users.c.user_id.in_(list(known - wanted))))
            if wanted - known:
                conn.execute(
                    insert(users),
                    [{"user_id": u, "announced_at": time.time()} for u in wanted - known],
                )

    def forget_profiles(self, user_ids: Iterable[str]) -> None:
        """Stored profiles no longer used (the YAML now defines these users)."""
        ids = list(user_ids)
        if ids:
            with self._writing() as conn:
                conn.execute(delete(profiles).where(profiles.c.user_id.in_(ids)))

    def remove(self, user: str) -> int:
        """Drop a user's pending nudges and jobs (the user left the config); returns how many."""
        with self._writing() as conn:
            ids = [
                r[0]
                for r in conn.execute(
                    select(nudges.c.nudge_id).where(
                        nudges.c.user_id == user, nudges.c.status == PENDING
                    )
                )
            ]
            jobs = self.jobs
            if ids:
                conn.execute(delete(jobs).where(jobs.c.id.in_(ids)))
                conn.execute(
                    update(nudges).where(nudges.c.nudge_id.in_(ids)).values(status=CANCELLED)
                )
            conn.execute(delete(jobs).where(jobs.c.id.like(day_jobs_of(user))))
        return len(ids)
