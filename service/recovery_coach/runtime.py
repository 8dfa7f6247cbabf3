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
from .inbound import Accepted, Refused
from .log_format import setup_logging
from .message_handler import MessageHandler, Outcome
from .models import Nudge, dedupe_key
from .mqtt_link import Inbound, MqttLink
from .store import PENDING, SqlRepository, make_engine
from .store_check import shown, store_problem

log = logging.getLogger(__name__)

MAX_BATCH = 1000
IDLE_WAIT = 0.01  # seconds the worker waits on the socket when it has nothing to do
ANNOUNCE_CHUNK = 200  # users' discovery and state per batch while announcing
SWITCH_INTERVAL = 0.0005  # seconds; Python's default is 0.005
IMMEDIATE = timedelta(milliseconds=50)  # due this soon: publish after the commit, no job
HISTORY_SECONDS = 30 * 24 * 3600  # handled event ids are remembered this long
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
        self._inflight: dict[int, Nudge] = {}
        self._inflight_users: dict[str, int] = {}  # nudges awaiting PUBACK, per user
        self._handed: set[str] = set()  # given to paho in this process; paho resends them
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

    def _safely(self, batch: list[Work]) -> None:
        try:
            self._process(batch)
        except Exception as exc:  # the service must stay up; the batch will come back
            self.repo.rollback()
            self.repo.forget_cache()
            self._error(f"internal error while handling a batch: {exc!r}")
            log.exception("batch of %d failed; its messages stay unacknowledged", len(batch))

    def _process(self, batch: list[Work]) -> None:
        now = datetime.now(UTC)
        acks: list[tuple[int, int]] = []
        refusals: list[Refused] = []
        immediate: list[Nudge] = []
        fire: list[Fire] = []
        changed: set[str] = set()
        outcomes: list[Outcome] = []
        jobs_added = False
        announce: bool | None = None  # True: everything; False: only what changed
        # Parse first, so that one query tells which events were already handled.
        parsed: dict[int, Accepted | Refused] = {}
        for i, item in enumerate(batch):
            if (
                isinstance(item, Inbound)
                and item.topic != discovery.HA_STATUS_TOPIC
                and not item.retain
            ):
                parsed[i] = self.handler.parse(item.topic, item.payload, now)
        self.repo.prefetch_seen(
            (p.user, dedupe_key(p.event)) for p in parsed.values() if isinstance(p, Accepted)
        )
        for i, item in enumerate(batch):
            if isinstance(item, Inbound):
                acks.append((item.mid, item.qos))
                if item.topic == discovery.HA_STATUS_TOPIC:
                    if item.payload.strip() == b"online":
                        self._announce_later()
                    continue
                if item.retain:
                    # A retained event would be applied again at every reconnect (a retained
                    # {"grams": 25} adds 25 g per restart): events are never retained.
                    log.warning(
                        "ignored a retained message on %s: events must not be retained "
                        "(clear it with an empty retained message)",
                        item.topic,
                    )
                    continue
                outcomes.append(self.handler.handle_parsed(parsed[i], now))
            elif isinstance(item, DayStart):
                if item.user not in self.profiles:
                    continue
                outcomes.append(self.handler.day_started(item.user, now))
                at = next_day_start(self.profiles[item.user], now)
                self.repo.stage_job(self.scheduler.day_row(item.user, at))
                jobs_added = True
            elif isinstance(item, Fire):
                fire.append(item)
            elif isinstance(item, PubAck):
                self._published(item.mid, changed)
            elif isinstance(item, Missed):
                self._missed(item.job_id)
            elif isinstance(item, Connected):
                # A resumed session means the broker kept our retained messages too: only
                # what changed goes out again, unless the announcement itself changed.
                full = not item.session_present or not self._announced_as_now()
                announce = bool(announce) or full
                fire.extend(self._overdue())
            elif isinstance(item, Announce):
                announce = True
            elif isinstance(item, AnnounceMore):
                self._announce_queued = False
            elif isinstance(item, Housekeeping):
                self.repo.prune(time.time() - HISTORY_SECONDS)
                self._diagnostics()
        # Nudges that already went out are never sent again (stable ids): one query for the
        # whole batch, then job rows for the rest.
        sent = self.repo.resolve_staged() if outcomes else set()
        for out in outcomes:
            if sent:
                out.scheduled = [n for n in out.scheduled if n.nudge_id not in sent]
            jobs_added |= self._absorb(out, now, immediate, refusals, changed)
            if out.cancelled:
                # A cancelled job may be the one APScheduler would have woken for; if it
                # re-reads the table meanwhile it may sleep past jobs we did not wake it for.
                self._scheduler_wake_by = None
        earliest_job = self.repo.earliest_staged_job()
        if self.repo.has_staged():
            self.repo.commit()
        else:
            self.repo.end_reads()
        # What the user is waiting for goes first; acks and the scheduler's wake-up (its
        # thread then queries the job table, competing for the GIL) come after.
        for nudge in immediate:
            self._publish_nudge(nudge, now, self.repo.written_payloads.get(nudge.nudge_id))
        for mid, qos in acks:
            self.link.ack(mid, qos)
        if jobs_added and earliest_job is not None and self._wake_needed(earliest_job):
            self.scheduler.wakeup()
        for r in refusals:
            self._refusal(r)
        if fire:
            self._fire(fire, now)
        if announce is not None:
            self._announce(full=announce)
        for user in changed:
            # A user with nudges still awaiting PUBACK gets one state, after the last one
            # (it names the last nudge), instead of one now and one again a moment later.
            if user not in self._inflight_users:
                self._publish_state(user, now)
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

    def _absorb(
        self,
        out: Outcome,
        now: datetime,
        immediate: list[Nudge],
        refusals: list[Refused],
        changed: set[str],
    ) -> bool:
        """Stage jobs for the outcome's nudges; returns whether any job was added."""
        if out.refused is not None:
            self.health.events_refused += 1
            refusals.append(out.refused)
            return False
        if out.duplicate:
            self.health.duplicates += 1
            log.debug("event %s for %s already handled", out.event_id, out.user)
            return False
        self.health.events_handled += 1
        self.health.last_event_at = time.time()
        added = False
        for nudge in out.scheduled:
            if nudge.due_at <= now + IMMEDIATE:
                immediate.append(nudge)
            else:
                self.repo.stage_job(self.scheduler.nudge_row(nudge))
                added = True
        if out.user is not None:
            changed.add(out.user)
        return added

    # ------------------------------------------------------------ nudges out

    def _fire(self, fire: list[Fire], now: datetime) -> None:
        """Publish the nudges whose time has come (one outbox read for all of them)."""
        todo = [f for f in fire if f.nudge_id not in self._handed]
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
            if r.nudge_id not in self._handed
        ]

    def _publish_nudge(self, nudge: Nudge, now: datetime, payload: str | None = None) -> None:
        """Publish a nudge; `payload` is its JSON when the outbox already holds it."""
        if not self.link.connected.is_set():
            log.info(
                "broker away: nudge %s for %s waits for the connection", nudge.nudge_id, nudge.user
            )
            return
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
            self._inflight[mid] = nudge
            self._inflight_users[nudge.user] = self._inflight_users.get(nudge.user, 0) + 1
            self._handed.add(nudge.nudge_id)
            log.debug(  # at INFO this line cost more than deciding the nudge
                "nudge %s (%s %s) published for %s",
                nudge.nudge_id,
                nudge.rule,
                nudge.kind,
                nudge.user,
            )

    def _published(self, mid: int, changed: set[str]) -> None:
        nudge = self._inflight.pop(mid, None)
        if nudge is None:
            return  # state, error or discovery message
        left = self._inflight_users.pop(nudge.user, 1) - 1
        if left > 0:
            self._inflight_users[nudge.user] = left
        self.health.nudges_published += 1
        self.repo.stage_published(nudge.nudge_id, time.time())
        if nudge.user in self.profiles:
            self.repo.stage_state(nudge.user, self.handler.nudge_published(nudge.user, nudge))
            changed.add(nudge.user)

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
        counts = self.repo.counts()
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
            "last_error_at": _iso(h.last_error_at),
            "started_at": _iso(h.started_at),
            "updated_at": datetime.now(UTC).isoformat(),
        }

    def _diagnostics(self) -> None:
        if self.link.connected.is_set():
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
