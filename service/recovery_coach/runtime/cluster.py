"""`recovery-coach run` with `shards` above 1: one instance among several (README "Scaling out").

    Leases (shards.py), every HEARTBEAT_S: renew, count the live instances, take free shards
        up to this instance's fair share, release the ones above it
    for each shard owned: a Service (runtime.py) on the shard's users, with the shard's
        client id and MQTT session, job table, status topic and fence
    Presence: the instance's own MQTT clients, for `<base>/status/<instance>` and
        `<base>/status`

Threads: the main thread beats (this module: leases, starting and stopping shards); each
shard's Service has its own threads, and each presence client paho's loop thread.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from recovery_coach import jobs
from recovery_coach.contract.config import BrokerConfig, Config
from recovery_coach.contract.shards import (
    HEARTBEAT_S,
    LEASE_S,
    Shard,
    application_name,
    rebalance,
    shard_of,
)
from recovery_coach.contract.topics import Topics
from recovery_coach.core.models import Profile
from recovery_coach.mqtt.link import make_client
from recovery_coach.runtime.service import Service, ShardRun, client_id
from recovery_coach.store import client_secret, make_engine
from recovery_coach.store.reshard import reshard
from recovery_coach.store.shard_leases import Fence, Leases

log = logging.getLogger(__name__)


# How long the broker holds the status keeper's will (MQTT 5 Will Delay Interval) before it
# says `offline`: long enough for another instance to take shard 0, and with it the keeper's
# session, which cancels the will (a stalled holder's lease goes stale in LEASE_S).
KEEPER_WILL_DELAY_S = int(LEASE_S) + 5


class Presence:
    """The instance's own MQTT clients.

    `<client_id>-<instance>` has its will on `<base>/status/<instance>` and says which shards
    the instance owns on `<base>/diagnostics/<instance>`.

    The shared `<base>/status` is kept by one client among all instances, the status keeper
    `<client_id>-status`, run by whichever instance owns shard 0. Its will (`offline`) is
    delayed by KEEPER_WILL_DELAY_S (MQTT 5): when the keeper's instance dies, the next owner
    of shard 0 connects with the same client id and resumes its session, and the broker
    then never sends the will. So `<base>/status` stays `online` while any instance lives,
    and says `offline` KEEPER_WILL_DELAY_S after the last one dies (at once on a clean stop).
    Over MQTT 3.1.1 there is no will delay: the will goes out at once, and the others answer
    it with `online` (milliseconds of `offline`)."""

    def __init__(self, broker: BrokerConfig, base_id: str, topics: Topics, instance: str) -> None:
        self.topics = topics
        self.instance = instance
        self.stopping = False
        self.shards: list[int] = []
        self.broker = broker
        self.base_id = base_id
        self.v5 = broker.protocol == "5"
        self.mine = make_client(broker, f"{base_id}-{instance}")
        self.mine.will_set(topics.instance_status(instance), "offline", qos=1, retain=True)
        self.mine.on_connect = self._mine_connected
        self.keeper: mqtt.Client | None = None
        # 3.1.1 only: a client that answers another instance's will with `online`.
        self.answerer: mqtt.Client | None = None
        if not self.v5:
            self.answerer = make_client(broker, f"{base_id}-{instance}-answer")
            self.answerer.on_connect = self._answerer_connected
            self.answerer.on_message = self._answer

    def start(self) -> None:
        for client in (self.mine, self.answerer):
            if client is not None:
                self._connect(client)

    def _connect(self, client: mqtt.Client, **kwargs: Any) -> None:
        client.connect_async(
            self.broker.host, self.broker.port, keepalive=self.broker.keepalive, **kwargs
        )
        client.loop_start()

    def _mine_connected(self, client: mqtt.Client, *_args: Any) -> None:
        client.publish(self.topics.instance_status(self.instance), "online", qos=1, retain=True)
        self._publish_shards()

    def _answerer_connected(self, client: mqtt.Client, *_args: Any) -> None:
        client.subscribe(self.topics.service_status, qos=1)

    def _answer(self, client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.payload == b"offline" and not self.stopping:  # another instance's will
            client.publish(self.topics.service_status, "online", qos=1, retain=True)

    # -- the status keeper: run while this instance owns shard 0

    def keep_status(self, keep: bool) -> None:
        if keep and self.keeper is None:
            self.keeper = self._keeper_client()
            if self.v5:
                props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                # The session outlives the will delay, so the next keeper can resume it.
                props.SessionExpiryInterval = 4 * KEEPER_WILL_DELAY_S
                self._connect(self.keeper, clean_start=False, properties=props)
            else:
                self._connect(self.keeper)
        elif not keep and self.keeper is not None:
            # A clean DISCONNECT drops the will: the status stays `online` for the next keeper.
            keeper, self.keeper = self.keeper, None
            keeper.disconnect()
            keeper.loop_stop()

    def _keeper_client(self) -> mqtt.Client:
        client = make_client(self.broker, f"{self.base_id}-status", persistent=True)
        props = None
        if self.v5:
            props = Properties(PacketTypes.WILLMESSAGE)  # type: ignore[no-untyped-call]
            props.WillDelayInterval = KEEPER_WILL_DELAY_S
        client.will_set(self.topics.service_status, "offline", 1, True, properties=props)
        client.on_connect = self._keeper_connected
        return client

    def _keeper_connected(
        self, client: mqtt.Client, _u: Any, flags: Any, reason: Any, _props: Any
    ) -> None:
        if reason.is_failure:
            return
        client.publish(self.topics.service_status, "online", qos=1, retain=True)
        resumed = bool(getattr(flags, "session_present", False))
        log.info(
            "status keeper connected (%s)",
            "session resumed: the previous keeper's will is cancelled" if resumed else "new",
        )

    # -- shards and stop

    def owns(self, shards: list[int]) -> None:
        self.keep_status(0 in shards)
        if shards != self.shards:
            self.shards = shards
            self._publish_shards()

    def _publish_shards(self) -> None:
        payload = {
            "instance": self.instance,
            "shards": self.shards,
            "updated_at": datetime.now(UTC).isoformat(),
        }
        self.mine.publish(
            self.topics.instance_diagnostics(self.instance), json.dumps(payload), qos=1, retain=True
        )

    def stop(self, *, last: bool) -> None:
        """A clean stop: this instance is offline (and no longer listed); `last`, the
        service is too."""
        self.stopping = True
        infos = [
            self.mine.publish(self.topics.instance_diagnostics(self.instance), b"", 1, True),
            self.mine.publish(self.topics.instance_status(self.instance), "offline", 1, True),
        ]
        if last:
            said_by = self.keeper or self.mine
            infos.append(said_by.publish(self.topics.service_status, "offline", 1, True))
        for info in infos:
            if info.rc == mqtt.MQTT_ERR_SUCCESS:
                info.wait_for_publish(2.0)
        for client in (self.mine, self.keeper, self.answerer):
            if client is not None:
                client.disconnect()
                client.loop_stop()


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
