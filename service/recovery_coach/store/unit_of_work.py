"""The batch's unit of work: the only writer of the store's hot tables.

A batch of inbound messages is written in ONE transaction: states, handled event ids,
outbox rows, APScheduler job rows, PUBACK marks and housekeeping together, so an event is
acknowledged to the broker only once all of its decisions are stored, and a kill -9 at any
point leaves either all of them or none. The worker thread is the only writer of batches;
start-up's user reconciliation (`queries.Members`) runs before it starts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from recovery_coach.core.models import Nudge, Profile, UserState
from recovery_coach.jobs.rows import JOBS_TABLE, JobRow, day_jobs_of, is_day_job
from recovery_coach.store.schema import (
    CANCELLED,
    EVENT_IDS_KEPT_S,
    EXPIRED,
    NUDGES_KEPT_S,
    PENDING,
    PUBLISHED,
    encode_state,
    ts,
)
from recovery_coach.store.sql import RawSql


class UnitOfWork:
    """Everything one batch writes, staged, then written by `commit` in one transaction."""

    def __init__(
        self,
        sql: RawSql,
        profiles: Mapping[str, Profile],
        jobs_table: str = JOBS_TABLE,
        fence: Callable[[RawSql, Any], None] | None = None,
    ) -> None:
        self.sql = sql
        self.profiles = profiles
        self.jobs_table = jobs_table
        # Sharded: the first statement of every commit checks that the shard is still ours.
        self.fence = fence
        self.states: dict[str, UserState] = {}
        self.events: set[tuple[str, str]] = set()
        self._nudges: dict[str, Nudge] = {}
        self._cancel: set[str] = set()
        self._jobs: dict[str, JobRow] = {}
        self._published: dict[str, float] = {}
        self._expired: set[str] = set()
        self._prune_at: float | None = None  # epoch seconds: forget what is older
        self._meta: dict[str, str] = {}
        self._profiles: dict[str, str] = {}  # people set up over MQTT: user -> profile JSON
        self._removed: set[str] = set()  # people whose profile was cleared
        self._day_reset: set[str] = set()  # users whose day-start job is planned anew
        self._existing: dict[str, str] | None = None  # staged nudge id -> stored status
        # Users whose state row is known to exist (the repository adds those it loaded).
        self.state_rows: set[str] = set()
        # The nudge JSON written by the last commit, so publishing does not build it again.
        self.written_payloads: dict[str, str] = {}
        # Told the states each commit wrote and the users it removed (the repository's
        # write-through cache).
        self.on_commit: Callable[[dict[str, UserState], set[str]], None] = lambda s, r: None

    # -- staging

    def decision(
        self,
        user: str,
        event_id: str | None,
        state: UserState,
        schedule: Sequence[Nudge],
        cancel: Sequence[str],
    ) -> None:
        """What the handler decided for one message (message_handler.Repository.save)."""
        self.states[user] = state
        if event_id is not None:
            self.events.add((user, event_id))
        for n in schedule:
            self._nudges[n.nudge_id] = n
            self._cancel.discard(n.nudge_id)
        for nudge_id in cancel:
            self._nudges.pop(nudge_id, None)
            self._cancel.add(nudge_id)

    def state(self, user: str, state: UserState) -> None:
        self.states[user] = state

    def job(self, row: JobRow) -> None:
        self._jobs[row.job_id] = row

    def published(self, nudge_id: str, at: float) -> None:
        self._published[nudge_id] = at

    def expired(self, nudge_id: str) -> None:
        self._expired.add(nudge_id)

    def prune(self, now: float) -> None:
        """Forget, in this batch's transaction, old handled ids and finished nudges."""
        self._prune_at = now

    def meta(self, key: str, value: str) -> None:
        """A fact about the service itself, written with the next commit."""
        self._meta[key] = value

    def profile(self, user: str, text: str) -> None:
        """A person set up or changed over MQTT (people.py)."""
        self._profiles[user] = text
        self._removed.discard(user)

    def removed(self, user: str) -> None:
        """A person whose profile was cleared: their pending nudges and jobs are cancelled,
        and what the store holds about their health (state, handled events) goes."""
        self._removed.add(user)
        self._profiles.pop(user, None)
        self.states.pop(user, None)

    def day_reset(self, user: str) -> None:
        """The user's day-start jobs go; the one staged in this batch (if any) replaces them."""
        self._day_reset.add(user)

    def earliest_job(self) -> float | None:
        """When the soonest job of this batch is due (epoch seconds), None without jobs."""
        return min((j.next_run_time for j in self._jobs.values()), default=None)

    def resolve(self) -> set[str]:
        """Drop staged nudges that already went out; returns their ids. A cancelled or
        expired one planned again (a visit that went on after a geofence flap, a deferral)
        is planned again. One query per batch; it also tells `_write` which staged ids are
        new (plain inserts)."""
        ids = list(self._nudges)
        rows = self.sql.select_in(
            "SELECT nudge_id, status FROM rc_nudges WHERE nudge_id IN ({})", ids
        )
        self._existing = {r[0]: r[1] for r in rows}
        done = {i for i, status in self._existing.items() if status == PUBLISHED}
        done.update(i for i in ids if i in self._published)
        for nudge_id in done:
            self._nudges.pop(nudge_id, None)
            self._jobs.pop(nudge_id, None)
        return done

    def staged_nudges(self) -> list[Nudge]:
        """The nudges this batch will write, as its last decision left each."""
        return list(self._nudges.values())

    def pending(self) -> bool:
        """Whether anything is staged."""
        return bool(
            self.states
            or self.events
            or self._nudges
            or self._cancel
            or self._jobs
            or self._published
            or self._expired
            or self._prune_at is not None
            or self._meta
            or self._profiles
            or self._removed
            or self._day_reset
        )

    # -- the transaction

    def commit(self) -> None:
        """Write everything staged in one transaction."""
        cur = self.sql.cursor()
        try:
            if self.fence is not None:
                self.fence(self.sql, cur)
            self._write(cur, time.time())
            cur.close()
            self.sql.commit()
        except BaseException:
            self.sql.abort()
            raise
        self.state_rows.update(self.states)
        self.state_rows -= self._removed
        self.on_commit(self.states, set(self._removed))
        self._clear()

    def rollback(self) -> None:
        """Forget everything staged (the batch failed; its messages stay unacknowledged)."""
        self.sql.abort()
        self._clear()

    def _clear(self) -> None:
        self.states = {}
        self.events = set()
        self._existing = None
        self._nudges.clear()
        self._cancel.clear()
        self._jobs.clear()
        self._published.clear()
        self._expired.clear()
        self._prune_at = None
        self._meta.clear()
        self._profiles.clear()
        self._removed.clear()
        self._day_reset.clear()

    def _write(self, cur: Any, now: float) -> None:
        self.written_payloads = {}
        if self._existing is None:
            self.resolve()
        existing = self._existing or {}
        write_states(self.sql, cur, self.states, self.state_rows, now)
        # The rest needs no answer before the commit: PostgreSQL gets it in one round trip
        # (write_states reads its UPDATE's row count, so it goes first).
        with self.sql.pipelined():
            self._write_rest(cur, now, existing)

    def _write_rest(self, cur: Any, now: float, existing: dict[str, str]) -> None:
        # A message's first delivery may reuse the id of an old one (a packet id that came
        # round again, see inbound.derived_event_id): the row is already there.
        self.sql.many(
            cur,
            "INSERT INTO rc_handled_events (user_id, event_id, handled_at) VALUES (?, ?, ?) "
            "ON CONFLICT (user_id, event_id) DO UPDATE SET handled_at = excluded.handled_at",
            [(u, e, now) for u, e in self.events],
        )
        # A job row exists only beside a stored nudge (same id), or for a day start: a nudge
        # the store has never seen needs no delete before its insert.
        replaced = [i for i in self._nudges if i in existing]
        gone = self._cancel | set(replaced)
        gone.update(j for j in self._jobs if is_day_job(j) or j in existing)
        self.sql.execute_in(cur, f"DELETE FROM {self.jobs_table} WHERE id IN ({{}})", sorted(gone))
        for user in sorted(self._day_reset):
            self.sql.execute(
                cur, f"DELETE FROM {self.jobs_table} WHERE id LIKE ?", (day_jobs_of(user),)
            )
        set_status(self.sql, cur, self._cancel, CANCELLED)
        self.sql.execute_in(
            cur,
            "DELETE FROM rc_nudges WHERE nudge_id IN ({}) AND status <> ?",
            replaced,
            after=(PUBLISHED,),
        )
        self.sql.many(
            cur,
            "INSERT INTO rc_nudges (nudge_id, user_id, due_at, expires_at, status, payload, nudge) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [self._outbox_values(n) for n in self._nudges.values()],
        )
        self.sql.many(
            cur,
            f"INSERT INTO {self.jobs_table} (id, next_run_time, job_state) VALUES (?, ?, ?)",
            [(j.job_id, j.next_run_time, j.state) for j in self._jobs.values()],
        )
        self.sql.many(
            cur,
            "UPDATE rc_nudges SET status = ?, published_at = ? WHERE nudge_id = ? AND status = ?",
            [(PUBLISHED, at, i, PENDING) for i, at in self._published.items()],
        )
        set_status(self.sql, cur, self._expired, EXPIRED)
        if self._prune_at is not None:
            forget_old(self.sql, cur, self._prune_at)
        write_people(self.sql, cur, self._profiles, self._removed, now, self.jobs_table)
        if self._meta:
            self.sql.execute_in(cur, "DELETE FROM rc_meta WHERE key IN ({})", sorted(self._meta))
            self.sql.many(
                cur,
                "INSERT INTO rc_meta (key, value) VALUES (?, ?)",
                sorted(self._meta.items()),
            )

    def _outbox_values(self, n: Nudge) -> tuple[Any, ...]:
        payload = json.dumps(n.payload(self.profiles[n.user].tz), ensure_ascii=False)
        self.written_payloads[n.nudge_id] = payload
        expires = ts(n.expires_at) if n.expires_at else None
        return (n.nudge_id, n.user, ts(n.due_at), expires, PENDING, payload, b"")


