"""One live unsharded instance per store: the instance lease.

The same config started twice (a systemd unit beside a container, an old container left
running) made two services decide against one store, each from its own stale view: they
took the broker session from each other every second, lost and doubled nudges, and said
nothing. Now an instance serves a store only while it holds the store's lease row:

- it takes the row when it is free, stale (not renewed for LEASE_S: its holder died or
  stalled) or its own, bumping the fencing token; otherwise it stands by, naming the holder,
  and tries again every HEARTBEAT_S;
- it renews the row every HEARTBEAT_S, and gives it up on a clean stop;
- every write of the instance (a batch's commit, a job's removal, who the users are)
  first touches the row with its token (`LeaseFence`): an UPDATE, so it takes the row's
  write lock inside the write's own transaction, on SQLite and PostgreSQL alike. Once a
  standby has taken the row over, no write of the old holder can commit.

Times are the database's own clock on PostgreSQL, so that machines need not agree; SQLite's
is the one machine's.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Connection, Engine, text

from recovery_coach.contract.shards import HEARTBEAT_S, LEASE_S
from recovery_coach.store.shard_leases import FencedError

if TYPE_CHECKING:
    from recovery_coach.store.sql import RawSql

log = logging.getLogger(__name__)

NAME: Final = "service"  # the one row of an unsharded service


def _now(engine: Engine) -> str:
    """The database's clock, in epoch seconds, as SQL."""
    if engine.dialect.name == "postgresql":
        return "extract(epoch from clock_timestamp())"
    return "((julianday('now') - 2440587.5) * 86400.0)"


def describe_self(instance: str) -> str:
    return f"{instance} (pid {os.getpid()} on {socket.gethostname()})"


ABOUT = re.compile(r".* \(pid (?P<pid>\d+) on (?P<host>.+)\)")


@dataclass(frozen=True)
class LeaseFence:
    """The check every write makes, in its own transaction: the row is still ours."""

    owner: str
    token: int

    SQL: Final = "UPDATE rc_lease SET token = token WHERE name = ? AND owner = ? AND token = ?"

    def on_cursor(self, sql: RawSql, cur: Any) -> None:
        """On the worker's own connection (the unit of work's commit)."""
        sql.execute(cur, self.SQL, (NAME, self.owner, self.token))
        self._verify(cur.rowcount)

    def on_connection(self, conn: Connection) -> None:
        """On a pooled connection (the job store's removals, who the users are)."""
        done = conn.execute(
            text(
                "UPDATE rc_lease SET token = token "
                "WHERE name = :name AND owner = :owner AND token = :token"
            ),
            {"name": NAME, "owner": self.owner, "token": self.token},
        )
        self._verify(done.rowcount)

    def _verify(self, rowcount: int) -> None:
        if rowcount != 1:
            raise FencedError(
                f"another instance took this store over: {self.owner} no longer serves it"
            )


