"""`recovery-coach run`: the composition root of the live service.

Threads: paho's network thread (callbacks only enqueue), APScheduler's scheduler and
executor threads (job functions only enqueue), and ONE worker thread that owns all writes.
The worker takes work in batches: it decides every inbound message of the batch, writes all
decisions in one transaction, and only then acknowledges the messages (manual ack) and
publishes what fell due. So a crash before the commit means redelivery, not loss, and a
redelivered event is recognised by its id and adds nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from . import __version__, discovery, jobs
from .coach import next_day_start, state_view
from .config import BrokerConfig, Config
from .embedded_broker import EmbeddedBroker, PortTakenError, port_free, speaks_mqtt
from .inbound import Accepted, Refused, split_topic
from .inflight import InFlight
from .log_format import setup_logging
from .message_handler import MessageHandler, Outcome
from .models import Nudge, dedupe_key
from .mqtt_link import Inbound, MqttLink
from .rate_limit import RateLimiter
from .store import PENDING, SqlRepository, make_engine
from .store_check import shown, store_problem

log = logging.getLogger(__name__)

MAX_BATCH = 1000
IDLE_WAIT = 0.01  # seconds the worker waits on the socket when it has nothing to do
ANNOUNCE_CHUNK = 200  # users' discovery and state per batch while announcing
SWITCH_INTERVAL = 0.0005  # seconds; Python's default is 0.005
IMMEDIATE = timedelta(milliseconds=50)  # due this soon: publish after the commit, no job
DRAIN_SECONDS = 2.0  # a clean stop waits this long for the PUBACKs of what it published
DIAGNOSTICS_EVERY = 2.0  # seconds: diagnostics after events at most this often
RETRY_FIRST_S, RETRY_MAX_S = 1.0, 30.0  # a failing store is retried this often
INBOUND = (
    "workout/completed",
    "gym/checkin",
    "gym/checkout",
    "cardio/planned",
    "protein/logged",
    "soreness",
    "nudge/+/ack",
    "nudge/+/snooze",
)


# ---------------------------------------------------------------- work items


@dataclass(frozen=True)
class Fire:
    user: str
    nudge_id: str


@dataclass(frozen=True)
class DayStart:
    user: str


@dataclass(frozen=True)
class Missed:
    job_id: str


@dataclass(frozen=True)
class PubAck:
    mid: int


@dataclass(frozen=True)
class Connected:
    session_present: bool


@dataclass(frozen=True)
class Announce:
    """Re-send discovery and states (Home Assistant came online)."""


@dataclass(frozen=True)
class AnnounceMore:
    """Publish the next chunk of discovery and states (an announce in progress)."""


@dataclass(frozen=True)
class Housekeeping:
    """Prune old ids and publish diagnostics."""


Work = (
    Inbound | Fire | DayStart | Missed | PubAck | Connected | Announce | AnnounceMore | Housekeeping
)


@dataclass
class Health:
    started_at: float = field(default_factory=time.time)
    events_handled: int = 0
    events_refused: int = 0
    duplicates: int = 0
    nudges_published: int = 0
    nudges_expired: int = 0
    last_event_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None


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


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat()


class Service:
    """The live service: MQTT in and out, durable scheduling, one writer thread."""

    def __init__(self, cfg: Config, broker: BrokerConfig) -> None:
        self.cfg = cfg
        self.base = cfg.base_topic
        self.profiles = cfg.profiles()
        self.engine = make_engine(cfg.store)
        self.repo = SqlRepository(self.engine, self.profiles)
        self.handler = MessageHandler(self.base, self.profiles, self.repo, filter_published=False)
        self.scheduler = jobs.Scheduler(self.engine)
        self.queue: queue.SimpleQueue[Work] = queue.SimpleQueue()
        self.health = Health()
        self.stopping = threading.Event()
        self.removed_users: set[str] = set()
        self.added_users: set[str] = set()
        # Announcing is done ANNOUNCE_CHUNK users per batch, so that events go on being
        # handled while 100,000 users' discovery and states go out.
        self._announce_todo: list[str] = []
        self._announce_queued = False
        self._announce_fingerprint = ""  # of a full announce in progress
        self._stale: set[str] = set()  # state changed while the broker was away
        self._scheduler_wake_by: float | None = None  # APScheduler wakes by then on its own
        self.inflight = InFlight()
        self.limiter = RateLimiter(cfg.rate_limit.per_minute, cfg.rate_limit.burst)
        self._store_failing: str | None = None  # why a batch is held (the store fails)
        self._away_logged = False  # "broker away" said for this outage
        self._diagnostics_at = 0.0  # monotonic time of the last diagnostics published
        self._worker = threading.Thread(target=self._work, name="coach-worker", daemon=True)
        self._timers: list[threading.Timer] = []
        subs = [f"{self.base}/+/{t}" for t in INBOUND] + [discovery.HA_STATUS_TOPIC]
        self.link = MqttLink(
            broker,
            broker.client_id or f"recovery-coach-{self.base.replace('/', '-')}",
            f"{self.base}/status",
            subs,
            on_message=self.queue.put,
            on_connected=lambda present: self.queue.put(Connected(present)),
            on_published=lambda mid: self.queue.put(PubAck(mid)),
        )

    # ------------------------------------------------------------ job targets (any thread)

    def on_nudge_due(self, user: str, nudge_id: str) -> None:
        self.queue.put(Fire(user, nudge_id))

    def on_day_start(self, user: str) -> None:
        self.queue.put(DayStart(user))

    def on_missed(self, job_id: str) -> None:
        self.queue.put(Missed(job_id))

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._reconcile_users()
        jobs.bind(self)
        self.scheduler.start()
        self._worker.start()
        # Each day start schedules the next; only users without one (new, or whose chain a
        # long outage broke) need their day planned now.
        planned = self.repo.users_with_day_job()
        for user in sorted(set(self.profiles) - planned):
            self.queue.put(DayStart(user))
        self.link.start()
        self._every(30.0, Housekeeping())

    def _every(self, seconds: float, item: Work) -> None:
        def tick() -> None:
            if not self.stopping.is_set():
                self.queue.put(item)
                self._every(seconds, item)

        timer = threading.Timer(seconds, tick)
        timer.daemon = True
        timer.start()
        self._timers = [t for t in self._timers if t.is_alive()] + [timer]

    def stop(self, timeout: float = 5.0) -> None:
        """Finish the batch in hand, publish `offline`, disconnect. Unacked messages come back."""
        self.stopping.set()
        for t in self._timers:
            t.cancel()
        self._worker.join(timeout)
        self.link.stop()
        self.scheduler.shutdown()
        jobs.bind(None)
        self.engine.dispose()
        log.info("stopped")

    def _reconcile_users(self) -> None:
        """Users removed from the config lose their jobs; added users get theirs (DayStart)."""
        known = self.repo.known_users()
        self.removed_users = known - set(self.profiles)
        for user in sorted(self.removed_users):
            n = self.repo.remove_user(user)
            log.info("user %s left the config: %d pending nudge(s) cancelled", user, n)
        added = set(self.profiles) - known
        self.added_users = added
        if added:
            names = sorted(added)
            more = f" and {len(names) - 20} more" if len(names) > 20 else ""
            log.info("new user(s): %s%s", ", ".join(names[:20]), more)
        self.repo.set_users(self.profiles, known)

    # ------------------------------------------------------------ the worker

    def _work(self) -> None:
        """Network I/O and decisions in one thread: read, decide, commit, ack, publish."""
        while not self.stopping.is_set():
            # Jobs and timers put work on the queue from their own threads; waiting at most
            # IDLE_WAIT in select() bounds how late they are seen.
            self.link.pump(0.0 if not self.queue.empty() else IDLE_WAIT)
            batch: list[Work] = []
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            if batch:
                self._safely(batch)
        self._drain()

    def _drain(self) -> None:
        """Stopping: wait up to DRAIN_SECONDS for the PUBACKs of what was published and
        commit them, so a clean stop sends nothing twice after the restart. Nothing else is
        taken: unacknowledged messages come back, and due nudges are sent at the next start."""
        until = time.monotonic() + DRAIN_SECONDS
        while self.inflight and self.link.connected.is_set() and time.monotonic() < until:
            self.link.pump(0.05)
            acks: list[Work] = []
            while True:
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, PubAck):
                    acks.append(item)
            if acks:
                self._safely(acks)
        if self.inflight:
            log.warning("stopped with %d nudge(s) awaiting PUBACK", len(self.inflight))

    def _safely(self, batch: list[Work]) -> None:
        """Decide and commit the batch, then act on it. A failed commit is retried by itself
        (the store may be locked, full or restarting); a message that fails alone while the
        store works is refused and acknowledged, so it never blocks the others."""
        batch, limited = self._rate_limited(batch)
        done = [limited] if limited.acks else []
        done += self._commit(batch)
        for b in done:
            try:
                self._after_commit(b)
            except Exception as exc:  # decisions are stored: the outbox sends them later
                self._error(f"internal error after a commit: {exc!r}")
                log.exception("publishing after a commit failed")

    def _commit(self, batch: list[Work]) -> list[Batch]:
        """The batch decided and committed, with back-off while the store fails."""
        delay = RETRY_FIRST_S
        failed_while_writable = 0
        while batch:
            try:
                b = self._decide(batch)
                if self._store_failing is not None:
                    self._store_failing = None
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
            if self._store_failing is None:
                self._store_failing = failure
                self._diagnostics()  # status says so while the batch is held
                log.error(
                    "the store cannot take a batch of %d (%s): its messages are held "
                    "unacknowledged and retried (1 s doubling to %.0f s)",
                    len(batch),
                    failure,
                    RETRY_MAX_S,
                )
            self._error(f"store error: {failure}")
            if not self._pump_for(delay):
                return []  # stopping: the held messages come back at the next start
            delay = min(delay * 2, RETRY_MAX_S)
        return []

    def _one_by_one(self, batch: list[Work]) -> list[Batch]:
        """Each item in a transaction of its own, to find the one that fails the batch."""
        log.warning("a batch of %d failed while the store works: retrying one by one", len(batch))
        done: list[Batch] = []
        for item in batch:
            done += self._commit([item])
        return done

    def _poison(self, item: Work, failure: str) -> Batch:
        """A message that fails alone while the store works: refused and acknowledged."""
        b = Batch(datetime.now(UTC))
        log.error("%s fails on its own (%s): dropped", type(item).__name__, failure)
        if isinstance(item, Inbound):
            b.refused += 1
            b.acks.append((item.mid, item.qos))
            user = split_topic(self.base, item.topic)
            b.refusals.append(
                Refused(
                    user[0] if user and user[0] in self.profiles else None,
                    item.topic,
                    "the service failed on this message and dropped it; the log has the "
                    "details (please report it)",
                )
            )
        self._error(f"dropped a message that fails alone: {failure}")
        return b

    def _pump_for(self, seconds: float) -> bool:
        """Keep the connection alive for `seconds`; False when the service is stopping."""
        until = time.monotonic() + seconds
        while not self.stopping.is_set():
            left = until - time.monotonic()
            if left <= 0:
                return True
            self.link.pump(min(left, 0.1))
        return False

    def _rate_limited(self, batch: list[Work]) -> tuple[list[Work], Batch]:
        """Inbound messages beyond a user's rate limit, refused and acknowledged."""
        limited = Batch(datetime.now(UTC))
        now = time.monotonic()
        kept: list[Work] = []
        for item in batch:
            if isinstance(item, Inbound) and item.topic != discovery.HA_STATUS_TOPIC:
                parts = split_topic(self.base, item.topic)
                user = parts[0] if parts else None
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
                                f"{self.cfg.rate_limit.per_minute} a minute after a burst "
                                f"of {self.cfg.rate_limit.burst}; rate_limit in the config)",
                            )
                        )
                    continue
            kept.append(item)
        return kept, limited

    def _decide(self, batch: list[Work]) -> Batch:
        """Every decision of the batch, written in one transaction. Nothing outside the
        store's staging changes here, so a failed attempt can simply be made again."""
        b = Batch(datetime.now(UTC))
        now = b.now
        outcomes: list[Outcome] = []
        # Parse first, so that one query tells which events were already handled.
        parsed: dict[int, Accepted | Refused] = {}
        for i, item in enumerate(batch):
            if (
                isinstance(item, Inbound)
                and item.topic != discovery.HA_STATUS_TOPIC
                and not item.retain
            ):
                parsed[i] = self.handler.parse(
                    item.topic, item.payload, now, packet_id=item.mid, redelivered=item.dup
                )
        self.repo.prefetch_seen(
            (p.user, dedupe_key(p.event)) for p in parsed.values() if isinstance(p, Accepted)
        )
        for i, item in enumerate(batch):
            if isinstance(item, Inbound):
                b.acks.append((item.mid, item.qos))
                if item.topic == discovery.HA_STATUS_TOPIC:
                    b.ha_online |= item.payload.strip() == b"online"
                elif item.retain:
                    b.retained.append(item.topic)
                else:
                    outcomes.append(self.handler.handle_parsed(parsed[i], now))
            elif isinstance(item, DayStart):
                if item.user not in self.profiles:
                    continue
                outcomes.append(self.handler.day_started(item.user, now))
                at = next_day_start(self.profiles[item.user], now)
                self.repo.stage_job(self.scheduler.day_row(item.user, at))
                b.jobs_added = True
            elif isinstance(item, Fire):
                b.fire.append(item)
            elif isinstance(item, PubAck):
                self._published(item.mid, b)
            elif isinstance(item, Missed):
                self._missed(item.job_id)
            elif isinstance(item, Connected):
                # A resumed session means the broker kept our retained messages too: only
                # what changed goes out again, unless the announcement itself changed.
                full = not item.session_present or not self._announced_as_now()
                b.announce = bool(b.announce) or full
                b.fire.extend(self._overdue())
            elif isinstance(item, Announce):
                b.announce = True
            elif isinstance(item, AnnounceMore):
                b.announce_more = True
            elif isinstance(item, Housekeeping):
                self.repo.stage_prune(time.time())
                self.limiter.forget_full(time.monotonic())
                b.diagnostics = True
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

    def _after_commit(self, b: Batch) -> None:
        """What the committed batch makes happen: publish, acknowledge, wake, announce."""
        h = self.health
        h.events_handled += b.handled
        h.events_refused += b.refused
        h.duplicates += b.duplicates
        if b.handled:
            h.last_event_at = time.time()
        for mid in b.published:
            self.inflight.done(mid)
        h.nudges_published += len(b.published)
        if b.cancelled:
            # A cancelled job may be the one APScheduler would have woken for; if it
            # re-reads the table meanwhile it may sleep past jobs we did not wake it for.
            self._scheduler_wake_by = None
        # What the user is waiting for goes first; acks and the scheduler's wake-up (its
        # thread then queries the job table, competing for the GIL) come after.
        for nudge in b.immediate:
            self._publish_nudge(nudge, b.now, b.payloads.get(nudge.nudge_id))
        for mid, qos in b.acks:
            self.link.ack(mid, qos)
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
            self._announce_later()
        if b.announce_more:
            self._announce_queued = False
        if b.fire:
            self._fire(b.fire, b.now)
        if b.announce is not None:
            self._announce(full=b.announce)
        for user in b.changed:
            # A user with nudges still awaiting PUBACK gets one state, after the last one
            # (it names the last nudge), instead of one now and one again a moment later.
            if not self.inflight.waiting(user):
                self._publish_state(user, b.now)
        if b.diagnostics or (b.handled and self._diagnostics_stale()):
            self._diagnostics()
        if self._announce_todo:
            self._announce_some()

    def _wake_needed(self, earliest: float) -> bool:
        """Whether APScheduler must be woken for jobs as early as `earliest` (epoch s).

        It wakes by itself at the run time it last read and then re-reads the table, so a
        job due after that time needs no wake-up; each wake-up costs it two queries that
        compete with the worker for the GIL (once per batch in a burst, otherwise).
        """
        wake_by = self._scheduler_wake_by
        if wake_by is None or wake_by <= time.time() or earliest < wake_by:
            self._scheduler_wake_by = earliest
            return True
        return False

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

    # ------------------------------------------------------------ nudges out

    def _fire(self, fire: list[Fire], now: datetime) -> None:
        """Publish the nudges whose time has come (one outbox read for all of them)."""
        todo = [f for f in fire if not self.inflight.holds(f.nudge_id)]
        rows = self.repo.outbox_many([f.nudge_id for f in todo]) if todo else {}
        for f in todo:
            row = rows.get(f.nudge_id)
            if row is None or row.status != PENDING or row.user_id not in self.profiles:
                continue
            if row.expires_at is not None and row.expires_at <= now.timestamp():
                self._expire(f.nudge_id, f.user, "it expired before it could be sent")
                continue
            # Worded now, against the user's day as it stands: "today", the protein logged
            # and this week's minutes are those of the moment it is read.
            worded = self.handler.word(row.nudge, now)
            if worded is None:
                self._expire(f.nudge_id, f.user, "it no longer applies")
                continue
            self._publish_nudge(worded, now)

    def _overdue(self) -> list[Fire]:
        """Pending nudges whose time has come but that no job will fire (down, or broker away)."""
        now = time.time()
        return [
            Fire(r.user_id, r.nudge_id)
            for r in self.repo.pending_without_job(due_by=now)
            if not self.inflight.holds(r.nudge_id)
        ]

    def _publish_nudge(self, nudge: Nudge, now: datetime, payload: str | None = None) -> None:
        """Publish a nudge; `payload` is its JSON when the outbox already holds it."""
        if not self.link.connected.is_set():
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
        mid = self.link.publish(
            f"{self.base}/{nudge.user}/nudge",
            payload,
            qos=1,
            expiry_seconds=expiry,
        )
        if mid is not None:
            self.inflight.add(mid, nudge)
            log.debug(  # at INFO this line cost more than deciding the nudge
                "nudge %s (%s %s) published for %s",
                nudge.nudge_id,
                nudge.rule,
                nudge.kind,
                nudge.user,
            )

    def _published(self, mid: int, b: Batch) -> None:
        """Stage the PUBACK's mark; the in-flight entry goes once it is committed."""
        nudge = self.inflight.get(mid)
        if nudge is None:
            return  # state, error or discovery message
        b.published.append(mid)
        self.repo.stage_published(nudge.nudge_id, time.time())
        if nudge.user in self.profiles:
            self.repo.stage_state(nudge.user, self.handler.nudge_published(nudge.user, nudge))
            b.changed.add(nudge.user)

    def _missed(self, job_id: str) -> None:
        if job_id.startswith("day:"):
            return
        row = self.repo.outbox(job_id)
        if row is not None and row.status == PENDING:
            self._expire(job_id, row.user_id, "its useful time passed while the service was down")

    def _expire(self, nudge_id: str, user: str, why: str) -> None:
        self.health.nudges_expired += 1
        self.repo.stage_expired(nudge_id)
        log.info("nudge %s for %s dropped: %s", nudge_id, user, why)

    # ------------------------------------------------------------ other topics out

    def _refusal(self, r: Refused) -> None:
        log.warning("refused a message on %s: %s", r.topic, r.reason)
        self.health.last_error = r.reason
        self.health.last_error_at = time.time()
        if r.user is not None and "+" not in r.user and "#" not in r.user:
            self.link.publish(f"{self.base}/{r.user}/error", json.dumps(r.payload()), qos=1)

    def _error(self, reason: str) -> None:
        self.health.last_error = reason
        self.health.last_error_at = time.time()

    def _publish_state(self, user: str, now: datetime) -> None:
        if user not in self.profiles:
            return
        if not self.link.connected.is_set():
            self._stale.add(user)  # published on the next connect
            return
        view = state_view(self.profiles[user], self.repo.peek(user), now)
        self.link.publish(f"{self.base}/{user}/state", json.dumps(view), qos=1, retain=True)

    def _announce_later(self) -> None:
        # Home Assistant restarts its MQTT integration in a burst; a short random delay
        # spreads the re-announcements of many services.
        timer = threading.Timer(random.uniform(1.0, 5.0), self.queue.put, args=(Announce(),))
        timer.daemon = True
        timer.start()

    def _fingerprint(self) -> str:
        """What a full announcement says: version, topics, and every user's name."""
        h = hashlib.sha256(f"{__version__}|{self.base}|{self.cfg.homeassistant_discovery}".encode())
        for user, profile in sorted(self.profiles.items()):
            h.update(f"|{user}={profile.name}".encode())
        return h.hexdigest()

    def _announced_as_now(self) -> bool:
        return self.repo.get_meta("announced") == self._fingerprint()

    def _announce(self, *, full: bool) -> None:
        """Removals now; discovery and states of everyone (full) or of the users added to
        the config and those whose state changed while the broker was away, in chunks."""
        if not self.link.connected.is_set():
            return
        for user in sorted(self.removed_users):
            if self.cfg.homeassistant_discovery:
                for topic, payload in discovery.removal_messages(user):
                    self.link.publish(topic, payload, qos=1, retain=True)
            self.link.publish(f"{self.base}/{user}/state", b"", qos=1, retain=True)
        users = set(self.profiles) if full else (self.added_users | self._stale)
        self.added_users = set()
        self._stale.clear()
        if full:
            self._announce_fingerprint = self._fingerprint()
        self._announce_todo = sorted(set(self._announce_todo) | (users & set(self.profiles)))
        if not self._announce_todo:
            self._diagnostics()

    def _announce_some(self) -> None:
        if not self.link.connected.is_set():
            return  # the next connect announces again
        now = datetime.now(UTC)
        chunk = self._announce_todo[:ANNOUNCE_CHUNK]
        del self._announce_todo[:ANNOUNCE_CHUNK]
        for user in chunk:
            if self.cfg.homeassistant_discovery:
                for topic, payload in discovery.discovery_messages(
                    self.base, user, self.profiles[user].name, __version__
                ):
                    self.link.publish(topic, payload, qos=1, retain=True)
            self._publish_state(user, now)
        if self._announce_todo:
            if not self._announce_queued:
                self._announce_queued = True
                self.queue.put(AnnounceMore())
            return
        if self._announce_fingerprint:
            self.repo.set_meta("announced", self._announce_fingerprint)
            self._announce_fingerprint = ""
        self._diagnostics()

    def diagnostics(self) -> dict[str, Any]:
        counts: dict[str, int | None]
        try:
            counts = dict(self.repo.counts())
        except Exception:  # the store is failing: say so, without its counts
            counts = {"jobs": None, "nudges_pending": None}
        h = self.health
        return {
            "version": __version__,
            "connected": self.link.connected.is_set(),
            "users": len(self.profiles),
            "jobs_pending": counts["jobs"],
            "nudges_pending": counts["nudges_pending"],
            "events_handled": h.events_handled,
            "events_refused": h.events_refused,
            "duplicates_dropped": h.duplicates,
            "nudges_published": h.nudges_published,
            "nudges_expired": h.nudges_expired,
            "broker_disconnects": self.link.disconnects,
            "last_event_at": _iso(h.last_event_at),
            "last_error": h.last_error,
            "scheduler_error": self.scheduler.store.error,
            "store_error": self._store_failing,
            "last_error_at": _iso(h.last_error_at),
            "started_at": _iso(h.started_at),
            "updated_at": datetime.now(UTC).isoformat(),
        }

    def _diagnostics_stale(self) -> bool:
        return time.monotonic() - self._diagnostics_at >= DIAGNOSTICS_EVERY

    def _diagnostics(self) -> None:
        """Publish the figures: every 30 s, and after events at most every DIAGNOSTICS_EVERY
        (so `status` right after an event is current)."""
        if self.link.connected.is_set():
            self._diagnostics_at = time.monotonic()
            payload = json.dumps(self.diagnostics())
            self.link.publish(f"{self.base}/diagnostics", payload, qos=1, retain=True)


