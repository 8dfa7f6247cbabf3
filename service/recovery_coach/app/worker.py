"""The one worker thread: one event's path from the socket to `publish`, top to bottom
(profiles and Apple Health exports are read in intake.py; what a commit sets off is
`Effects`, at the end of this file).

    pump the socket -> take a batch from the queue -> rate limits -> parse -> dedupe
    -> decide (coach) -> place what the batch left staged: a job row, or due now (its
    user's state names it sent) -> ONE commit -> publish what is due now -> acknowledge
    the messages -> wake APScheduler if a job is due before it wakes

A message is acknowledged only after its decisions are committed, so a crash before the
commit means redelivery, and a redelivered event is recognised by its id and adds nothing.
`_decide` changes nothing outside the store's staging, so a failed commit can simply be
tried again (retry.py).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import assert_never

from recovery_coach.app.announcer import Announcer
from recovery_coach.app.health import Health
from recovery_coach.app.intake import Intake
from recovery_coach.app.message_handler import MessageHandler, Outcome
from recovery_coach.app.outbox import Outbox
from recovery_coach.app.people import People
from recovery_coach.app.rate_limit import RateLimiter
from recovery_coach.app.retry import Retrying
from recovery_coach.app.work import (
    Announce,
    AnnounceMore,
    Batch,
    Connected,
    DayStart,
    Fire,
    Housekeeping,
    Missed,
    PubAck,
    Sweep,
    Work,
)
from recovery_coach.contract.config import RateLimitConfig
from recovery_coach.contract.inbound import Accepted, Refused
from recovery_coach.contract.topics import Topics
from recovery_coach.contract.transport import Inbound, Transport
from recovery_coach.core.backoff import Backoff
from recovery_coach.core.coach import next_day_start
from recovery_coach.core.models import Nudge, Profile, dedupe_key
from recovery_coach.jobs.rows import JobTimer
from recovery_coach.store import SqlRepository

log = logging.getLogger(__name__)

MAX_BATCH = 1000
IDLE_WAIT = 0.01  # seconds the worker waits on the socket when it has nothing to do
IMMEDIATE = timedelta(milliseconds=50)  # due this soon: publish after the commit, no job
DRAIN_SECONDS = 2.0  # a clean stop waits this long for the PUBACKs of what it published
# Housekeeping's sweep takes due nudges with no job only once this late: sooner, their Fire
# is usually still on its way from APScheduler (a copy would be dropped, but costs a read).
SWEEP_AFTER_S = 5.0


@dataclass(kw_only=True, eq=False)
class Worker:
    """The loop and the batch. `clock` is the wall clock live and a virtual one in
    `simulate`; `on_refused` sees every refusal (those without a user have no error topic)."""

    transport: Transport
    topics: Topics
    repo: SqlRepository
    handler: MessageHandler
    scheduler: JobTimer
    profiles: dict[str, Profile]
    outbox: Outbox
    announcer: Announcer
    health: Health
    rate_limit: RateLimitConfig
    work: queue.SimpleQueue[Work]
    stopping: threading.Event
    diagnostics: Callable[[bool], None]
    people: People
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    on_refused: Callable[[Refused], None] = lambda _r: None
    limiter: RateLimiter = field(init=False)
    retrying: Retrying = field(init=False)
    intake: Intake = field(init=False)
    effects: Effects = field(init=False)

    def __post_init__(self) -> None:
        self.limiter = RateLimiter(self.rate_limit)
        # The two helpers take the worker's own parts, field by field of the same name.
        self.intake = Intake(**{f.name: getattr(self, f.name) for f in fields(Intake)})
        self.effects = Effects(**{f.name: getattr(self, f.name) for f in fields(Effects)})
        self.retrying = Retrying(
            self._decide,
            self.repo,
            self.transport,
            self.topics,
            self.profiles,
            self.health,
            self.stopping,
            self.diagnostics,
            self.clock,
        )

    # ------------------------------------------------------------ the loop

    def run(self) -> None:
        """Network I/O and decisions in one thread: read, decide, commit, ack, publish.
        Nothing ends this loop but a stop: an unexpected failure of one turn is logged and
        the next turn goes on (after a pause while failures repeat)."""
        backoff = Backoff()
        while not self.stopping.is_set():
            try:
                self._turn()
            except Exception as exc:
                self.health.error(f"internal error: {exc!r}"[:300])
                log.exception("the worker's turn failed; it goes on")
                self.stopping.wait(backoff.next())
            else:
                backoff.reset()
        self.drain()

    def _turn(self) -> None:
        # Jobs and timers put work on the queue from their own threads; waiting at most
        # IDLE_WAIT in select() bounds how late they are seen.
        self.transport.pump(0.0 if not self.work.empty() else IDLE_WAIT)
        # Due nudges the store could not read are fired again when their retry is due.
        batch: list[Work] = list(self.outbox.take_held(time.monotonic()))
        while len(batch) < MAX_BATCH:
            try:
                batch.append(self.work.get_nowait())
            except queue.Empty:
                break
        if batch:
            self.safely(batch)
        if self.announcer.holding:  # changed states: out when idle (announcer.py)
            self.announcer.release(self.clock(), idle=not batch)

    def drain(self) -> None:
        """Stopping: wait up to DRAIN_SECONDS for the PUBACKs of what was published and
        commit them, so a clean stop sends nothing twice after the restart. Nothing else is
        taken: unacknowledged messages come back, and due nudges are sent at the next start.
        States held back go out first (they are retained: the last one must stand)."""
        self.announcer.release(self.clock(), idle=True, everything=True)
        until = time.monotonic() + DRAIN_SECONDS
        inflight = self.outbox.inflight
        while inflight and self.transport.is_connected() and time.monotonic() < until:
            self.transport.pump(0.05)
            acks: list[Work] = []
            while True:
                try:
                    item = self.work.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, PubAck):
                    acks.append(item)
            if acks:
                self.safely(acks)
        if inflight:
            log.warning("stopped with %d nudge(s) awaiting PUBACK", len(inflight))

    def safely(self, batch: list[Work]) -> None:
        """Decide and commit the batch, then act on it. A failed commit is retried by itself
        (the store may be locked, full or restarting); a message that fails alone while the
        store works is refused and acknowledged, so it never blocks the others."""
        batch, limited = self.limiter.split(batch, self.topics, self.profiles, self.clock())
        done = [limited] if limited.acks else []
        failing = self.health.store_error is not None
        done += self.retrying.commit(batch)
        if failing and self.health.store_error is None:
            self.work.put(Sweep())  # jobs may have fired while it failed: their nudges wait
        for b in done:
            try:
                self.effects.apply(b)
            except Exception as exc:  # decisions are stored: the outbox sends them later
                self.health.error(f"internal error after a commit: {exc!r}")
                log.exception("publishing after a commit failed")

    # ------------------------------------------------------------ deciding

    def _decide(self, batch: list[Work]) -> Batch:
        """Every decision of the batch, written in one transaction. Nothing outside the
        store's staging changes here but who the people are, which is undone if the batch
        fails, so a failed attempt can simply be made again."""
        b = Batch(self.clock())
        try:
            return self._decide_into(b, batch)
        except BaseException:
            for user, before in reversed(b.undo):
                self.people.undo(user, before)
            raise

    def _decide_into(self, b: Batch, batch: list[Work]) -> Batch:
        # Parse first, so that one query tells which events were already handled; what
        # follows a profile may be for the person it sets up, so it is parsed after it.
        parsed: dict[int, Accepted | Refused] = {}
        for i, item in enumerate(batch):
            if isinstance(item, Inbound) and self.topics.profile_user(item.topic) is not None:
                break
            if (
                isinstance(item, Inbound)
                and not item.retain
                and not Topics.is_ha_status(item.topic)
                and self.topics.health_auto_export_user(item.topic) is None
            ):
                parsed[i] = self.intake.parse(item, b.now)
        seen = [(p.user, dedupe_key(p.event)) for p in parsed.values() if isinstance(p, Accepted)]
        seen += [  # at start every user's day may begin: one query, not one per user
            (w.user, dedupe_key(self.handler.day_event(w.user, b.now)))
            for w in batch
            if isinstance(w, DayStart) and w.user in self.profiles
        ]
        self.repo.prefetch_seen(seen)
        outcomes: list[Outcome] = []
        for i, item in enumerate(batch):
            match item:
                case Inbound():
                    b.acks.append((item.mid, item.qos))
                    if Topics.is_ha_status(item.topic):
                        b.ha_online |= item.payload.strip() == b"online"
                    elif (person := self.topics.profile_user(item.topic)) is not None:
                        outcomes.extend(self.intake.profile(person, item, b))
                    elif item.retain:
                        b.retained.append(item.topic)
                    elif (owner := self.topics.health_auto_export_user(item.topic)) is not None:
                        outcomes.extend(self.intake.health_auto_export(owner, item, b.now))
                    else:
                        p = parsed.get(i) or self.intake.parse(item, b.now)
                        outcomes.append(self.handler.handle_parsed(p, b.now))
                case DayStart(user=user):
                    if user in self.profiles:
                        outcomes.append(self.handler.day_started(user, b.now))
                        at = next_day_start(self.profiles[user], b.now)
                        self.repo.uow.job(self.scheduler.day_row(user, at))
                        b.jobs_added = True
                case Fire():
                    b.fire.append(item)
                case PubAck(mid=mid):
                    if (acked := self.outbox.puback(mid)) is not None:
                        b.published.append(mid)
                        nudge, restated = acked
                        if restated:
                            b.changed.add(nudge.user)
                    else:  # not a nudge: perhaps the last message of an announcement
                        self.announcer.acked(mid)
                case Missed(job_id=job_id):
                    self.outbox.missed(job_id)
                case Connected(session_present=present):
                    # A resumed session means the broker kept our retained messages too: only
                    # what changed goes out again, unless the announcement itself changed.
                    full = not present or not self.announcer.announced_as_now()
                    b.announce = bool(b.announce) or full
                    b.fire.extend(self.outbox.overdue())
                case Announce():
                    b.announce = True
                case AnnounceMore():
                    b.announce_more = True
                case Housekeeping():
                    if self.topics.shard.index == 0:  # the same for every shard: one prunes
                        self.repo.uow.prune(time.time())
                    self.limiter.forget_full(b.now.timestamp())
                    b.diagnostics = True
                    # Nothing stays stuck: a due nudge whose job fired when nothing could
                    # take it (a failure between the job and its publish) goes out now.
                    b.fire.extend(self.outbox.overdue(SWEEP_AFTER_S))
                case Sweep():
                    b.fire.extend(self.outbox.overdue())
                case _:
                    assert_never(item)
        for out in outcomes:
            self._absorb(out, b)
        # What the batch leaves staged is what it decided: a nudge planned by one event and
        # cancelled or reworded by a later one in the same batch goes out as the last one
        # left it, or not at all. Nudges that already went out are never sent again (stable
        # ids): one query for the whole batch, then job rows for the rest.
        if outcomes:
            self.repo.uow.resolve()
        for nudge in self.repo.uow.staged_nudges():
            if nudge.due_at <= b.now + IMMEDIATE:
                b.immediate.append(nudge)
            else:
                self.repo.uow.job(self.scheduler.nudge_row(nudge))
                b.jobs_added = True
        self._record_sent(b)
        b.earliest_job = self.repo.uow.earliest_job()
        if self.repo.uow.pending():
            self.repo.uow.commit()
            b.payloads = self.repo.uow.written_payloads
        else:
            self.repo.end_batch()
        return b

    def _absorb(self, out: Outcome, b: Batch) -> None:
        """Count the outcome; its nudges are staged already (placed once the batch is decided)."""
        if out.refused is not None:
            b.refused += out.refused.level == "error"
            b.refusals.append(out.refused)
            return
        if out.duplicate:
            b.duplicates += 1
            log.debug("event %s for %s already handled", out.event_id, out.user)
            return
        b.handled += 1
        b.refusals.extend(out.warnings)
        b.cancelled |= bool(out.cancelled)
        if out.user is not None:
            b.changed.add(out.user)

    def _record_sent(self, b: Batch) -> None:
        """The nudges due now are published right after the commit: the states committed
        with them already name them sent (and the last nudge), so their PUBACKs only mark the
        outbox, and the user's state goes out with the nudges. With the broker away they
        wait in the outbox, and their PUBACKs record them as the fired ones' do."""
        if not b.immediate or not self.transport.is_connected():
            return
        b.recorded = True
        per_user: dict[str, list[Nudge]] = {}
        for nudge in b.immediate:
            per_user.setdefault(nudge.user, []).append(nudge)
        for user, nudges in per_user.items():
            if user in self.profiles:
                self.repo.uow.state(user, self.handler.nudge_published(user, *nudges))


