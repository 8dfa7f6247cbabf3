"""The durable store: user state, handled events, the nudge outbox and APScheduler's jobs.

One SQLAlchemy engine (SQLite by default, any URL by config). A batch of inbound messages is
written in ONE transaction: states, handled event ids, outbox rows and APScheduler job rows
together, so an event is acknowledged to the broker only once all of its decisions are
stored, and a kill -9 at any point leaves either all of them or none.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
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
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from .jobs import DAY_PREFIX, JOBS_TABLE, JobRow, day_job_user, day_jobs_of, is_day_job, job_table
from .models import Nudge, Profile, UserState

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
    Column("due_at", Float, nullable=False, index=True),
    Column("expires_at", Float, nullable=True),
    Column("status", String(12), nullable=False, index=True),
    Column("payload", Text, nullable=False),  # the contract's JSON: the nudge itself
    # Schema 1 pickled the Nudge here (a renamed field broke stored rows); written empty
    # since schema 2, kept so that a schema-1 database needs no table rewrite.
    Column("nudge", LargeBinary, nullable=False),
    Column("published_at", Float, nullable=True),
)

users = Table(
    "rc_users",
    metadata,
    Column("user_id", String(32), primary_key=True),
    Column("announced_at", Float, nullable=False),
)

# Small facts about the service itself (e.g. what was last announced to Home Assistant).
meta = Table(
    "rc_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# APScheduler's own table (jobs.py declares it as SQLAlchemyJobStore does), so that job rows
# are written in our transaction; the job store reads and removes them.
jobs = job_table(metadata)

PENDING, PUBLISHED, CANCELLED, EXPIRED = "pending", "published", "cancelled", "expired"
# Handled event ids outlive the 14 days after which an event is refused as too old anyway.
EVENT_IDS_KEPT_S = 15 * 24 * 3600.0
# A finished nudge's row is what says "sent, never again"; the rules re-derive nudges only
# from the last 72 hours, so a row a week past its useful life can go.
NUDGES_KEPT_S = 8 * 24 * 3600.0
CHUNK = 400  # ids per IN (...) list: well under SQLite's 999 bound parameters

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
    if url in ("sqlite://", "sqlite:///:memory:"):
        # In memory (`simulate`): one connection, or each would be a database of its own.
        engine = create_engine(url, connect_args={"check_same_thread": False}, poolclass=StaticPool)
    elif url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False}, pool_size=4)
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=4)
    metadata.create_all(engine)
    migrate(engine)
    return engine


SCHEMA_VERSION = 2  # 1: outbox rows pickled their Nudge; 2: the payload JSON is the nudge


class SchemaTooNewError(RuntimeError):
    """The store was written by a newer Recovery Coach: refuse rather than misread it."""


def migrate(engine: Engine) -> None:
    """Bring the store to SCHEMA_VERSION, one step at a time, in one transaction each.

    1 -> 2: nothing to rewrite (every schema-1 row also holds its payload JSON, which is
    now what is read); new rows leave the pickle column empty.
    """
    with engine.begin() as conn:
        found = conn.execute(select(meta.c.value).where(meta.c.key == "schema")).scalar()
        version = int(found) if found is not None else 1
        if version > SCHEMA_VERSION:
            raise SchemaTooNewError(
                f"the store is at schema {version}; this Recovery Coach reads up to "
                f"{SCHEMA_VERSION}: upgrade it, or point `store` at another database"
            )
        if version < SCHEMA_VERSION:
            conn.execute(delete(meta).where(meta.c.key == "schema"))
            conn.execute(insert(meta).values(key="schema", value=str(SCHEMA_VERSION)))


def ts(t: datetime) -> float:
    return t.timestamp()


@dataclass(frozen=True)
class OutboxRow:
    nudge_id: str
    user_id: str
    due_at: float
    expires_at: float | None
    status: str
    nudge: Nudge
    payload: str  # the JSON published, as written when the nudge was decided


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
        self._staged_prune: float | None = None  # epoch seconds: forget what is older
        self._staged_meta: dict[str, str] = {}
        # The nudge JSON written by the last commit, so publishing does not build it again.
        self.written_payloads: dict[str, str] = {}
        # Per batch: what the store already holds, read with one query each (prefetch_seen,
        # resolve_staged) instead of one query per event.
        self._seen_checked: set[tuple[str, str]] = set()
        self._seen_known: set[tuple[str, str]] = set()
        self._existing: dict[str, str] | None = None  # staged nudge id -> stored status
        self._state_rows: set[str] = set()  # users whose state row exists in the store
        # The worker's own DBAPI connection for the hot path: plain SQL, no SQL compilation,
        # no pool checkout per statement (that overhead was most of an event's cost).
        self._raw: Any = None
        self._qmark = engine.dialect.paramstyle == "qmark"

    # -- the hot path: plain SQL on the worker's connection

    def _sql(self, text: str) -> str:
        return text if self._qmark else text.replace("?", "%s")

    def _cursor(self) -> Any:
        if self._raw is None:
            self._raw = self.engine.raw_connection()
        return self._raw.cursor()

    def _query(self, text: str, params: Sequence[Any] = ()) -> list[Any]:
        cur = self._cursor()
        try:
            cur.execute(self._sql(text), params)
            return list(cur.fetchall())
        finally:
            cur.close()

    def _exec(self, cur: Any, text: str, params: Sequence[Any]) -> None:
        cur.execute(self._sql(text), params)

    def _many(self, cur: Any, text: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            cur.executemany(self._sql(text), rows)

    def end_reads(self) -> None:
        """End the read transaction a driver may have opened (PostgreSQL), between batches."""
        if self._raw is not None:
            try:
                self._raw.rollback()
            except Exception:
                self._drop_raw()
                raise

    def _drop_raw(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            with contextlib.suppress(Exception):  # already gone
                raw.invalidate()  # a broken connection is not returned to the pool

    # -- Repository protocol (message_handler.Repository)

    def load(self, user: str) -> UserState:
        if user in self._staged_states:
            return self._staged_states[user]
        if user not in self._states:
            rows = self._query("SELECT state FROM rc_user_states WHERE user_id = ?", (user,))
            text = rows[0][0] if rows else None
            self._states[user] = decode_state(text) if text else UserState()
            if text:
                self._state_rows.add(user)
        return self._states[user]

    def peek(self, user: str) -> UserState:
        """The user's state, without keeping it in the cache (announcing 100,000 users)."""
        if user in self._staged_states:
            return self._staged_states[user]
        if user in self._states:
            return self._states[user]
        rows = self._query("SELECT state FROM rc_user_states WHERE user_id = ?", (user,))
        return decode_state(rows[0][0]) if rows and rows[0][0] else UserState()

    def prefetch_seen(self, keys: Iterable[tuple[str, str]]) -> None:
        """Read which of these (user, event id) pairs were handled, in one query per 400."""
        todo = list(set(keys) - self._seen_checked)
        for i in range(0, len(todo), CHUNK):
            chunk = todo[i : i + CHUNK]
            users = sorted({u for u, _ in chunk})
            events = sorted({e for _, e in chunk})
            rows = self._query(
                f"SELECT user_id, event_id FROM rc_handled_events WHERE user_id IN "
                f"({_marks(len(users))}) AND event_id IN ({_marks(len(events))})",
                [*users, *events],
            )
            self._seen_known.update((r[0], r[1]) for r in rows)
        self._seen_checked.update(todo)

    def seen(self, user: str, event_id: str) -> bool:
        key = (user, event_id)
        if key in self._staged_events or key in self._seen_known:
            return True
        if key in self._seen_checked:
            return False
        rows = self._query(
            "SELECT 1 FROM rc_handled_events WHERE user_id = ? AND event_id = ?", (user, event_id)
        )
        return bool(rows)

    def published(self, nudge_ids: Sequence[str]) -> set[str]:
        done = {i for i in nudge_ids if i in self._staged_published}
        ids = list(nudge_ids)
        for i in range(0, len(ids), CHUNK):
            chunk = ids[i : i + CHUNK]
            rows = self._query(
                f"SELECT nudge_id FROM rc_nudges WHERE nudge_id IN ({_marks(len(chunk))}) "
                "AND status = ?",
                [*chunk, PUBLISHED],
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

    def earliest_staged_job(self) -> float | None:
        """When the soonest job of this batch is due (epoch seconds), None without jobs."""
        return min((j.next_run_time for j in self._staged_jobs.values()), default=None)

    def stage_state(self, user: str, state: UserState) -> None:
        self._staged_states[user] = state

    def stage_published(self, nudge_id: str, at: float) -> None:
        self._staged_published[nudge_id] = at

    def stage_expired(self, nudge_id: str) -> None:
        self._staged_expired.add(nudge_id)

    def stage_prune(self, now: float) -> None:
        """Forget, in this batch's transaction, old handled ids and finished nudges."""
        self._staged_prune = now

    def writable(self) -> bool:
        """Whether the store takes a write now (a failed batch: the store, or one message?)."""
        try:
            cur = self._cursor()
            self._exec(cur, "DELETE FROM rc_meta WHERE key = ?", ("probe",))
            self._exec(cur, "INSERT INTO rc_meta (key, value) VALUES (?, ?)", ("probe", "1"))
            cur.close()
            self._raw.commit()
            return True
        except Exception:
            self._abort()
            return False

    def resolve_staged(self) -> set[str]:
        """Drop staged nudges that already went out; returns their ids. A cancelled or
        expired one planned again (a visit that went on after a geofence flap, a deferral)
        is planned again. One query per batch for what `published` asks per event; it also
        tells `_write` which staged ids are new (plain inserts)."""
        self._existing = {}
        ids = list(self._staged_nudges)
        for i in range(0, len(ids), CHUNK):
            chunk = ids[i : i + CHUNK]
            rows = self._query(
                f"SELECT nudge_id, status FROM rc_nudges WHERE nudge_id IN ({_marks(len(chunk))})",
                chunk,
            )
            self._existing.update((r[0], r[1]) for r in rows)
        done = {i for i, status in self._existing.items() if status == PUBLISHED}
        done.update(i for i in ids if i in self._staged_published)
        for nudge_id in done:
            self._staged_nudges.pop(nudge_id, None)
        return done

    def has_staged(self) -> bool:
        return bool(
            self._staged_states
            or self._staged_events
            or self._staged_nudges
            or self._staged_cancel
            or self._staged_jobs
            or self._staged_published
            or self._staged_expired
            or self._staged_prune is not None
            or bool(self._staged_meta)
        )

    def commit(self) -> None:
        """Write everything staged in one transaction."""
        now = time.time()
        self._cursor().close()  # make sure the connection exists
        cur = self._raw.cursor()
        try:
            self._write(cur, now)
            cur.close()
            self._raw.commit()
        except BaseException:
            self._abort()
            raise
        self._states.update(self._staged_states)
        self._state_rows.update(self._staged_states)
        self._clear()

    def _abort(self) -> None:
        try:
            if self._raw is not None:
                self._raw.rollback()
        except Exception:
            self._drop_raw()

    def rollback(self) -> None:
        """Forget everything staged (the batch failed; its messages stay unacknowledged)."""
        self._abort()
        self._clear()

    def _clear(self) -> None:
        self._seen_checked.clear()
        self._seen_known.clear()
        self._existing = None
        self._staged_states.clear()
        self._staged_events.clear()
        self._staged_nudges.clear()
        self._staged_cancel.clear()
        self._staged_jobs.clear()
        self._staged_published.clear()
        self._staged_expired.clear()
        self._staged_prune = None
        self._staged_meta.clear()

    def forget_cache(self) -> None:
        self._states.clear()
        self._state_rows.clear()

    def _write(self, cur: Any, now: float) -> None:
        self.written_payloads = {}
        if self._existing is None:
            for nudge_id in self.resolve_staged():
                self._staged_jobs.pop(nudge_id, None)
        existing = self._existing or {}
        if self._staged_states:
            # Rows known to exist are updated in place; the others (new users, or users
            # never loaded in this process) are replaced.
            old = [u for u in self._staged_states if u in self._state_rows]
            new = [u for u in self._staged_states if u not in self._state_rows]
            self._many(
                cur,
                "UPDATE rc_user_states SET state = ?, updated_at = ? WHERE user_id = ?",
                [(encode_state(self._staged_states[u]), now, u) for u in old],
            )
            if old and cur.rowcount != len(old):  # a row we thought was there is not
                new += old
            if new:
                self._in(cur, "DELETE FROM rc_user_states WHERE user_id IN ({})", new)
                self._many(
                    cur,
                    "INSERT INTO rc_user_states (user_id, state, updated_at) VALUES (?, ?, ?)",
                    [(u, encode_state(self._staged_states[u]), now) for u in new],
                )
        # A message's first delivery may reuse the id of an old one (a packet id that came
        # round again, see inbound.derived_event_id): the row is already there.
        self._many(
            cur,
            "INSERT INTO rc_handled_events (user_id, event_id, handled_at) VALUES (?, ?, ?) "
            "ON CONFLICT (user_id, event_id) DO UPDATE SET handled_at = excluded.handled_at",
            [(u, e, now) for u, e in self._staged_events],
        )
        # A job row exists only beside a stored nudge (same id), or for a day start: a nudge
        # the store has never seen needs no delete before its insert.
        replaced = [i for i in self._staged_nudges if i in existing]
        gone = set(self._staged_cancel) | set(replaced)
        gone.update(j for j in self._staged_jobs if is_day_job(j) or j in existing)
        self._in(cur, f"DELETE FROM {JOBS_TABLE} WHERE id IN ({{}})", sorted(gone))
        self._in(
            cur,
            "UPDATE rc_nudges SET status = ? WHERE nudge_id IN ({}) AND status = ?",
            sorted(self._staged_cancel),
            (CANCELLED,),
            (PENDING,),
        )
        self._in(
            cur,
            "DELETE FROM rc_nudges WHERE nudge_id IN ({}) AND status <> ?",
            replaced,
            (),
            (PUBLISHED,),
        )
        self._many(
            cur,
            "INSERT INTO rc_nudges (nudge_id, user_id, due_at, expires_at, status, payload, nudge) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [self._outbox_values(n) for n in self._staged_nudges.values()],
        )
        self._many(
            cur,
            f"INSERT INTO {JOBS_TABLE} (id, next_run_time, job_state) VALUES (?, ?, ?)",
            [(j.job_id, j.next_run_time, j.state) for j in self._staged_jobs.values()],
        )
        self._many(
            cur,
            "UPDATE rc_nudges SET status = ?, published_at = ? WHERE nudge_id = ? AND status = ?",
            [(PUBLISHED, at, i, PENDING) for i, at in self._staged_published.items()],
        )
        self._in(
            cur,
            "UPDATE rc_nudges SET status = ? WHERE nudge_id IN ({}) AND status = ?",
            sorted(self._staged_expired),
            (EXPIRED,),
            (PENDING,),
        )
        if self._staged_prune is not None:
            self._prune(cur, self._staged_prune)
        if self._staged_meta:
            self._in(cur, "DELETE FROM rc_meta WHERE key IN ({})", sorted(self._staged_meta))
            self._many(
                cur,
                "INSERT INTO rc_meta (key, value) VALUES (?, ?)",
                sorted(self._staged_meta.items()),
            )

    def _prune(self, cur: Any, now: float) -> None:
        self._exec(
            cur, "DELETE FROM rc_handled_events WHERE handled_at < ?", (now - EVENT_IDS_KEPT_S,)
        )
        # Finished rows, and pending ones whose useful life ended long ago (no job sends
        # them: a missed job marks its nudge expired, a deleted user's are cancelled).
        self._exec(
            cur,
            "DELETE FROM rc_nudges WHERE COALESCE(expires_at, due_at) < ? "
            "AND (status <> ? OR expires_at IS NOT NULL)",
            (now - NUDGES_KEPT_S, PENDING),
        )

    def _in(
        self,
        cur: Any,
        template: str,
        ids: Sequence[str],
        before: tuple[Any, ...] = (),
        after: tuple[Any, ...] = (),
    ) -> None:
        """Run `template` (one `{}` for the IN list) over ids, CHUNK at a time."""
        for i in range(0, len(ids), CHUNK):
            chunk = list(ids[i : i + CHUNK])
            self._exec(cur, template.format(_marks(len(chunk))), [*before, *chunk, *after])

    def _outbox_values(self, n: Nudge) -> tuple[Any, ...]:
        payload = json.dumps(n.payload(self.profiles[n.user].tz), ensure_ascii=False)
        self.written_payloads[n.nudge_id] = payload
        return (
            n.nudge_id,
            n.user,
            ts(n.due_at),
            ts(n.expires_at) if n.expires_at else None,
            PENDING,
            payload,
            b"",
        )

    # -- reads for the shell

    def outbox(self, nudge_id: str) -> OutboxRow | None:
        return self.outbox_many([nudge_id]).get(nudge_id)

    def outbox_many(self, nudge_ids: Sequence[str]) -> dict[str, OutboxRow]:
        """Outbox rows by id, one query per CHUNK ids (the nudges a batch fires)."""
        found: dict[str, OutboxRow] = {}
        for i in range(0, len(nudge_ids), CHUNK):
            chunk = list(nudge_ids[i : i + CHUNK])
            rows = self._query(
                "SELECT nudge_id, user_id, due_at, expires_at, status, payload "
                f"FROM rc_nudges WHERE nudge_id IN ({_marks(len(chunk))})",
                chunk,
            )
            for r in rows:
                nudge = Nudge.from_payload(json.loads(r[5]))
                found[r[0]] = OutboxRow(r[0], r[1], r[2], r[3], r[4], nudge, r[5])
        return found

    def pending_without_job(self, due_by: float | None = None) -> list[OutboxRow]:
        """Pending nudges with no APScheduler job: published-late candidates after a restart
        (only those due by `due_by`, when given: 200,000 pending nudges took a second)."""
        query = select(nudges).where(
            nudges.c.status == PENDING, nudges.c.nudge_id.not_in(select(jobs.c.id))
        )
        if due_by is not None:
            query = query.where(nudges.c.due_at <= due_by)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(nudges.c.due_at)).all()
        return [_outbox_row(r) for r in rows]

    def users_with_day_job(self) -> set[str]:
        """Users whose next day start is already scheduled (their chain of days is intact)."""
        with self.engine.connect() as conn:
            ids = conn.execute(select(jobs.c.id).where(jobs.c.id.like(f"{DAY_PREFIX}%")))
            return {u for u in map(day_job_user, ids.scalars()) if u is not None}

    def known_users(self) -> set[str]:
        with self.engine.connect() as conn:
            return {r[0] for r in conn.execute(select(users.c.user_id))}

    def set_users(self, user_ids: Iterable[str], known: set[str] | None = None) -> None:
        wanted = set(user_ids)
        with self.engine.begin() as conn:
            if known is None:
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
            conn.execute(delete(jobs).where(jobs.c.id.like(day_jobs_of(user))))
        self._states.pop(user, None)
        return len(ids)

    def get_meta(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            value = conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar()
        return None if value is None else str(value)

    def stage_meta(self, key: str, value: str) -> None:
        """A fact about the service itself, written with the next commit."""
        self._staged_meta[key] = value

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            pending = conn.execute(
                select(func.count()).select_from(nudges).where(nudges.c.status == PENDING)
            ).scalar()
            job_count = conn.execute(select(func.count()).select_from(jobs)).scalar()
        return {"nudges_pending": int(pending or 0), "jobs": int(job_count or 0)}


def _outbox_row(row: Any) -> OutboxRow:
    return OutboxRow(
        nudge_id=row.nudge_id,
        user_id=row.user_id,
        due_at=row.due_at,
        expires_at=row.expires_at,
        status=row.status,
        nudge=Nudge.from_payload(json.loads(row.payload)),
        payload=row.payload,
    )


def _marks(n: int) -> str:
    return ", ".join("?" * n)
