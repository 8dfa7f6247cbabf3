"""The handler's repository and the batch's unit of work, over the store.

A batch of inbound messages is written in ONE transaction: states, handled event ids,
outbox rows, APScheduler job rows, PUBACK marks and housekeeping together, so an event is
acknowledged to the broker only once all of its decisions are stored, and a kill -9 at any
point leaves either all of them or none. The worker thread is the only writer of batches;
start-up's user reconciliation (`queries.Members`) runs before it starts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Engine

from ..jobs import JOBS_TABLE, JobRow, is_day_job
from ..models import Nudge, Profile, UserState
from .queries import Queries
from .schema import (
    CANCELLED,
    EVENT_IDS_KEPT_S,
    EXPIRED,
    NUDGES_KEPT_S,
    PENDING,
    PUBLISHED,
    decode_state,
    encode_state,
    ts,
)
from .sql import CHUNK, RawSql, marks


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
        self.sql = RawSql(engine)
        self.queries = Queries(engine, self.sql)

    # -- Repository protocol (message_handler.Repository)

    def load(self, user: str) -> UserState:
        if user in self._staged_states:
            return self._staged_states[user]
        if user not in self._states:
            rows = self.sql.query("SELECT state FROM rc_user_states WHERE user_id = ?", (user,))
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
        rows = self.sql.query("SELECT state FROM rc_user_states WHERE user_id = ?", (user,))
        return decode_state(rows[0][0]) if rows and rows[0][0] else UserState()

    def prefetch_seen(self, keys: Iterable[tuple[str, str]]) -> None:
        """Read which of these (user, event id) pairs were handled, in one query per 400."""
        todo = list(set(keys) - self._seen_checked)
        for i in range(0, len(todo), CHUNK):
            chunk = todo[i : i + CHUNK]
            users = sorted({u for u, _ in chunk})
            events = sorted({e for _, e in chunk})
            rows = self.sql.query(
                f"SELECT user_id, event_id FROM rc_handled_events WHERE user_id IN "
                f"({marks(len(users))}) AND event_id IN ({marks(len(events))})",
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
        rows = self.sql.query(
            "SELECT 1 FROM rc_handled_events WHERE user_id = ? AND event_id = ?", (user, event_id)
        )
        return bool(rows)

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
            cur = self.sql.cursor()
            self.sql.execute(cur, "DELETE FROM rc_meta WHERE key = ?", ("probe",))
            self.sql.execute(cur, "INSERT INTO rc_meta (key, value) VALUES (?, ?)", ("probe", "1"))
            cur.close()
            self.sql.commit()
            return True
        except Exception:
            self.sql.abort()
            return False

    def end_reads(self) -> None:
        """Between batches: end the read transaction a driver may have opened."""
        self.sql.end_reads()

    def resolve_staged(self) -> set[str]:
        """Drop staged nudges that already went out; returns their ids. A cancelled or
        expired one planned again (a visit that went on after a geofence flap, a deferral)
        is planned again. One query per batch for what `published` asks per event; it also
        tells `_write` which staged ids are new (plain inserts)."""
        ids = list(self._staged_nudges)
        rows = self.sql.select_in(
            "SELECT nudge_id, status FROM rc_nudges WHERE nudge_id IN ({})", ids
        )
        self._existing = {r[0]: r[1] for r in rows}
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
        cur = self.sql.cursor()
        try:
            self._write(cur, now)
            cur.close()
            self.sql.commit()
        except BaseException:
            self.sql.abort()
            raise
        self._states.update(self._staged_states)
        self._state_rows.update(self._staged_states)
        self._clear()

    def rollback(self) -> None:
        """Forget everything staged (the batch failed; its messages stay unacknowledged)."""
        self.sql.abort()
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
            self.sql.many(
                cur,
                "UPDATE rc_user_states SET state = ?, updated_at = ? WHERE user_id = ?",
                [(encode_state(self._staged_states[u]), now, u) for u in old],
            )
            if old and cur.rowcount != len(old):  # a row we thought was there is not
                new += old
            if new:
                self.sql.execute_in(cur, "DELETE FROM rc_user_states WHERE user_id IN ({})", new)
                self.sql.many(
                    cur,
                    "INSERT INTO rc_user_states (user_id, state, updated_at) VALUES (?, ?, ?)",
                    [(u, encode_state(self._staged_states[u]), now) for u in new],
                )
        # A message's first delivery may reuse the id of an old one (a packet id that came
        # round again, see inbound.derived_event_id): the row is already there.
        self.sql.many(
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
        self.sql.execute_in(cur, f"DELETE FROM {JOBS_TABLE} WHERE id IN ({{}})", sorted(gone))
        self.sql.execute_in(
            cur,
            "UPDATE rc_nudges SET status = ? WHERE nudge_id IN ({}) AND status = ?",
            sorted(self._staged_cancel),
            (CANCELLED,),
            (PENDING,),
        )
        self.sql.execute_in(
            cur,
            "DELETE FROM rc_nudges WHERE nudge_id IN ({}) AND status <> ?",
            replaced,
            (),
            (PUBLISHED,),
        )
        self.sql.many(
            cur,
            "INSERT INTO rc_nudges (nudge_id, user_id, due_at, expires_at, status, payload, nudge) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [self._outbox_values(n) for n in self._staged_nudges.values()],
        )
        self.sql.many(
            cur,
            f"INSERT INTO {JOBS_TABLE} (id, next_run_time, job_state) VALUES (?, ?, ?)",
            [(j.job_id, j.next_run_time, j.state) for j in self._staged_jobs.values()],
        )
        self.sql.many(
            cur,
            "UPDATE rc_nudges SET status = ?, published_at = ? WHERE nudge_id = ? AND status = ?",
            [(PUBLISHED, at, i, PENDING) for i, at in self._staged_published.items()],
        )
        self.sql.execute_in(
            cur,
            "UPDATE rc_nudges SET status = ? WHERE nudge_id IN ({}) AND status = ?",
            sorted(self._staged_expired),
            (EXPIRED,),
            (PENDING,),
        )
        if self._staged_prune is not None:
            self._prune(cur, self._staged_prune)
        if self._staged_meta:
            self.sql.execute_in(
                cur, "DELETE FROM rc_meta WHERE key IN ({})", sorted(self._staged_meta)
            )
            self.sql.many(
                cur,
                "INSERT INTO rc_meta (key, value) VALUES (?, ?)",
                sorted(self._staged_meta.items()),
            )

    def _prune(self, cur: Any, now: float) -> None:
        self.sql.execute(
            cur, "DELETE FROM rc_handled_events WHERE handled_at < ?", (now - EVENT_IDS_KEPT_S,)
        )
        # Finished rows, and pending ones whose useful life ended long ago (no job sends
        # them: a missed job marks its nudge expired, a deleted user's are cancelled).
        self.sql.execute(
            cur,
            "DELETE FROM rc_nudges WHERE COALESCE(expires_at, due_at) < ? "
            "AND (status <> ? OR expires_at IS NOT NULL)",
            (now - NUDGES_KEPT_S, PENDING),
        )

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

    def stage_meta(self, key: str, value: str) -> None:
        """A fact about the service itself, written with the next commit."""
        self._staged_meta[key] = value
