"""The live service of one shard, or of the whole: MQTT in and out, durable scheduling, one
writer thread. Wired from its parts in bootstrap.py; started, stopped and watched here.

    MqttLink (the Transport) --messages, PUBACKs--> queue <--due jobs-- Scheduler
    queue --> Worker (worker.py: decide, commit, ack) --> Outbox (nudges out, in flight)
                                                      --> Announcer (discovery, states)
    SqlRepository (the store, one transaction per batch) under all of them

Threads: the worker (network I/O and every write), APScheduler's scheduler and executor
(job functions only enqueue), and a timer for housekeeping (only enqueues).

Sharded (cluster.py), an instance runs one `Service` per shard it owns, each on the shard's
users with the shard's client id, job table and fence (`ShardRun`).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from recovery_coach import __version__, jobs
from recovery_coach.app.announcer import Announcer
from recovery_coach.app.health import Health
from recovery_coach.app.message_handler import MessageHandler
from recovery_coach.app.outbox import InFlight, Outbox
from recovery_coach.app.people import People
from recovery_coach.app.work import (
    Connected,
    DayStart,
    Fire,
    Housekeeping,
    Missed,
    PubAck,
    Sweep,
    Work,
)
from recovery_coach.app.worker import Worker
from recovery_coach.contract.config import BrokerConfig, Config
from recovery_coach.contract.shards import WHOLE, Shard
from recovery_coach.contract.topics import Topics
from recovery_coach.contract.transport import Inbound
from recovery_coach.core.models import Profile
from recovery_coach.jobs.scheduler import Scheduler
from recovery_coach.mqtt.link import MqttLink
from recovery_coach.store import Checkpointer, Members, SqlRepository, client_secret, make_engine
from recovery_coach.store.lease import InstanceLease
from recovery_coach.store.reshard import reshard
from recovery_coach.store.schema import jobs_table
from recovery_coach.store.shard_leases import Fence

log = logging.getLogger(__name__)

HOUSEKEEPING_EVERY = 30.0  # seconds: prune, and diagnostics at least this often
DIAGNOSTICS_EVERY = 2.0  # seconds: diagnostics after events at most this often


@dataclass(frozen=True)
class ShardRun:
    """What an instance gives the `Service` of one shard it owns (cluster.py)."""

    shard: Shard
    fence: Fence
    engine: Engine  # the instance's, shared by its shards
    profiles: dict[str, Profile]  # the shard's users from the YAML
    may_connect: Callable[[], bool]  # whether the shard is still ours (before each connect)
    instance: str


def client_id(cfg: Config, broker: BrokerConfig, secret: str) -> str:
    """`broker.client_id`, or one with the store's secret in it: a device that claimed the
    service's client id would be handed its persistent session, and the events queued in it."""
    return broker.client_id or f"recovery-coach-{cfg.base_topic.replace('/', '-')}-{secret}"


