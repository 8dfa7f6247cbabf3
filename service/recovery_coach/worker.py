"""The one worker thread: one event's path from the socket to `publish`, top to bottom.

    pump the socket -> take a batch from the queue -> rate limits -> parse -> dedupe
    -> decide (coach) -> stage jobs and outbox rows -> ONE commit -> publish what is due
    now -> acknowledge the messages -> wake APScheduler if a job is due before it wakes

A message is acknowledged only after its decisions are committed, so a crash before the
commit means redelivery, and a redelivered event is recognised by its id and adds nothing.
`decide` changes nothing outside the store's staging, so a failed commit can simply be
tried again (`commit`): at once, then with back-off while the store refuses writes, then
one message at a time to find the one that fails alone.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import assert_never

from . import jobs
from .announcer import Announcer
from .coach import next_day_start
from .config import RateLimitConfig
from .health import Health
from .inbound import Accepted, Refused
from .message_handler import MessageHandler, Outcome
from .models import Nudge, Profile, dedupe_key
from .mqtt_link import Inbound
from .outbox import Outbox
from .rate_limit import RateLimiter
from .store import SqlRepository
from .topics import Topics
from .transport import Transport
from .work import (
    Announce,
    AnnounceMore,
    Connected,
    DayStart,
    Fire,
    Housekeeping,
    Missed,
    PubAck,
    Work,
)

log = logging.getLogger(__name__)

MAX_BATCH = 1000
IDLE_WAIT = 0.01  # seconds the worker waits on the socket when it has nothing to do
IMMEDIATE = timedelta(milliseconds=50)  # due this soon: publish after the commit, no job
DRAIN_SECONDS = 2.0  # a clean stop waits this long for the PUBACKs of what it published
RETRY_FIRST_S, RETRY_MAX_S = 1.0, 30.0  # a failing store is retried this often


@dataclass
class Batch:
    """One batch's decisions, once committed: what to publish, acknowledge and count."""

    now: datetime
    acks: list[tuple[int, int]] = field(default_factory=list)
    refusals: list[Refused] = field(default_factory=list)
    immediate: list[Nudge] = field(default_factory=list)  # due now: published at once
    fire: list[Fire] = field(default_factory=list)
    published: list[int] = field(default_factory=list)  # mids whose PUBACK is now stored
    changed: set[str] = field(default_factory=set)  # users whose state changed
    retained: list[str] = field(default_factory=list)  # topics of ignored retained events
    payloads: dict[str, str] = field(default_factory=dict)  # nudge JSON as stored
    handled: int = 0
    refused: int = 0
    duplicates: int = 0
    cancelled: bool = False
    jobs_added: bool = False
    earliest_job: float | None = None
    announce: bool | None = None  # True: everything; False: only what changed
    announce_more: bool = False
    ha_online: bool = False
    diagnostics: bool = False