# ---------------------------------------------------------------- the statements


def write_states(
    sql: RawSql, cur: Any, states: dict[str, UserState], known_rows: set[str], now: float
) -> None:
    """Rows known to exist are updated in place; the others (new users, or users never
    loaded in this process) are replaced."""
    if not states:
        return
    old = [u for u in states if u in known_rows]
    new = [u for u in states if u not in known_rows]
    sql.many(
        cur,
        "UPDATE rc_user_states SET state = ?, updated_at = ? WHERE user_id = ?",
        [(encode_state(states[u]), now, u) for u in old],
    )
    if old and cur.rowcount != len(old):  # a row we thought was there is not
        new += old
    if new:
        sql.execute_in(cur, "DELETE FROM rc_user_states WHERE user_id IN ({})", new)
        sql.many(
            cur,
            "INSERT INTO rc_user_states (user_id, state, updated_at) VALUES (?, ?, ?)",
            [(u, encode_state(states[u]), now) for u in new],
        )


def write_people(
    sql: RawSql,
    cur: Any,
    profiles: dict[str, str],
    removed: set[str],
    now: float,
    jobs_table: str = JOBS_TABLE,
) -> None:
    """Profiles set, then people removed: last, so that what this batch staged for a
    removed person (a nudge, a job) goes with the rest."""
    if profiles:
        ids = sorted(profiles)
        sql.execute_in(cur, "DELETE FROM rc_profiles WHERE user_id IN ({})", ids)
        sql.many(
            cur,
            "INSERT INTO rc_profiles (user_id, profile, updated_at) VALUES (?, ?, ?)",
            [(u, profiles[u], now) for u in ids],
        )
        sql.many(
            cur,
            "INSERT INTO rc_users (user_id, announced_at) VALUES (?, ?) "
            "ON CONFLICT (user_id) DO NOTHING",
            [(u, now) for u in ids],
        )
    for user in sorted(removed):
        pending = "SELECT nudge_id FROM rc_nudges WHERE user_id = ? AND status = ?"
        sql.execute(cur, f"DELETE FROM {jobs_table} WHERE id IN ({pending})", (user, PENDING))
        sql.execute(cur, f"DELETE FROM {jobs_table} WHERE id LIKE ?", (day_jobs_of(user),))
        sql.execute(
            cur,
            "UPDATE rc_nudges SET status = ? WHERE user_id = ? AND status = ?",
            (CANCELLED, user, PENDING),
        )
        for table in ("rc_profiles", "rc_users", "rc_user_states", "rc_handled_events"):
            sql.execute(cur, f"DELETE FROM {table} WHERE user_id = ?", (user,))


def set_status(sql: RawSql, cur: Any, ids: set[str], status: str) -> None:
    """Pending nudges among `ids` become `status` (cancelled, expired)."""
    sql.execute_in(
        cur,
        "UPDATE rc_nudges SET status = ? WHERE nudge_id IN ({}) AND status = ?",
        sorted(ids),
        (status,),
        (PENDING,),
    )


def forget_old(sql: RawSql, cur: Any, now: float) -> None:
    """Forget handled ids, and finished nudges and pending ones whose useful life ended
    long ago (no job sends them: a missed job marks its nudge expired, a deleted user's
    are cancelled)."""
    sql.execute(
        cur, "DELETE FROM rc_handled_events WHERE handled_at < ?", (now - EVENT_IDS_KEPT_S,)
    )
    sql.execute(
        cur,
        "DELETE FROM rc_nudges WHERE COALESCE(expires_at, due_at) < ? "
        "AND (status <> ? OR expires_at IS NOT NULL)",
        (now - NUDGES_KEPT_S, PENDING),
    )
