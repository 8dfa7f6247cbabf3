"""A sharded instance's presence on the broker: its own status and shards, and the shared
`<base>/status` kept by one client among all instances (runtime/cluster.py runs it)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from recovery_coach.contract.config import BrokerConfig
from recovery_coach.contract.shards import LEASE_S
from recovery_coach.contract.topics import Topics
from recovery_coach.mqtt.link import make_client

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
