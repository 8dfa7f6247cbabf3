"""The handler's repository over the store: reads, and decisions staged in the batch's
unit of work (unit_of_work.py), which is the only writer."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import Engine

from recovery_coach.contract.shards import WHOLE, Shard
from recovery_coach.core.models import Nudge, Profile, UserState
from recovery_coach.store.checkpoint import Checkpointer
from recovery_coach.store.queries import Queries
from recovery_coach.store.schema import decode_state
from recovery_coach.store.sql import CHUNK, RawSql, marks
from recovery_coach.store.unit_of_work import UnitOfWork


class SqlRepository:
    """The handler's repository (message_handler.Repository) over the store.

    The worker thread is the only writer, so states are cached in memory (write-through)
    and a batch sees its own staged writes.
    """

    def __init__(
        self,
        engine: Engine,
        profiles: dict[str, Profile],
        shard: Shard = WHOLE,
        fence: Callable[[RawSql, Any], None] | None = None,
        checkpointer: Checkpointer | None = None,
    ) -> None:
        self.engine = engine
        self.profiles = profiles
        self.sql = RawSql(engine, checkpointer)
        self.queries = Queries(engine, self.sql, shard)
        self.uow = UnitOfWork(self.sql, profiles, shard.jobs_table, fence)
        self.uow.on_commit = self._states_committed
        self._states: dict[str, UserState] = {}
        # Per batch: which (user, event id) pairs the store holds, read with one query per
        # batch (prefetch_seen) instead of one query per event.
        self._seen_checked: set[tuple[str, str]] = set()
        self._seen_known: set[tuple[str, str]] = set()

    def load(self, user: str) -> UserState:
        if user in self.uow.states:
            return self.uow.states[user]
        if user not in self._states:
            text = self._stored_state(user)
            self._states[user] = decode_state(text) if text else UserState()
            if text:
                self.uow.state_rows.add(user)
        return self._states[user]

    def peek(self, user: str) -> UserState:
        """The user's state, without keeping it in the cache (announcing 100,000 users)."""
        if user in self.uow.states:
            return self.uow.states[user]
        if user in self._states:
            return self._states[user]
        text = self._stored_state(user)
        return decode_state(text) if text else UserState()

    def _stored_state(self, user: str) -> str | None:
        rows = self.sql.query("SELECT state FROM rc_user_states WHERE user_id = ?", (user,))
        return rows[0][0] if rows else None

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
        if key in self.uow.events or key in self._seen_known:
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
        self.uow.decision(user, event_id, state, schedule, cancel)

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

    def end_batch(self) -> None:
        """Between batches: forget what this batch read, end a driver's read transaction."""
        self._seen_checked.clear()
        self._seen_known.clear()
        self.sql.end_reads()

    def forget_cache(self) -> None:
        """After a failed batch: what the store holds is read again."""
        self._states.clear()
        self.uow.state_rows.clear()
        self._seen_checked.clear()
        self._seen_known.clear()

    def _states_committed(self, states: dict[str, UserState], removed: set[str]) -> None:
        self._states.update(states)
        for user in removed:
            self._states.pop(user, None)
        self._seen_checked.clear()
        self._seen_known.clear()
