"""Shard leases and the fence, on PostgreSQL (the arithmetic of shards is shards.py).

An instance owns a shard while it holds both

- the shard's advisory lock on the instance's lease connection: released by PostgreSQL the
  moment that connection closes (the process died, or was ended); and
- the shard's lease row, which says who owns it with a fencing token that every takeover
  bumps, and which the owner renews every HEARTBEAT_S; a row not renewed for LEASE_S is
  stale.

A stalled process keeps its connection, and so its locks, open: an instance whose heartbeat
is stale has its backends ended (`pg_terminate_backend`) by the one taking its shards. Every
write of a shard checks, in its own transaction, that the token is still the one it took the
shard with (`Fence`); the check holds a row lock that the next taker's token bump waits for,
so once a takeover has committed, no write of the old owner can.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Connection, Engine, make_url

from recovery_coach.contract.shards import LEASE_S, LOCK_SPACE, SCHEMA_LOCK, application_name

if TYPE_CHECKING:
    from recovery_coach.store.sql import RawSql

log = logging.getLogger(__name__)

# Instances whose heartbeat is current and whose lease connection is open.
LIVE_INSTANCES: Final = (
    "SELECT i.instance FROM rc_instances i WHERE i.expires_at > now() "
    "AND EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = i.pid) ORDER BY i.instance"
)


class FencedError(RuntimeError):
    """This instance no longer owns the shard: another has taken it over. Nothing is written."""


@dataclass(frozen=True)
class Fence:
    """The check every write of a shard makes in its own transaction."""

    shard: int
    owner: str
    token: int

    SQL: Final = "SELECT token FROM rc_shards WHERE shard = ? AND owner = ? FOR SHARE"

    def on_cursor(self, sql: RawSql, cur: Any) -> None:
        """The check, on the worker's own connection (the unit of work's commit)."""
        sql.execute(cur, self.SQL, (self.shard, self.owner))
        self.verify(cur.fetchall())

    def on_connection(self, conn: Connection) -> None:
        """The check, on a pooled connection (the job store's removals)."""
        rows = conn.exec_driver_sql(self.SQL.replace("?", "%s"), (self.shard, self.owner))
        self.verify(rows.fetchall())

    def holds(self, engine: Engine) -> bool:
        """Whether the shard is still ours, asked outside a write (before a reconnect);
        False while the store cannot say."""
        try:
            with engine.connect() as conn:
                self.on_connection(conn)
        except Exception:  # taken over, or the store is away: not ours to claim for now
            return False
        return True

    def verify(self, rows: Sequence[Any]) -> None:
        if not rows or int(rows[0][0]) != self.token:
            raise FencedError(f"shard {self.shard} was taken over: {self.owner} no longer owns it")


def libpq_url(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as psycopg itself takes it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS rc_instances (
        instance TEXT PRIMARY KEY,
        pid INTEGER NOT NULL,
        started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        expires_at TIMESTAMPTZ NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS rc_shards (
        shard INTEGER PRIMARY KEY,
        owner TEXT,
        token BIGINT NOT NULL DEFAULT 0,
        taken_at TIMESTAMPTZ,
        expires_at TIMESTAMPTZ)""",
)


class Leases:
    """One instance's lease connection: heartbeat, advisory locks, takeovers and releases.
    Times are the database's (`now()`), so the machines' clocks need not agree."""

    def __init__(self, url: str, instance: str, count: int) -> None:
        self.url = libpq_url(url)
        self.instance = instance
        self.count = count
        self.tokens: dict[int, int] = {}  # the shards this instance holds -> their tokens
        self._conn: Any = None

    # -- the connection

    def connect(self) -> None:
        import psycopg  # the `postgres` extra: only sharded instances need it here

        conn = psycopg.connect(
            self.url, autocommit=True, application_name=application_name(self.instance)
        )
        with conn.transaction():  # instances starting together: one creates the tables
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_SPACE, SCHEMA_LOCK))
            for ddl in SCHEMA:
                conn.execute(ddl)
        conn.execute(
            "INSERT INTO rc_shards (shard) SELECT s FROM generate_series(0, %s) s "
            "ON CONFLICT (shard) DO NOTHING",
            (self.count - 1,),
        )
        # A process of the same name left behind (stalled, or its row only) is ended first.
        _terminate(conn, self.instance, conn.info.backend_pid)
        conn.execute(
            "INSERT INTO rc_instances (instance, pid, expires_at) "
            "VALUES (%s, pg_backend_pid(), now() + make_interval(secs => %s)) "
            "ON CONFLICT (instance) DO UPDATE SET pid = excluded.pid, "
            "started_at = now(), expires_at = excluded.expires_at",
            (self.instance, LEASE_S),
        )
        self._conn = conn
        self.tokens = {}

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.closed

    def close(self) -> None:
        """Release every shard and leave (a clean stop)."""
        if self.connected:
            try:
                for shard in sorted(self.tokens):
                    self.release(shard)
                self._conn.execute("DELETE FROM rc_instances WHERE instance = %s", (self.instance,))
            finally:
                self._conn.close()
        self._conn = None
        self.tokens = {}

    def drop(self) -> None:
        """Forget a broken connection: PostgreSQL has released its locks."""
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # already gone
                log.debug("closing a broken lease connection", exc_info=True)
        self._conn = None
        self.tokens = {}

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        rows: list[Any] = self._conn.execute(sql, params).fetchall()
        return rows

    # -- each heartbeat

    def beat(self) -> set[int]:
        """Renew the instance and its shards; returns the shards it no longer holds."""
        self._conn.execute(
            "UPDATE rc_instances SET expires_at = now() + make_interval(secs => %s) "
            "WHERE instance = %s",
            (LEASE_S, self.instance),
        )
        if not self.tokens:
            return set()
        rows = self._rows(
            "UPDATE rc_shards SET expires_at = now() + make_interval(secs => %s) "
            "WHERE owner = %s AND shard = ANY(%s) RETURNING shard, token",
            (LEASE_S, self.instance, sorted(self.tokens)),
        )
        held = {int(s) for s, t in rows if self.tokens.get(int(s)) == int(t)}
        lost = set(self.tokens) - held
        for shard in lost:
            del self.tokens[shard]
        return lost

    def live(self) -> list[str]:
        """Instances whose heartbeat is current and whose lease connection is open."""
        return [r[0] for r in self._rows(LIVE_INSTANCES)]

    def owners(self) -> dict[int, str | None]:
        """Every shard's owner of record (None: free)."""
        return {int(s): o for s, o in self._rows("SELECT shard, owner FROM rc_shards")}

    def take(self, shard: int) -> int | None:
        """Take a free shard; returns its new fencing token, or None when another holds it.
        A holder whose heartbeat is stale has its backends ended, so the next try gets it."""
        got = self._rows("SELECT pg_try_advisory_lock(%s, %s)", (LOCK_SPACE, shard))[0][0]
        if not got:
            self._end_stale_holder(shard)
            return None
        try:
            with self._conn.transaction():
                # Waits for the old owner's writes in flight (each holds this row FOR SHARE).
                token = self._rows(
                    "UPDATE rc_shards SET owner = %s, token = token + 1, taken_at = now(), "
                    "expires_at = now() + make_interval(secs => %s) WHERE shard = %s "
                    "RETURNING token",
                    (self.instance, LEASE_S, shard),
                )[0][0]
        except Exception:
            self._rows("SELECT pg_advisory_unlock(%s, %s)", (LOCK_SPACE, shard))
            raise
        self.tokens[shard] = int(token)
        return int(token)

    def release(self, shard: int) -> None:
        """Give a shard up (its service has stopped): free for the next taker."""
        token = self.tokens.pop(shard, None)
        if token is not None:
            self._conn.execute(
                "UPDATE rc_shards SET owner = NULL, expires_at = NULL "
                "WHERE shard = %s AND owner = %s AND token = %s",
                (shard, self.instance, token),
            )
        self._rows("SELECT pg_advisory_unlock(%s, %s)", (LOCK_SPACE, shard))

    def _end_stale_holder(self, shard: int) -> None:
        rows = self._rows(
            "SELECT i.instance FROM rc_shards s JOIN rc_instances i ON i.instance = s.owner "
            "WHERE s.shard = %s AND i.expires_at <= now() AND i.instance <> %s",
            (shard, self.instance),
        )
        for (stale,) in rows:
            log.warning(
                "instance %s holds shard %d but its heartbeat is stale: ending its "
                "database connections",
                stale,
                shard,
            )
            _terminate(self._conn, stale, None)


def _terminate(conn: Any, instance: str, except_pid: int | None) -> None:
    conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = %s AND pid <> COALESCE(%s, 0) AND pid <> pg_backend_pid()",
        (application_name(instance), except_pid),
    )