class InstanceLease:
    """This instance's hold on the store's lease row, on a small engine of its own."""

    def __init__(self, engine: Engine, instance: str) -> None:
        self.engine = engine
        self.instance = instance
        self.about = describe_self(instance)
        self.token: int | None = None
        self._now = _now(engine)
        self._seen_about = ""

    def try_take(self) -> int | None:
        """Take the row if it is free, stale or ours; returns the new token, or None when
        another live instance holds it."""
        with self.engine.begin() as conn:
            # Touch first: the write lock is held from here to the commit (SQLite's
            # transaction starts at the first write; PostgreSQL's row lock is taken).
            conn.execute(
                text(
                    "INSERT INTO rc_lease (name, owner, token, expires_at, about) "
                    "SELECT CAST(:name AS VARCHAR(32)), NULL, 0, 0, '' "
                    "WHERE NOT EXISTS (SELECT 1 FROM rc_lease WHERE name = :name)"
                ),
                {"name": NAME},
            )
            row = conn.execute(
                text(
                    "UPDATE rc_lease SET owner = :me, token = token + 1, about = :about, "
                    f"expires_at = {self._now} + :lease WHERE name = :name AND "
                    f"(owner IS NULL OR owner = :me OR expires_at < {self._now}) "
                    "RETURNING token"
                ),
                {"me": self.instance, "about": self.about, "lease": LEASE_S, "name": NAME},
            ).first()
        if row is None and self._holder_died_here():
            return self._take_from_the_dead()
        self.token = None if row is None else int(row[0])
        return self.token

    def _holder_died_here(self) -> bool:
        """The holder ran on this machine and its process is gone (a crash, kill -9, a
        restart by systemd): its lease need not run out first."""
        with self.engine.connect() as conn:
            about = conn.execute(
                text("SELECT about FROM rc_lease WHERE name = :n"), {"n": NAME}
            ).scalar()
        self._seen_about = str(about or "")
        found = ABOUT.fullmatch(self._seen_about)
        if found is None or found["host"] != socket.gethostname():
            return False
        pid = int(found["pid"])
        if pid == os.getpid():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            return False
        return False

    def _take_from_the_dead(self) -> int | None:
        with self.engine.begin() as conn:
            row = conn.execute(
                text(
                    "UPDATE rc_lease SET owner = :me, token = token + 1, about = :about, "
                    f"expires_at = {self._now} + :lease WHERE name = :name AND about = :was "
                    "RETURNING token"
                ),
                {
                    "me": self.instance,
                    "about": self.about,
                    "lease": LEASE_S,
                    "name": NAME,
                    "was": self._seen_about,
                },
            ).first()
        self.token = None if row is None else int(row[0])
        if self.token is not None:
            log.warning("the store's last instance ended without a clean stop: taken over")
        return self.token

    def holder(self) -> str:
        """Who holds the row, in words (for the standby's log line)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                text(f"SELECT about, expires_at - {self._now} FROM rc_lease WHERE name = :n"),
                {"n": NAME},
            ).first()
        if row is None or not row[0]:
            return "another instance"
        return f"{row[0]}, its lease renewed until {max(0.0, float(row[1])):.0f} s from now"

    def renew(self) -> bool | None:
        """Renew the row: True, False when another instance has taken it over (this one
        stalled past LEASE_S), None when the store could not say (it is retried)."""
        if self.token is None:
            return False
        try:
            with self.engine.begin() as conn:
                done = conn.execute(
                    text(
                        f"UPDATE rc_lease SET expires_at = {self._now} + :lease "
                        "WHERE name = :name AND owner = :me AND token = :token"
                    ),
                    {"lease": LEASE_S, "name": NAME, "me": self.instance, "token": self.token},
                )
        except Exception as exc:
            log.debug("renewing the instance lease failed: %s", exc)
            return None
        if done.rowcount == 1:
            return True
        self.token = None
        return False

    def holds(self) -> bool:
        """Whether the row is still ours, asked before an MQTT reconnect: an instance taken
        over never takes the broker session back from the one that took its place."""
        return self.renew() is not False and self.token is not None

    def release(self) -> None:
        """A clean stop: the row is free for a standby at once."""
        if self.token is None:
            return
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    text(
                        "UPDATE rc_lease SET owner = NULL, expires_at = 0 "
                        "WHERE name = :name AND owner = :me AND token = :token"
                    ),
                    {"name": NAME, "me": self.instance, "token": self.token},
                )
        except Exception:
            log.warning("releasing the instance lease failed: it expires in %.0f s", LEASE_S)
        self.token = None

    def fence(self) -> LeaseFence:
        assert self.token is not None
        return LeaseFence(self.instance, self.token)

    def wait_for_turn(self, stop: Any) -> int | None:
        """Take the lease, standing by while another instance holds it; None if stopped."""
        said = False
        while not stop.is_set():
            try:
                token = self.try_take()
            except Exception as exc:
                log.warning("taking the instance lease failed (%s): retried", exc)
                token = None
            else:
                if token is not None:
                    if said:
                        log.warning("the other instance is gone: this one serves the store now")
                    return token
                if not said:
                    said = True
                    log.warning(
                        "another instance serves this store: %s. This one stands by and "
                        "takes over when that one stops (or set another `store` for a "
                        "second service)",
                        self.holder(),
                    )
            stop.wait(HEARTBEAT_S)
        return None
