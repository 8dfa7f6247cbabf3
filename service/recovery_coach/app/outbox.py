"""Nudges on their way out: published when due, tracked until the broker's PUBACK is stored.

The store's outbox table holds every nudge decided; this is the shell's side of it: what is
handed to paho and not yet acknowledged (paho resends those after a reconnect, so they must
not be published again by us), and the publish itself, worded at the moment it goes out.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime

from recovery_coach.app.health import Health
from recovery_coach.app.message_handler import MessageHandler
from recovery_coach.app.work import Fire
from recovery_coach.contract.topics import Topics
from recovery_coach.contract.transport import Transport
from recovery_coach.core.backoff import Backoff
from recovery_coach.core.models import Nudge, Profile
from recovery_coach.jobs.rows import is_day_job
from recovery_coach.store import PENDING, OutboxRow, SqlRepository

log = logging.getLogger(__name__)


class InFlight:
    """Nudges handed to paho and awaiting PUBACK; bounded by what is on the wire: an entry
    leaves once its PUBACK's mark is committed (the row's status then says published).
    A nudge is `recorded` when the state committed before its publish already names it sent;
    the others change their user's state at their PUBACK."""

    def __init__(self) -> None:
        self._by_mid: dict[int, tuple[Nudge, bool]] = {}
        self._ids: set[str] = set()
        self._per_user: dict[str, int] = {}  # nudges not recorded, per user

    def add(self, mid: int, nudge: Nudge, *, recorded: bool = False) -> None:
        self._by_mid[mid] = (nudge, recorded)
        self._ids.add(nudge.nudge_id)
        if not recorded:
            self._per_user[nudge.user] = self._per_user.get(nudge.user, 0) + 1

    def get(self, mid: int) -> tuple[Nudge, bool] | None:
        return self._by_mid.get(mid)

    def done(self, mid: int) -> None:
        entry = self._by_mid.pop(mid, None)
        if entry is None:
            return
        nudge, recorded = entry
        self._ids.discard(nudge.nudge_id)
        if recorded:
            return
        left = self._per_user.pop(nudge.user, 1) - 1
        if left > 0:
            self._per_user[nudge.user] = left

    def holds(self, nudge_id: str) -> bool:
        return nudge_id in self._ids

    def waiting(self, user: str) -> bool:
        """Whether a nudge of `user` awaits the PUBACK that changes the user's state."""
        return user in self._per_user

    def __len__(self) -> int:
        return len(self._by_mid)