# ---------------------------------------------------------------- run


def choose_broker(cfg: Config) -> tuple[BrokerConfig, EmbeddedBroker | None]:
    """The configured broker, or the embedded one (or the broker already on its port)."""
    if cfg.broker is not None:
        return cfg.broker, None
    host, port = cfg.embedded_broker.host, cfg.embedded_broker.port
    # amqtt speaks MQTT 3.1.1 only.
    broker = BrokerConfig(host=host, port=port, protocol="3.1.1")
    if port_free(host, port):
        embedded = EmbeddedBroker(host, port)
        embedded.start()
        return broker, embedded
    if speaks_mqtt(host, port):
        log.warning(
            "port %s on %s is taken by an MQTT broker that answers: using it instead of the "
            "embedded broker",
            port,
            host,
        )
        return broker, None
    raise PortTakenError(
        f"port {port} on {host} is in use by something that is not an MQTT broker: set "
        "embedded_broker.port to a free port, or add a `broker` section for your own broker"
    )


def _store_ready(url: str, stop: threading.Event) -> bool:
    """Whether the store can be used: a corrupt file or bad URL is said in one line (False);
    an unreachable server is retried with back-off (1 s doubling to 30 s) until it answers
    or the service is stopped."""
    delay = 1.0
    while True:
        problem = store_problem(url)
        if problem is None:
            return True
        if not problem.retry:
            log.error("store %s: %s", shown(url), problem.reason)
            return False
        log.warning("store %s: %s; retrying in %.0f s", shown(url), problem.reason, delay)
        if stop.wait(delay):
            return False
        delay = min(delay * 2, 30.0)


def run(cfg: Config, config_path: Path | None = None) -> int:
    """Run until SIGTERM or SIGINT; exit code for the command line."""
    setup_logging(cfg.log_level, cfg.log_format)
    # The worker and paho's network thread hand the GIL to each other around every socket
    # and SQLite call; with the default 5 ms switch interval a thread back from I/O can wait
    # that long for the other to let go (bench: p50 about 1 ms lower with 0.5 ms).
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        broker, embedded = choose_broker(cfg)
    except PortTakenError as exc:
        log.error("%s", exc)
        return 2
    except OSError as exc:
        log.error("cannot start the embedded broker: %s", exc)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if not _store_ready(cfg.store, stop):
        if embedded is not None:
            embedded.stop()
        return 0 if stop.is_set() else 2
    service = Service(cfg, broker)
    log.info(
        "recovery coach %s: %d user(s), base topic %s, broker %s:%s, config %s",
        __version__,
        len(service.profiles),
        cfg.base_topic,
        broker.host,
        broker.port,
        config_path,
    )
    service.start()
    stop.wait()
    service.stop()
    if embedded is not None:
        embedded.stop()
    return 0
