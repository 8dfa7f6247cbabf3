"""The durable store: user state, handled events, the nudge outbox and APScheduler's jobs,
in one SQLAlchemy engine (SQLite by default, any URL by config).

- schema.py: the tables, the state codec, the engine, the schema version and migrations;
- sql.py: the worker's own DBAPI connection (the hot path), the chunked IN written once;
- checkpoint.py: SQLite's log copied back by a thread of its own, not inside a commit;
- repository.py: the handler's repository (reads, decisions staged);
- unit_of_work.py: the batch's unit of work, the only writer (one transaction);
- queries.py: the shell's reads, and the start-up writes of who the users are.
"""

from recovery_coach.store.checkpoint import Checkpointer
from recovery_coach.store.queries import Members, Queries, client_secret
from recovery_coach.store.repository import SqlRepository
from recovery_coach.store.schema import (
    CANCELLED,
    EVENT_IDS_KEPT_S,
    EXPIRED,
    NUDGES_KEPT_S,
    PENDING,
    PUBLISHED,
    SCHEMA_VERSION,
    OutboxRow,
    SchemaTooNewError,
    decode_state,
    encode_state,
    handled_events,
    jobs,
    make_engine,
    meta,
    metadata,
    migrate,
    nudges,
    profiles,
    user_states,
    users,
)
from recovery_coach.store.unit_of_work import UnitOfWork

__all__ = [
    "CANCELLED",
    "EVENT_IDS_KEPT_S",
    "EXPIRED",
    "NUDGES_KEPT_S",
    "PENDING",
    "PUBLISHED",
    "SCHEMA_VERSION",
    "Checkpointer",
    "Members",
    "OutboxRow",
    "Queries",
    "SchemaTooNewError",
    "SqlRepository",
    "UnitOfWork",
    "client_secret",
    "decode_state",
    "encode_state",
    "handled_events",
    "jobs",
    "make_engine",
    "meta",
    "metadata",
    "migrate",
    "nudges",
    "profiles",
    "user_states",
    "users",
]