class Outbox:
    def __init__(
        self,
        transport: Transport,
        topics: Topics,
        repo: SqlRepository,
        handler: MessageHandler,
        profiles: dict[str, Profile],
        health: Health,
    ) -> None:
        self.transport = transport
        self.topics = topics
        self.repo = repo
        self.handler = handler
        self.profiles = profiles
        self.health = health
        self.inflight = InFlight()
        self._away_logged = False  # "broker away" said for this outage
        # Due nudges the store could not read or word when they fell due (a killed database
        # connection, a locked file): kept here and fired again with back-off, since their
        # jobs are gone. `retry_at` is when (monotonic); the worker takes them back then.
        self.held: dict[str, Fire] = {}
        self.retry_at: float | None = None
        self._backoff = Backoff()

    def publish(
        self, nudge: Nudge, now: datetime, payload: str | None = None, *, recorded: bool = False
    ) -> None:
        """Publish a nudge; `payload` is its JSON when the outbox already holds it, and
        `recorded` says the committed state already names it sent (InFlight)."""
        if not self.transport.is_connected():
            # Once per outage: the outbox holds them all and the connect sends them.
            if not self._away_logged:
                self._away_logged = True
                log.info("broker away: nudges wait in the outbox for the connection")
            log.debug("nudge %s for %s waits for the connection", nudge.nudge_id, nudge.user)
            return
        self._away_logged = False
        if payload is None:
            payload = json.dumps(nudge.payload(self.profiles[nudge.user].tz), ensure_ascii=False)
        expiry = None
        if nudge.expires_at is not None:
            expiry = int((nudge.expires_at - now).total_seconds())
        mid = self.transport.publish(
            self.topics.nudge(nudge.user), payload, qos=1, expiry_seconds=expiry
        )
        if mid is not None:
            self.inflight.add(mid, nudge, recorded=recorded)
            log.debug(  # at INFO this line cost more than deciding the nudge
                "nudge %s (%s %s) published for %s",
                nudge.nudge_id,
                nudge.rule,
                nudge.kind,
                nudge.user,
            )

    def fire(self, fire: list[Fire], now: datetime) -> None:
        """Publish the nudges whose time has come (one outbox read for all of them). A
        nudge fired twice (its job, a sweep) goes out once: one per id here, and the
        in-flight map and the row's status stop a later copy."""
        todo: dict[str, Fire] = {}
        for f in fire:
            if not self.inflight.holds(f.nudge_id):
                todo.setdefault(f.nudge_id, f)
        if not todo:
            return
        try:
            rows = self.repo.queries.outbox_many(list(todo))
            for nudge_id, f in list(todo.items()):
                self._fire_one(f, rows.get(nudge_id), now)
                del todo[nudge_id]
        except Exception as exc:  # the store failed: what is left is kept and tried again
            self._hold(list(todo.values()), exc)
            return
        if self.held:
            self._answered(fire)

    def _fire_one(self, f: Fire, row: OutboxRow | None, now: datetime) -> None:
        if row is None or row.status != PENDING or row.user_id not in self.profiles:
            return
        if row.expires_at is not None and row.expires_at <= now.timestamp():
            self.expire(f.nudge_id, f.user, "it expired before it could be sent")
            return
        # Worded now, against the user's day as it stands: "today", the protein logged
        # and this week's minutes are those of the moment it is read.
        worded = self.handler.word(row.nudge, now)
        if worded is None:
            self.expire(f.nudge_id, f.user, "it no longer applies")
            return
        self.publish(worded, now)

    def _hold(self, fires: list[Fire], exc: Exception) -> None:
        first = not self.held
        for f in fires:
            self.held[f.nudge_id] = f
        wait = self._backoff.next()
        self.retry_at = time.monotonic() + wait
        reason = f"{type(exc).__name__}: {exc}"[:300]
        self.health.nudges_waiting = len(self.held)
        self.health.error(f"due nudges wait for the store: {reason}")
        if first:
            log.warning(
                "%d due nudge(s) could not be read from the store (%s): kept and tried "
                "again, first in %.0f s",
                len(self.held),
                reason,
                wait,
            )
        else:
            log.debug("%d due nudge(s) still wait for the store", len(self.held))

    def _answered(self, fired: list[Fire]) -> None:
        """A fire went through: the nudges it held are done; the rest go at once."""
        for f in fired:
            self.held.pop(f.nudge_id, None)
        self.health.nudges_waiting = len(self.held)
        if self.held:
            self.retry_at = time.monotonic()
            return
        log.info("the store answers again: every due nudge it held up was sent")
        self._backoff.reset()
        self.retry_at = None

    def take_held(self, now: float) -> list[Fire]:
        """The held fires, when their retry is due (the worker puts them back in a batch)."""
        if self.retry_at is None or now < self.retry_at or not self.held:
            return []
        self.retry_at = None  # set again if they fail again
        return list(self.held.values())

    def overdue(self, late_by: float = 0.0) -> list[Fire]:
        """Pending nudges whose time has come (at least `late_by` seconds ago) but that no
        job will fire (down, broker away, the store failing when their job fired)."""
        return [
            Fire(r.user_id, r.nudge_id)
            for r in self.repo.queries.pending_without_job(due_by=time.time() - late_by)
            if not self.inflight.holds(r.nudge_id)
        ]

    def puback(self, mid: int) -> tuple[Nudge, bool] | None:
        """Stage the PUBACK's mark, and the user's state naming the nudge unless the state
        already does; returns the nudge and whether its user's state was staged, None if
        `mid` was no nudge. The in-flight entry goes in `stored`, after the commit."""
        entry = self.inflight.get(mid)
        if entry is None:
            return None
        nudge, recorded = entry
        self.repo.uow.published(nudge.nudge_id, time.time())
        if recorded or nudge.user not in self.profiles:
            return nudge, False
        self.repo.uow.state(nudge.user, self.handler.nudge_published(nudge.user, nudge))
        return nudge, True

    def stored(self, mids: list[int]) -> None:
        """These PUBACKs' marks are committed."""
        for mid in mids:
            if self.inflight.get(mid) is not None:
                self.health.nudges_published += 1
            self.inflight.done(mid)

    def missed(self, job_id: str) -> None:
        if is_day_job(job_id):
            return
        row = self.repo.queries.outbox(job_id)
        if row is not None and row.status == PENDING:
            self.expire(job_id, row.user_id, "its useful time passed while the service was down")

    def expire(self, nudge_id: str, user: str, why: str) -> None:
        self.health.nudges_expired += 1
        self.repo.uow.expired(nudge_id)
        log.info("nudge %s for %s dropped: %s", nudge_id, user, why)
