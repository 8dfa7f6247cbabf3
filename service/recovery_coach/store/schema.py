"""The store's schema: its tables (APScheduler's declared by jobs.py), the state codec, the
engine, and the schema version with its migrations."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
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
    insert,
    select,
    text,
)
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from recovery_coach.contract.shards import LOCK_SPACE, SCHEMA_LOCK
from recovery_coach.core.models import Nudge, UserState
from recovery_coach.jobs.rows import job_table

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

# People set up over MQTT (people.py): each one's profile JSON as received and validated.
profiles = Table(
    "rc_profiles",
    metadata,
    Column("user_id", String(32), primary_key=True),
    Column("profile", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Small facts about the service itself (e.g. what was last announced to Home Assistant).
meta = Table(
    "rc_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# The instance lease of an unsharded service (lease.py): one row, "service".
lease = Table(
    "rc_lease",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("owner", String(128), nullable=True),
    Column("token", BigInteger, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("about", Text, nullable=False),
)

# APScheduler's own table (jobs.py declares it as SQLAlchemyJobStore does), so that job rows
# are written in our transaction; the job store reads and removes them.
jobs = job_table(metadata)
_shard_jobs = MetaData()  # each shard's own job table (shards.py), made when it is first run


def jobs_table(name: str) -> Table:
    """The job table of this name: `jobs` itself, or a shard's."""
    if name == jobs.name:
        return jobs
    if name not in _shard_jobs.tables:
        job_table(_shard_jobs, name)
    return _shard_jobs.tables[name]


PENDING, PUBLISHED, CANCELLED, EXPIRED = "pending", "published", "cancelled", "expired"
# Handled event ids outlive the 14 days after which an event is refused as too old anyway.
EVENT_IDS_KEPT_S = 15 * 24 * 3600.0
# A finished nudge's row is what says "sent, never again"; the rules re-derive nudges only
# from the last 72 hours, so a row a week past its useful life can go.
NUDGES_KEPT_S = 8 * 24 * 3600.0

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


def make_engine(url: str, *, application_name: str | None = None, pool_size: int = 4) -> Engine:
    """The store's engine, its tables made and migrated. `application_name` names a
    sharded instance's PostgreSQL connections (shards.py), `pool_size` fits its shards."""
    if url in ("sqlite://", "sqlite:///:memory:"):
        # In memory (`simulate`): one connection, or each would be a database of its own.
        engine = create_engine(url, connect_args={"check_same_thread": False}, poolclass=StaticPool)
    elif url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False}, pool_size=4)
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        args = {"application_name": application_name} if application_name else {}
        engine = create_engine(url, pool_pre_ping=True, pool_size=pool_size, connect_args=args)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # Instances starting together on a new database would race to create tables.
            lock = {"a": LOCK_SPACE, "b": SCHEMA_LOCK}
            conn.execute(text("SELECT pg_advisory_xact_lock(:a, :b)"), lock)
        metadata.create_all(conn)
        migrate_on(conn)
    return engine


# 1: outbox rows pickled their Nudge; 2: the payload JSON is the nudge; 3: rc_profiles
SCHEMA_VERSION = 3


class SchemaTooNewError(RuntimeError):
    """The store was written by a newer Recovery Coach: refuse rather than misread it."""


def migrate(engine: Engine) -> None:
    """Bring the store to SCHEMA_VERSION, one step at a time, in one transaction each.

    1 -> 2: nothing to rewrite (every schema-1 row also holds its payload JSON, which is
    now what is read); new rows leave the pickle column empty.
    2 -> 3: rc_profiles is new (create_all made it). A schema-2 Recovery Coach refuses the
    store from then on, since it would forget the people set up over MQTT.
    """
    with engine.begin() as conn:
        migrate_on(conn)


def migrate_on(conn: Connection) -> None:
    """`migrate`, in the caller's transaction."""
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


def outbox_row(row: Any) -> OutboxRow:
    return OutboxRow(
        nudge_id=row.nudge_id,
        user_id=row.user_id,
        due_at=row.due_at,
        expires_at=row.expires_at,
        status=row.status,
        nudge=Nudge.from_payload(json.loads(row.payload)),
        payload=row.payload,
    )