class Worker:
    def __init__(
        self,
        *,
        transport: Transport,
        topics: Topics,
        repo: SqlRepository,
        handler: MessageHandler,
        scheduler: jobs.Scheduler,
        profiles: dict[str, Profile],
        outbox: Outbox,
        announcer: Announcer,
        health: Health,
        rate_limit: RateLimitConfig,
        work: queue.SimpleQueue[Work],
        stopping: threading.Event,
        diagnostics: Callable[[bool], None],
    ) -> None:
        self.transport = transport
        self.topics = topics
        self.repo = repo
        self.handler = handler
        self.scheduler = scheduler
        self.profiles = profiles
        self.outbox = outbox
        self.announcer = announcer
        self.health = health
        self.rate_limit = rate_limit
        self.limiter = RateLimiter(rate_limit.per_minute, rate_limit.burst)
        self.queue = work
        self.stopping = stopping
        self.diagnostics = diagnostics
        self._wake_by: float | None = None  # APScheduler wakes by then on its own

    # ------------------------------------------------------------ the loop

    def run(self) -> None:
        """Network I/O and decisions in one thread: read, decide, commit, ack, publish."""
        while not self.stopping.is_set():
            # Jobs and timers put work on the queue from their own threads; waiting at most
            # IDLE_WAIT in select() bounds how late they are seen.
            self.transport.pump(0.0 if not self.queue.empty() else IDLE_WAIT)
            batch: list[Work] = []
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            if batch:
                self.safely(batch)
        self.drain()

    def drain(self) -> None:
        """Stopping: wait up to DRAIN_SECONDS for the PUBACKs of what was published and
        commit them, so a clean stop sends nothing twice after the restart. Nothing else is
        taken: unacknowledged messages come back, and due nudges are sent at the next start."""
        until = time.monotonic() + DRAIN_SECONDS
        inflight = self.outbox.inflight
        while inflight and self.transport.is_connected() and time.monotonic() < until:
            self.transport.pump(0.05)
            acks: list[Work] = []
            while True:
                try:
                    item = self.queue.get_nowait()
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
        batch, limited = self._rate_limited(batch)
        done = [limited] if limited.acks else []
        done += self.commit(batch)
        for b in done:
            try:
                self._after_commit(b)
            except Exception as exc:  # decisions are stored: the outbox sends them later
                self.health.error(f"internal error after a commit: {exc!r}")
                log.exception("publishing after a commit failed")

    # ------------------------------------------------------------ committing, with retries

    def commit(self, batch: list[Work]) -> list[Batch]:
        """The batch decided and committed, with back-off while the store fails."""
        delay = RETRY_FIRST_S
        failed_while_writable = 0
        while batch:
            try:
                b = self._decide(batch)
                if self.health.store_error is not None:
                    self.health.store_error = None
                    log.warning("the store works again: the held batch is committed")
                    b.diagnostics = True
                return [b]
            except Exception as exc:
                self.repo.rollback()
                self.repo.forget_cache()
                failure = f"{type(exc).__name__}: {exc}"
            if self.repo.writable():
                # Once more as it is (a dropped connection or a lock that timed out passes);
                # failing again while the store takes writes, it is one of the messages.
                failed_while_writable += 1
                if failed_while_writable == 1:
                    log.warning("a batch of %d failed (%s): trying it again", len(batch), failure)
                    continue
                if len(batch) > 1:
                    return self._one_by_one(batch)
                return [self._poison(batch[0], failure)]
            if self.health.store_error is None:
                self.health.store_error = failure
                self.diagnostics(True)  # status says so while the batch is held
                log.error(
                    "the store cannot take a batch of %d (%s): its messages are held "
                    "unacknowledged and retried (1 s doubling to %.0f s)",
                    len(batch),
                    failure,
                    RETRY_MAX_S,
                )
            self.health.error(f"store error: {failure}")
            if not self._pump_for(delay):
                return []  # stopping: the held messages come back at the next start
            delay = min(delay * 2, RETRY_MAX_S)
        return []

    def _one_by_one(self, batch: list[Work]) -> list[Batch]:
        """Each item in a transaction of its own, to find the one that fails the batch."""
        log.warning("a batch of %d failed while the store works: retrying one by one", len(batch))
        done: list[Batch] = []
        for item in batch:
            done += self.commit([item])
        return done

    def _poison(self, item: Work, failure: str) -> Batch:
        """A message that fails alone while the store works: refused and acknowledged."""
        b = Batch(datetime.now(UTC))
        log.error("%s fails on its own (%s): dropped", type(item).__name__, failure)
        if isinstance(item, Inbound):
            b.refused += 1
            b.acks.append((item.mid, item.qos))
            user = self.topics.user_of(item.topic)
            b.refusals.append(
                Refused(
                    user if user in self.profiles else None,
                    item.topic,
                    "the service failed on this message and dropped it; the log has the "
                    "details (please report it)",
                )
            )
        self.health.error(f"dropped a message that fails alone: {failure}")
        return b

    def _pump_for(self, seconds: float) -> bool:
        """Keep the connection alive for `seconds`; False when the service is stopping."""
        until = time.monotonic() + seconds
        while not self.stopping.is_set():
            left = until - time.monotonic()
            if left <= 0:
                return True
            self.transport.pump(min(left, 0.1))
        return False

    def _rate_limited(self, batch: list[Work]) -> tuple[list[Work], Batch]:
        """Inbound messages beyond a user's rate limit, refused and acknowledged."""
        limited = Batch(datetime.now(UTC))
        now = time.monotonic()
        kept: list[Work] = []
        for item in batch:
            if isinstance(item, Inbound) and not Topics.is_ha_status(item.topic):
                user = self.topics.user_of(item.topic)
                if user in self.profiles and not self.limiter.take(user, now):
                    limited.acks.append((item.mid, item.qos))
                    limited.refused += 1
                    n = self.limiter.report(user, now)
                    if n:
                        limited.refusals.append(
                            Refused(
                                user,
                                item.topic,
                                f"too many messages: {n} refused (the limit is "
                                f"{self.rate_limit.per_minute} a minute after a burst "
                                f"of {self.rate_limit.burst}; rate_limit in the config)",
                            )
                        )
                    continue
            kept.append(item)
        return kept, limited

    # ------------------------------------------------------------ deciding

    def _decide(self, batch: list[Work]) -> Batch:
        """Every decision of the batch, written in one transaction. Nothing outside the
        store's staging changes here, so a failed attempt can simply be made again."""
        b = Batch(datetime.now(UTC))
        # Parse first, so that one query tells which events were already handled.
        parsed: dict[int, Accepted | Refused] = {}
        for i, item in enumerate(batch):
            if (
                isinstance(item, Inbound)
                and not item.retain
                and not Topics.is_ha_status(item.topic)
            ):
                parsed[i] = self.handler.parse(
                    item.topic, item.payload, b.now, packet_id=item.mid, redelivered=item.dup
                )
        self.repo.prefetch_seen(
            (p.user, dedupe_key(p.event)) for p in parsed.values() if isinstance(p, Accepted)
        )
        outcomes: list[Outcome] = []
        for i, item in enumerate(batch):
            match item:
                case Inbound():
                    b.acks.append((item.mid, item.qos))
                    if Topics.is_ha_status(item.topic):
                        b.ha_online |= item.payload.strip() == b"online"
                    elif item.retain:
                        b.retained.append(item.topic)
                    else:
                        outcomes.append(self.handler.handle_parsed(parsed[i], b.now))
                case DayStart(user=user):
                    if user in self.profiles:
                        outcomes.append(self.handler.day_started(user, b.now))
                        at = next_day_start(self.profiles[user], b.now)
                        self.repo.stage_job(self.scheduler.day_row(user, at))
                        b.jobs_added = True
                case Fire():
                    b.fire.append(item)
                case PubAck(mid=mid):
                    if self.outbox.inflight.get(mid) is not None:  # else not a nudge
                        b.published.append(mid)
                        whose = self.outbox.puback(mid)
                        if whose is not None:
                            b.changed.add(whose)
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
                    self.repo.stage_prune(time.time())
                    self.limiter.forget_full(time.monotonic())
                    b.diagnostics = True
                case _:
                    assert_never(item)
        # Nudges that already went out are never sent again (stable ids): one query for the
        # whole batch, then job rows for the rest.
        sent = self.repo.resolve_staged() if outcomes else set()
        for out in outcomes:
            if sent:
                out.scheduled = [n for n in out.scheduled if n.nudge_id not in sent]
            self._absorb(out, b)
        b.earliest_job = self.repo.earliest_staged_job()
        if self.repo.has_staged():
            self.repo.commit()
        else:
            self.repo.end_reads()
        b.payloads = self.repo.written_payloads
        return b

    def _absorb(self, out: Outcome, b: Batch) -> None:
        """Stage jobs for the outcome's nudges; the ones due now are published after the commit."""
        if out.refused is not None:
            b.refused += 1
            b.refusals.append(out.refused)
            return
        if out.duplicate:
            b.duplicates += 1
            log.debug("event %s for %s already handled", out.event_id, out.user)
            return
        b.handled += 1
        b.cancelled |= bool(out.cancelled)
        for nudge in out.scheduled:
            if nudge.due_at <= b.now + IMMEDIATE:
                b.immediate.append(nudge)
            else:
                self.repo.stage_job(self.scheduler.nudge_row(nudge))
                b.jobs_added = True
        if out.user is not None:
            b.changed.add(out.user)

    # ------------------------------------------------------------ after the commit

    def _after_commit(self, b: Batch) -> None:
        """What the committed batch makes happen: publish, acknowledge, wake, announce."""
        h = self.health
        h.events_handled += b.handled
        h.events_refused += b.refused
        h.duplicates += b.duplicates
        if b.handled:
            h.last_event_at = time.time()
        self.outbox.stored(b.published)
        if b.cancelled:
            # A cancelled job may be the one APScheduler would have woken for; if it
            # re-reads the table meanwhile it may sleep past jobs we did not wake it for.
            self._wake_by = None
        # What the user is waiting for goes first; acks and the scheduler's wake-up (its
        # thread then queries the job table, competing for the GIL) come after.
        for nudge in b.immediate:
            self.outbox.publish(nudge, b.now, b.payloads.get(nudge.nudge_id))
        for mid, qos in b.acks:
            self.transport.ack(mid, qos)
        if b.jobs_added and b.earliest_job is not None and self._wake_needed(b.earliest_job):
            self.scheduler.wakeup()
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
        if b.announce is not None:
            self.announcer.announce(full=b.announce)
        for user in b.changed:
            # A user with nudges still awaiting PUBACK gets one state, after the last one
            # (it names the last nudge), instead of one now and one again a moment later.
            if not self.outbox.inflight.waiting(user):
                self.announcer.state(user, b.now)
        if b.diagnostics or b.handled:
            self.diagnostics(b.diagnostics)  # after events: rate-limited
        if self.announcer.pending:
            self.announcer.some()

    def _wake_needed(self, earliest: float) -> bool:
        """Whether APScheduler must be woken for jobs as early as `earliest` (epoch s).

        It wakes by itself at the run time it last read and then re-reads the table, so a
        job due after that time needs no wake-up; each wake-up costs it two queries that
        compete with the worker for the GIL (once per batch in a burst, otherwise).
        """
        wake_by = self._wake_by
        if wake_by is None or wake_by <= time.time() or earliest < wake_by:
            self._wake_by = earliest
            return True
        return False

    def _refusal(self, r: Refused) -> None:
        log.warning("refused a message on %s: %s", r.topic, r.reason)
        self.health.error(r.reason)
        if r.user is not None and "+" not in r.user and "#" not in r.user:
            self.transport.publish(self.topics.error(r.user), json.dumps(r.payload()), qos=1)
