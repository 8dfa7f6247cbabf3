"""The durable store: user state, handled events, the nudge outbox and APScheduler's jobs.

One SQLAlchemy engine (SQLite by default, any URL by config). A batch of inbound messages is
written in ONE transaction: states, handled event ids, outbox rows and APScheduler job rows
together, so an event is acknowledged to the broker only once all of its decisions are
stored, and a kill -9 at any point leaves either all of them or none.
"""

from __future__ import annotations

import json
import pickle
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import (
    Column,
    Engine,
    Float,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.pool import ConnectionPoolEntry

from .models import Nudge, Profile, UserState

JOBS_TABLE = "apscheduler_jobs"

metadata = MetaData()

user_states = Table(
    "rc_user_states",
    metadata,
    Column("user_id", String(32), primary_key=True),
    Column("state", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

handled_events = Table(
    "rc_handled_events",
    metadata,
    Column("user_id", String(32), primary_key=True),
    Column("event_id", String(160), primary_key=True),
    Column("handled_at", Float, nullable=False, index=True),
)

# The outbox: every nudge decided, until it is published (PUBACK), cancelled or expired.
nudges = Table(
    "rc_nudges",
    metadata,
    Column("nudge_id", String(64), primary_key=True),
    Column("user_id", String(32), nullable=False, index=True),
    Column("due_at", Float, nullable=False),
    Column("expires_at", Float, nullable=True),
    Column("status", String(12), nullable=False, index=True),
    Column("payload", Text, nullable=False),
    Column("nudge", LargeBinary, nullable=False),
    Column("published_at", Float, nullable=True),
)

users = Table(
    "rc_users",
    metadata,
    Column("user_id", String(32), primary_key=True),
    Column("announced_at", Float, nullable=False),
)

# APScheduler's own table, declared here exactly as SQLAlchemyJobStore declares it, so that job
# rows can be written in our transaction; the job store reads and removes them.
jobs = Table(
    JOBS_TABLE,
    metadata,
    Column("id", String(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)

PENDING, PUBLISHED, CANCELLED, EXPIRED = "pending", "published", "cancelled", "expired"

_state_codec: TypeAdapter[UserState] = TypeAdapter(UserState)


def encode_state(state: UserState) -> str:
    return _state_codec.dump_json(state).decode()


def decode_state(text: str) -> UserState:
    return _state_codec.validate_json(text)


def _sqlite_pragmas(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
    cur = dbapi_conn.cursor()
    # WAL + synchronous=NORMAL: a committed transaction survives a killed process (kill -9);
    # only a power cut can lose the last commits, and never half of one.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False}, pool_size=4)
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=4)
    metadata.create_all(engine)
    return engine


def ts(t: datetime) -> float:
    return t.timestamp()


@dataclass(frozen=True)
class JobRow:
    """An APScheduler job, pickled as SQLAlchemyJobStore would pickle it."""

    job_id: str
    next_run_time: float
    state: bytes


@dataclass(frozen=True)
class OutboxRow:
    nudge_id: str
    user_id: str
    due_at: float
    expires_at: float | None
    status: str
    nudge: Nudge


class SqlRepository:
    """The handler's repository over the store; writes are staged until `commit`.

    The worker thread is the only writer, so states are cached in memory (write-through)
    and a batch sees its own staged writes.
    """

    def __init__(self, engine: Engine, profiles: dict[str, Profile]) -> None:
        self.engine = engine
        self.profiles = profiles
        self._states: dict[str, UserState] = {}
        self._staged_states: dict[str, UserState] = {}
        self._staged_events: set[tuple[str, str]] = set()
        self._staged_nudges: dict[str, Nudge] = {}
        self._staged_cancel: set[str] = set()
        self._staged_jobs: dict[str, JobRow] = {}
        self._staged_published: dict[str, float] = {}
        self._staged_expired: set[str] = set()

    # -- Repository protocol (message_handler.Repository)

    def load(self, user: str) -> UserState:
        if user in self._staged_states:
            return self._staged_states[user]
        if user not in self._states:
            with self.engine.connect() as conn:
                text = conn.execute(
                    select(user_states.c.state).where(user_states.c.user_id == user)
                ).scalar()
            self._states[user] = decode_state(text) if text else UserState()
        return self._states[user]

    def seen(self, user: str, event_id: str) -> bool:
        if (user, event_id) in self._staged_events:
            return True
        with self.engine.connect() as conn:
            row = conn.execute(
                select(handled_events.c.event_id).where(
                    handled_events.c.user_id == user, handled_events.c.event_id == event_id
                )
            ).first()
        return row is not None

    def published(self, nudge_ids: Sequence[str]) -> set[str]:
        done = {i for i in nudge_ids if i in self._staged_published}
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(nudges.c.nudge_id).where(
                    nudges.c.nudge_id.in_(list(nudge_ids)), nudges.c.status != PENDING
                )
            )
            done.update(r[0] for r in rows)
        return done

    def save(
        self,
        user: str,
        event_id: str | None,
        state: UserState,
        schedule: Sequence[Nudge],
        cancel: Sequence[str],
    ) -> None:
        self._staged_states[user] = state
        if event_id is not None:
            self._staged_events.add((user, event_id))
        for n in schedule:
            self._staged_nudges[n.nudge_id] = n
            self._staged_cancel.discard(n.nudge_id)
        for nudge_id in cancel:
            self._staged_nudges.pop(nudge_id, None)
            self._staged_cancel.add(nudge_id)

    # -- shell-only writes, staged in the same batch

    def stage_job(self, row: JobRow) -> None:
        self._staged_jobs[row.job_id] = row

    def stage_state(self, user: str, state: UserState) -> None:
        self._staged_states[user] = state

    def stage_published(self, nudge_id: str, at: float) -> None:
        self._staged_published[nudge_id] = at

    def stage_expired(self, nudge_id: str) -> None:
        self._staged_expired.add(nudge_id)

    def staged_nudges(self) -> list[Nudge]:
        return list(self._staged_nudges.values())

    def has_staged(self) -> bool:
        return bool(
            self._staged_states
            or self._staged_events
            or self._staged_nudges
            or self._staged_cancel
            or self._staged_jobs
            or self._staged_published
            or self._staged_expired
        )

    def commit(self) -> None:
        """Write everything staged in one transaction."""
        now = time.time()
        with self.engine.begin() as conn:
            self._write(conn, now)
        self._states.update(self._staged_states)
        self.rollback()

    def rollback(self) -> None:
        self._staged_states.clear()
        self._staged_events.clear()
        self._staged_nudges.clear()
        self._staged_cancel.clear()
        self._staged_jobs.clear()
        self._staged_published.clear()
        self._staged_expired.clear()

    def forget_cache(self) -> None:
        self._states.clear()

    def _write(self, conn: Connection, now: float) -> None:
        if self._staged_states:
            keys = list(self._staged_states)
            conn.execute(delete(user_states).where(user_states.c.user_id.in_(keys)))
            conn.execute(
                insert(user_states),
                [
                    {"user_id": u, "state": encode_state(s), "updated_at": now}
                    for u, s in self._staged_states.items()
                ],
            )
        if self._staged_events:
            conn.execute(
                insert(handled_events),
                [{"user_id": u, "event_id": e, "handled_at": now} for u, e in self._staged_events],
            )
        gone = set(self._staged_cancel) | set(self._staged_nudges) | set(self._staged_jobs)
        if gone:
            conn.execute(delete(jobs).where(jobs.c.id.in_(list(gone))))
        if self._staged_cancel:
            conn.execute(
                update(nudges)
                .where(nudges.c.nudge_id.in_(list(self._staged_cancel)), nudges.c.status == PENDING)
                .values(status=CANCELLED)
            )
        if self._staged_nudges:
            ids = list(self._staged_nudges)
            conn.execute(
                delete(nudges).where(nudges.c.nudge_id.in_(ids), nudges.c.status == PENDING)
            )
            conn.execute(
                insert(nudges),
                [self._outbox_values(n) for n in self._staged_nudges.values()],
            )
        if self._staged_jobs:
            conn.execute(
                insert(jobs),
                [
                    {"id": j.job_id, "next_run_time": j.next_run_time, "job_state": j.state}
                    for j in self._staged_jobs.values()
                ],
            )
        for nudge_id, at in self._staged_published.items():
            conn.execute(
                update(nudges)
                .where(nudges.c.nudge_id == nudge_id, nudges.c.status == PENDING)
                .values(status=PUBLISHED, published_at=at)
            )
        if self._staged_expired:
            conn.execute(
                update(nudges)
                .where(
                    nudges.c.nudge_id.in_(list(self._staged_expired)), nudges.c.status == PENDING
                )
                .values(status=EXPIRED)
            )

    def _outbox_values(self, n: Nudge) -> dict[str, Any]:
        tz = self.profiles[n.user].tz
        return {
            "nudge_id": n.nudge_id,
            "user_id": n.user,
            "due_at": ts(n.due_at),
            "expires_at": ts(n.expires_at) if n.expires_at else None,
            "status": PENDING,
            "payload": json.dumps(n.payload(tz), ensure_ascii=False),
            "nudge": pickle.dumps(n, pickle.HIGHEST_PROTOCOL),
        }

    # -- reads for the shell

    def outbox(self, nudge_id: str) -> OutboxRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(nudges).where(nudges.c.nudge_id == nudge_id)).first()
        return None if row is None else _outbox_row(row)

    def pending_without_job(self) -> list[OutboxRow]:
        """Pending nudges with no APScheduler job: published-late candidates after a restart."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(nudges)
                .where(nudges.c.status == PENDING, nudges.c.nudge_id.not_in(select(jobs.c.id)))
                .order_by(nudges.c.due_at)
            ).all()
        return [_outbox_row(r) for r in rows]

    def users_with_day_job(self) -> set[str]:
        """Users whose next day start is already scheduled (their chain of days is intact)."""
        with self.engine.connect() as conn:
            ids = conn.execute(select(jobs.c.id).where(jobs.c.id.like("day:%"))).scalars()
            return {i.split(":")[1] for i in ids}

    def known_users(self) -> set[str]:
        with self.engine.connect() as conn:
            return {r[0] for r in conn.execute(select(users.c.user_id))}

    def set_users(self, user_ids: Iterable[str]) -> None:
        wanted = set(user_ids)
        with self.engine.begin() as conn:
            known = {r[0] for r in conn.execute(select(users.c.user_id))}
            if known - wanted:
                conn.execute(delete(users).where(users.c.user_id.in_(list(known - wanted))))
            if wanted - known:
                conn.execute(
                    insert(users),
                    [{"user_id": u, "announced_at": time.time()} for u in wanted - known],
                )

    def remove_user(self, user: str) -> int:
        """Drop a user's pending nudges and jobs (the user left the config); returns how many."""
        with self.engine.begin() as conn:
            ids = [
                r[0]
                for r in conn.execute(
                    select(nudges.c.nudge_id).where(
                        nudges.c.user_id == user, nudges.c.status == PENDING
                    )
                )
            ]
            if ids:
                conn.execute(delete(jobs).where(jobs.c.id.in_(ids)))
                conn.execute(
                    update(nudges).where(nudges.c.nudge_id.in_(ids)).values(status=CANCELLED)
                )
            conn.execute(delete(jobs).where(jobs.c.id.like(f"day:{user}:%")))
        self._states.pop(user, None)
        return len(ids)

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            pending = conn.execute(
                select(func.count()).select_from(nudges).where(nudges.c.status == PENDING)
            ).scalar()
            job_count = conn.execute(select(func.count()).select_from(jobs)).scalar()
        return {"nudges_pending": int(pending or 0), "jobs": int(job_count or 0)}

    def prune(self, older_than: float) -> None:
        """Forget handled event ids and finished nudges older than the history we keep."""
        with self.engine.begin() as conn:
            conn.execute(delete(handled_events).where(handled_events.c.handled_at < older_than))
            conn.execute(
                delete(nudges).where(nudges.c.status != PENDING, nudges.c.due_at < older_than)
            )


def _outbox_row(row: Any) -> OutboxRow:
    return OutboxRow(
        nudge_id=row.nudge_id,
        user_id=row.user_id,
        due_at=row.due_at,
        expires_at=row.expires_at,
        status=row.status,
        nudge=pickle.loads(row.nudge),
    )


def utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)
