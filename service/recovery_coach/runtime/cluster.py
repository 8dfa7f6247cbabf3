"""`recovery-coach run` with `shards` above 1: one instance among several (README "Scaling out").

    Leases (shards.py), every HEARTBEAT_S: renew, count the live instances, take free shards
        up to this instance's fair share, release the ones above it
    for each shard owned: a Service (runtime.py) on the shard's users, with the shard's
        client id and MQTT session, job table, status topic and fence
    Presence: the instance's own MQTT clients, for `<base>/status/<instance>` and
        `<base>/status`

Threads: the main thread beats (this module: leases, starting and stopping shards); each
shard's Service has its own threads, and each presence client (mqtt/presence.py) its loop.
"""

from __future__ import annotations

import logging
import threading
import time

from recovery_coach import jobs
from recovery_coach.contract.config import BrokerConfig, Config
from recovery_coach.contract.shards import (
    HEARTBEAT_S,
    Shard,
    application_name,
    rebalance,
    shard_of,
)
from recovery_coach.contract.topics import Topics
from recovery_coach.core.models import Profile
from recovery_coach.mqtt.presence import Presence
from recovery_coach.runtime.service import Service, ShardRun, client_id
from recovery_coach.store import client_secret, make_engine
from recovery_coach.store.reshard import reshard
from recovery_coach.store.shard_leases import Fence, Leases

log = logging.getLogger(__name__)


class Instance:
    """One process of a sharded service: the shards it owns, each run as a Service."""

    def __init__(self, cfg: Config, broker: BrokerConfig, name: str) -> None:
        self.cfg = cfg
        self.broker = broker
        self.name = name
        self.count = cfg.shards
        self.leases = Leases(cfg.store, name, cfg.shards)
        self.engine = make_engine(
            cfg.store, application_name=application_name(name), pool_size=cfg.shards + 4
        )
        reshard(self.engine, cfg.shards, me=name)  # a new count: the jobs move first
        # Each shard's users from the YAML, in one pass over them.
        self.profiles: list[dict[str, Profile]] = [{} for _ in range(self.count)]
        for user, profile in cfg.profiles().items():
            self.profiles[shard_of(user, self.count)][user] = profile
        self.services: dict[int, Service] = {}
        self.stopping = threading.Event()  # told to stop: no shard is taken any more
        self.presence = Presence(
            broker, client_id(cfg, broker, client_secret(self.engine)), Topics(cfg.base_topic), name
        )
        self._beats = 0

    # -- job targets (APScheduler's threads): each shard's jobs go to its Service

    def _service_of(self, user: str) -> Service | None:
        return self.services.get(shard_of(user, self.count))

    def on_nudge_due(self, user: str, nudge_id: str) -> None:
        # A shard released meanwhile: its nudge's row is pending without a job, and the
        # next owner publishes it on connect (the outbox's overdue nudges).
        service = self._service_of(user)
        if service is not None:
            service.on_nudge_due(user, nudge_id)

    def on_day_start(self, user: str) -> None:
        service = self._service_of(user)
        if service is not None:
            service.on_day_start(user)

    def on_missed(self, job_id: str) -> None:
        """Each shard's scheduler tells its own Service (runtime.py); nothing comes here."""

    # -- the heartbeat

    def run(self, stop: threading.Event) -> None:
        self.stopping = stop
        jobs.bind(self)
        self.presence.start()
        try:
            while not stop.is_set():
                started = time.monotonic()
                self.beat()
                stop.wait(max(0.0, HEARTBEAT_S - (time.monotonic() - started)))
        finally:
            self.shutdown()

    def beat(self) -> None:
        """Renew, then balance: take free shards up to the fair share, release the rest."""
        try:
            if not self.leases.connected:
                self.leases.connect()
                log.info("instance %s joined (%d shards)", self.name, self.count)
            for shard in sorted(self.leases.beat()):
                log.warning("shard %d was taken over by another instance", shard)
                self._stop(shard, offline=False)
            for shard, service in sorted(self.services.items()):
                if not service.running():  # its worker was fenced
                    self._stop(shard, offline=False)
                    self.leases.release(shard)
            self._beats += 1
            if self._beats > 1:  # the first beat only registers: instances starting together
                self._balance()
        except Exception as exc:
            # The lease connection is gone, and with it this instance's locks: another
            # instance may take the shards, so none of them is served from here any more.
            log.error("lease connection failed (%s): every shard of this instance stops", exc)
            for shard in sorted(self.services):
                self._stop(shard, offline=False)
            self.leases.drop()
        self.presence.owns(sorted(self.services))

    def _balance(self) -> None:
        live = self.leases.live()
        release, take = rebalance(self.name, self.count, live, self.services, self.leases.owners())
        for shard in release:
            log.info("shard %d released to balance %d instance(s)", shard, len(live))
            self._stop(shard, offline=False)
            self.leases.release(shard)
        for shard in take:
            if self.stopping.is_set():  # a take is ~50 ms: a stop between two is honoured
                return
            token = self.leases.take(shard)
            if token is None:
                continue
            try:
                self._start(shard, token)
            except Exception:  # this shard only: the others go on, and it is tried again
                log.exception("shard %d could not start: released", shard)
                self.leases.release(shard)

    def _start(self, shard: int, token: int) -> None:
        fence = Fence(shard, self.name, token)
        run = ShardRun(
            shard=Shard(shard, self.count),
            fence=fence,
            engine=self.engine,
            profiles=self.profiles[shard],
            may_connect=lambda: fence.holds(self.engine),
            instance=self.name,
        )
        service = Service(self.cfg, self.broker, run)
        try:
            service.start()
        except BaseException:
            service.stop(offline=False)
            raise
        self.services[shard] = service
        log.info("shard %d taken (token %d, %d user(s))", shard, token, len(run.profiles))

    def _stop(self, shard: int, *, offline: bool) -> None:
        service = self.services.pop(shard, None)
        if service is not None:
            service.stop(offline=offline)

    def shutdown(self) -> None:
        """A clean stop: every shard stopped and released, the instance gone from the lease
        table, so the others take its shards at their next heartbeat."""
        last = True
        try:
            if self.leases.connected:
                last = not [i for i in self.leases.live() if i != self.name]
        except Exception:
            log.debug("the live instances are not known: saying offline", exc_info=True)
        for shard in sorted(self.services):
            self._stop(shard, offline=last)
        try:
            self.leases.close()
        except Exception:
            log.warning("leaving the lease table failed; the leases expire", exc_info=True)
        self.presence.stop(last=last)
        jobs.bind(None)
        self.engine.dispose()
        log.info("instance %s stopped", self.name)