# ---------------------------------------------------------------- after the commit


@dataclass(kw_only=True, eq=False)
class Effects:
    """What a committed batch makes happen: publish, acknowledge, wake, announce, refuse."""

    transport: Transport
    topics: Topics
    scheduler: JobTimer
    profiles: dict[str, Profile]
    outbox: Outbox
    announcer: Announcer
    health: Health
    diagnostics: Callable[[bool], None]
    on_refused: Callable[[Refused], None]

    def apply(self, b: Batch) -> None:
        h = self.health
        h.events_handled += b.handled
        h.events_refused += b.refused
        h.duplicates += b.duplicates
        if b.handled:
            h.last_event_at = time.time()
        self.outbox.stored(b.published)
        # What the user is waiting for goes first; acks and the scheduler's wake-up (its
        # thread then queries the job table, competing for the GIL) come after.
        for nudge in b.immediate:
            if nudge.user in self.profiles:  # else removed later in the batch
                self.outbox.publish(
                    nudge, b.now, b.payloads.get(nudge.nudge_id), recorded=b.recorded
                )
        for mid, qos in b.acks:
            self.transport.ack(mid, qos)
        self.scheduler.committed(b.earliest_job if b.jobs_added else None, cancelled=b.cancelled)
        for topic in b.retained:
            # A retained event would be applied again at every reconnect (a retained
            # {"grams": 25} adds 25 g per restart): events are never retained.
            log.warning(
                "ignored a retained message on %s: events must not be retained "
                "(clear it with an empty retained message)",
                topic,
            )
        for r in b.refusals:
            self._refusal(r)
        if b.ha_online:
            self.announcer.later()
        if b.announce_more:
            self.announcer.taken()
        if b.fire:
            self.outbox.fire(b.fire, b.now)
        if b.profiled or b.removed:  # their discovery and state, or their removal
            self.announcer.added_users |= b.profiled
            self.announcer.removed_users |= b.removed
            b.announce = bool(b.announce)
            b.diagnostics = True
        if b.announce is not None:
            self.announcer.announce(full=b.announce)
        for user in b.changed:
            # A user whose fired nudges await the PUBACK that records them gets one state,
            # after the last one (it names the last nudge), not one now and one again.
            if not self.outbox.inflight.waiting(user):
                self.announcer.state(user, b.now)
        if b.diagnostics or b.handled:
            self.diagnostics(b.diagnostics)  # after events: rate-limited
        if self.announcer.pending:
            self.announcer.some()

    def _refusal(self, r: Refused) -> None:
        if r.level == "warning":
            log.warning("a message on %s was handled, with a warning: %s", r.topic, r.reason)
        else:
            log.warning("refused a message on %s: %s", r.topic, r.reason)
            self.health.error(r.reason)
        self.on_refused(r)
        if r.user is not None and "+" not in r.user and "#" not in r.user:
            self.transport.publish(self.topics.error(r.user), json.dumps(r.payload()), qos=1)