class Service:
    """The live service: MQTT in and out, durable scheduling, one writer thread. Unsharded
    it serves every user; given a `ShardRun`, the shard's."""

    def __init__(
        self,
        cfg: Config,
        broker: BrokerConfig,
        run: ShardRun | None = None,
        lease: InstanceLease | None = None,
    ) -> None:
        self.cfg = cfg
        self.run = run
        # Unsharded under `run`: the instance lease fences every write (store/lease.py).
        fence = run.fence if run else lease.fence() if lease else None
        shard = run.shard if run else WHOLE
        self.topics = Topics(cfg.base_topic, shard)
        self.profiles = dict(run.profiles) if run else cfg.profiles()
        self.engine = run.engine if run else make_engine(cfg.store)
        if run:
            jobs_table(shard.jobs_table).create(self.engine, checkfirst=True)
        else:  # a store last run sharded: its jobs come back to one table
            reshard(self.engine, 1)
        # Sharded, the shards share the instance's engine: SQLite checkpoints as it does.
        self.checkpointer = None if run else Checkpointer.of(self.engine)
        self.repo = SqlRepository(
            self.engine,
            self.profiles,
            shard,
            fence.on_cursor if fence else None,
            self.checkpointer,
        )
        self.members = Members(self.engine, shard, fence.on_connection if fence else None)
        # People set up over MQTT join the YAML's users (their profiles are in the store).
        self.people = People(cfg, self.profiles)
        self._forget_profiles(self.people.load(self.repo.queries.profiles()))
        self.handler = MessageHandler(cfg.base_topic, self.profiles, self.repo)
        self.queue: queue.SimpleQueue[Work] = queue.SimpleQueue()
        self.scheduler = Scheduler(
            self.engine,
            1 if run else 4,  # job functions only enqueue: one thread per shard serves
            table=shard.jobs_table,
            fence=fence.on_connection if fence else None,
            on_missed=(lambda job_id: self.queue.put(Missed(job_id))) if run else None,
            on_recovered=lambda: self.queue.put(Sweep()),
        )
        self.health = Health()
        self.stopping = threading.Event()
        self.link = MqttLink(
            broker,
            shard.client_id(client_id(cfg, broker, client_secret(self.engine))),
            self.topics.status,
            self.topics.shard_subscriptions(self.profiles, profiles=cfg.mqtt_profiles)
            if run
            else self.topics.subscriptions(profiles=cfg.mqtt_profiles),
            on_message=self._inbound if run else self.queue.put,
            on_connected=lambda present: self.queue.put(Connected(present)),
            on_published=lambda mid: self.queue.put(PubAck(mid)),
            may_connect=run.may_connect if run else lease.holds if lease else lambda: True,
            shown_id=shard.client_id(client_id(cfg, broker, "<secret>")),
        )
        self.outbox = Outbox(
            self.link, self.topics, self.repo, self.handler, self.profiles, self.health
        )
        self.announcer = Announcer(
            self.link,
            self.topics,
            self.repo,
            self.profiles,
            with_discovery=cfg.homeassistant_discovery,
            enqueue=self.queue.put,
            finished=lambda: self.publish_diagnostics(True),
        )
        self.worker = Worker(
            transport=self.link,
            topics=self.topics,
            repo=self.repo,
            handler=self.handler,
            scheduler=self.scheduler,
            profiles=self.profiles,
            outbox=self.outbox,
            announcer=self.announcer,
            health=self.health,
            rate_limit=cfg.rate_limit,
            work=self.queue,
            stopping=self.stopping,
            diagnostics=self.publish_diagnostics,
            people=self.people,
        )
        self._thread = threading.Thread(target=self.worker.run, name="coach-worker", daemon=True)
        self._timers: list[threading.Timer] = []
        self._diagnostics_at = 0.0  # monotonic time of the last diagnostics published

    @property
    def inflight(self) -> InFlight:
        return self.outbox.inflight

    def _inbound(self, msg: Inbound) -> None:
        """Sharded: every shard hears every profile; another shard's person is not ours.
        A new person of ours is subscribed to at once (retained profiles come first)."""
        person = self.topics.profile_user(msg.topic)
        if person is not None and not self.topics.shard.owns(person):
            self.link.ack(msg.mid, msg.qos)
            return
        if person is not None and person not in self.profiles:
            self.link.subscribe_more(self.topics.user_subscriptions([person]))
        self.queue.put(msg)

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
        if self.run is None:  # sharded, the instance routes the jobs of all its shards
            jobs.bind(self)
        self.scheduler.start()
        self._thread.start()
        # Each day start schedules the next; only users without one (new, or whose chain a
        # long outage broke) need their day planned now.
        planned = self.repo.queries.users_with_day_job()
        for user in sorted(set(self.profiles) - planned):
            self.queue.put(DayStart(user))
        self.link.start()
        self._every(HOUSEKEEPING_EVERY, Housekeeping())

    def _every(self, seconds: float, item: Work) -> None:
        def tick() -> None:
            if not self.stopping.is_set():
                self.queue.put(item)
                self._every(seconds, item)

        timer = threading.Timer(seconds, tick)
        timer.daemon = True
        timer.start()
        self._timers = [t for t in self._timers if t.is_alive()] + [timer]

    def stop(self, timeout: float = 5.0, *, offline: bool = True) -> None:
        """Finish the batch in hand and drain PUBACKs, publish `offline`, disconnect.
        Unacknowledged messages come back at the next start. `offline=False`: the shard was
        taken over, so its status is its new owner's to say."""
        self.stopping.set()
        for t in self._timers:
            t.cancel()
        self._thread.join(timeout)
        self.link.stop(offline=offline)
        self.scheduler.shutdown()
        if self.checkpointer is not None:
            self.checkpointer.close()
        if self.run is None:
            jobs.bind(None)
            self.engine.dispose()
        log.info("stopped" if self.run is None else f"shard {self.run.shard.index} stopped")

    def running(self) -> bool:
        return self._thread.is_alive()

    def _forget_profiles(self, user_ids: list[str]) -> None:
        for user in user_ids:
            why = "the YAML config defines it" if user in self.cfg.users else "it is not valid"
            if not self.cfg.mqtt_profiles:
                why = "mqtt_profiles is off"
            log.warning("the stored profile of %s is not used: %s", user, why)
        self.members.forget_profiles(user_ids)

    def _reconcile_users(self) -> None:
        """Users removed from the config lose their jobs; added users get theirs (DayStart)."""
        known = self.members.known()
        removed = known - set(self.profiles)
        for user in sorted(removed):
            n = self.members.remove(user)
            log.info("user %s left the config: %d pending nudge(s) cancelled", user, n)
        added = set(self.profiles) - known
        if added:
            names = sorted(added)
            more = f" and {len(names) - 20} more" if len(names) > 20 else ""
            log.info("new user(s): %s%s", ", ".join(names[:20]), more)
        self.members.record(self.profiles, known)
        self.announcer.removed_users = removed
        self.announcer.added_users = added

    # ------------------------------------------------------------ diagnostics

    def diagnostics(self) -> dict[str, Any]:
        counts: dict[str, int | None]
        try:
            counts = dict(self.repo.queries.counts())
        except Exception:  # the store is failing: say so, without its counts
            counts = {"jobs": None, "nudges_pending": None}
        return {
            "version": __version__,
            "connected": self.link.is_connected(),
            "users": len(self.profiles),
            "jobs_pending": counts["jobs"],
            "nudges_pending": counts["nudges_pending"],
            **self.health.figures(),
            "broker_disconnects": self.link.disconnects,
            "scheduler_error": self.scheduler.store.error,
            "updated_at": datetime.now(UTC).isoformat(),
            **({"shard": self.run.shard.index, "instance": self.run.instance} if self.run else {}),
        }

    def health_report(self) -> dict[str, Any]:
        """What `GET /healthz` says (web.py): unhealthy only when a restart could help (the
        worker thread is gone); the broker and the store are reported, not judged."""
        worker = self._thread.is_alive()
        return {
            "ok": worker,
            "worker": "running" if worker else "stopped",
            "connected": self.link.is_connected(),
            "store_error": self.health.store_error,
            "scheduler_error": self.scheduler.store.error,
            "version": __version__,
        }

    def publish_diagnostics(self, force: bool = False) -> None:
        """Every 30 s and when asked (`force`); after events at most every 2 s, so `status`
        right after an event is current."""
        if not force and time.monotonic() - self._diagnostics_at < DIAGNOSTICS_EVERY:
            return
        if self.link.is_connected():
            self._diagnostics_at = time.monotonic()
            payload = json.dumps(self.diagnostics())
            self.link.publish(self.topics.diagnostics, payload, qos=1, retain=True)
