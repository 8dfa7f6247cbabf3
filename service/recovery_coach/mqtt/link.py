"""The MQTT seam (paho-mqtt 2.x, callback API v2): connect, subscribe, publish, ack.

A persistent session (clean start off, a session expiry, a stable client id) so QoS 1 events
sent while the service was down arrive when it returns; subscriptions are made in
`on_connect` so they come back after every reconnect; inbound messages are acknowledged only
when the service says so (manual ack), after their decisions are stored.

No network thread of paho's own: the service's worker calls `pump`, so a message is read,
decided, stored and answered in one thread, and `publish` writes to the socket at once
(paho's threaded loop costs two thread hand-offs and GIL switches per event).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from recovery_coach.contract.config import BrokerConfig
from recovery_coach.contract.transport import Inbound
from recovery_coach.core.backoff import MOST_S, Backoff
from recovery_coach.mqtt import broker_hints
from recovery_coach.mqtt.embedded_broker import what_listens

log = logging.getLogger(__name__)

CONNACK_WAIT_S = 10.0  # a broker answers a CONNECT at once; this long is no broker
SHORT_LIFE_S = 10.0  # a connection closed this soon after it opened, again and again


@dataclass(frozen=True)
class Credentials:
    username: str | None
    password: str | None


def read_credentials(cfg: BrokerConfig) -> Credentials:
    """Username and password from the environment or a file, never from the YAML."""
    username = os.environ.get(cfg.username_env) or cfg.username
    password = os.environ.get(cfg.password_env)
    if password is None and cfg.password_file is not None:
        password = Path(cfg.password_file).read_text(encoding="utf-8").strip()
    return Credentials(username, password)


def unreadable_password_file(cfg: BrokerConfig) -> str | None:
    """The line for a password file that cannot be read here, or None."""
    try:
        read_credentials(cfg)
    except OSError as exc:
        return (
            f"broker.password_file: cannot read {cfg.password_file} ({exc.strerror or exc}): "
            "it must be a file holding only the password, readable by the service"
        )
    return None


def credentials_problem(cfg: BrokerConfig) -> str | None:
    """What is wrong with the broker login as configured, in one line, before any attempt:
    a password file that cannot be read, a username with no password, a password with no
    username."""
    if (unreadable := unreadable_password_file(cfg)) is not None:
        return unreadable
    creds = read_credentials(cfg)
    if creds.username is not None and not creds.password:
        return (
            f"broker.username '{creds.username}' has no password: set broker.password_file "
            f"(a file holding only the password) or the environment variable {cfg.password_env}"
        )
    if creds.username is None and creds.password:
        return (
            f"a broker password is set but no username: set broker.username (or the "
            f"environment variable {cfg.username_env})"
        )
    return None


def make_client(
    cfg: BrokerConfig,
    client_id: str,
    *,
    persistent: bool = False,
    manual_ack: bool = False,
    on_socket_open: Any = None,
) -> mqtt.Client:
    """The one place a paho client is made: protocol, session, credentials and TLS from the
    config, for the service and for `status` and `publish-example` alike."""
    v5 = cfg.protocol == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        # MQTT 5: clean start is chosen at connect; 3.1.1: a persistent session or not.
        clean_session=None if v5 else not persistent,
        manual_ack=manual_ack,
    )
    client.enable_logger(logging.getLogger("paho"))
    creds = read_credentials(cfg)
    if creds.username is not None:
        client.username_pw_set(creds.username, creds.password)
    if cfg.tls is not None:
        client.tls_set(
            ca_certs=str(cfg.tls.ca_file) if cfg.tls.ca_file else None,
            certfile=str(cfg.tls.cert_file) if cfg.tls.cert_file else None,
            keyfile=str(cfg.tls.key_file) if cfg.tls.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
        if cfg.tls.insecure:
            log.warning("TLS hostname verification is OFF (broker.tls.insecure: true)")
            client.tls_insecure_set(True)
    if on_socket_open is not None:
        client.on_socket_open = on_socket_open
    return client


class MqttLink:
    """One paho client with the callbacks the service needs."""

    def __init__(
        self,
        cfg: BrokerConfig,
        client_id: str,
        status_topic: str,
        subscriptions: list[str],
        on_message: Callable[[Inbound], None],
        on_connected: Callable[[bool], None],
        on_published: Callable[[int], None],
        may_connect: Callable[[], bool] = lambda: True,
        shown_id: str | None = None,
    ) -> None:
        self.cfg = cfg
        # Sharded: asked before every connection attempt, so that an instance whose shard
        # was taken over never takes the shard's session back from its new owner.
        self.may_connect = may_connect
        self.status_topic = status_topic
        self.subscriptions = subscriptions
        self._on_message = on_message
        self._on_connected = on_connected
        self._on_published = on_published
        self.v5 = cfg.protocol == "5"
        self._publish_props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        self.connected = threading.Event()
        self._stopping = False
        self.disconnects = 0
        self._started = False
        self._next_attempt = 0.0  # monotonic time of the next connection attempt
        self._backoff = Backoff()  # between connection attempts
        self._outage_logged = False  # "cannot connect" said for this outage
        self._packets = 0  # messages and PUBACKs seen, to know when a read found nothing
        self.client_id = client_id
        self.shown_id = shown_id or client_id  # as logged: without its secret part
        self._said: set[str] = set()  # problems said since the last good connection
        self._attempt_at: float | None = None  # TCP up, CONNACK awaited since (monotonic)
        self._connected_at = 0.0
        self._short_lives: list[float] = []  # when connections that lasted seconds ended
        self.problem: str | None = None  # why the broker will not have us, while it lasts
        self.client = make_client(
            cfg, client_id, persistent=True, manual_ack=True, on_socket_open=self._socket_open
        )
        # No client-side cap: with one, paho rescans every outgoing message on each PUBACK
        # (quadratic in a burst). Brokers queue or refuse what they will not take in flight.
        self.client.max_inflight_messages_set(0)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        # The worker blocks in a connection attempt; a short one keeps a stop during an
        # outage within a few seconds.
        self.client.connect_timeout = 2.0
        self.client.will_set(status_topic, "offline", qos=1, retain=True)
        self.client.on_connect = self._connect
        self.client.on_disconnect = self._disconnect
        self.client.on_message = self._message
        self.client.on_publish = self._publish

    # -- paho callbacks (in the worker's thread: it pumps the loop)

    @staticmethod
    def _socket_open(client: mqtt.Client, userdata: Any, sock: Any) -> None:
        # Nagle's algorithm would hold small nudges back for up to 40 ms.
        if isinstance(sock, socket.socket | ssl.SSLSocket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._attempt_at = None
        if reason.is_failure:
            creds = read_credentials(self.cfg)
            self._say(
                broker_hints.refusal(
                    reason.value, str(reason), creds.username, creds.password is not None
                )
            )
            return
        client.publish(self.status_topic, "online", qos=1, retain=True)
        self._subscribe(self.subscriptions)
        self._backoff.reset()
        self._outage_logged = False
        self._said.clear()
        self.problem = None
        self._connected_at = time.monotonic()
        log.info(
            "connected to %s:%s (session %s)",
            self.cfg.host,
            self.cfg.port,
            "resumed" if flags.session_present else "new",
        )
        self.connected.set()
        self._on_connected(flags.session_present)

    def _disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self.connected.is_set() and not self._stopping:
            self.disconnects += 1
            if reason.value == broker_hints.SESSION_TAKEN_OVER or self._taken_again_and_again():
                self._say(broker_hints.taken_over(self.shown_id), level=logging.WARNING)
            else:
                log.warning("disconnected from the broker (%s); reconnecting", reason)
        self.connected.clear()

    def _taken_again_and_again(self) -> bool:
        """A broker that says nothing of a takeover (mosquitto before 2.0.15, MQTT 3.1.1)
        only closes the connection: closed seconds after it opened, three times in two
        minutes, it is another client with our client id."""
        now = time.monotonic()
        if now - self._connected_at < SHORT_LIFE_S:
            self._short_lives = [t for t in self._short_lives if now - t < 120] + [now]
        return len(self._short_lives) >= 3

    def _say(self, problem: str, level: int = logging.ERROR) -> None:
        """One line per problem until the next good connection (then at debug)."""
        self.problem = problem
        if problem in self._said:
            log.debug("%s", problem)
            return
        self._said.add(problem)
        log.log(level, "%s", problem)

    def _message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._packets += 1
        self._on_message(
            Inbound(msg.mid, msg.qos, msg.topic, bytes(msg.payload), msg.retain, bool(msg.dup))
        )

    def _publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._packets += 1
        self._on_published(mid)

    # -- used by the service (any thread)

    def subscribe_more(self, topics: list[str]) -> None:
        """Add subscriptions (a shard's new person): now, and after every reconnect."""
        new = [t for t in topics if t not in self.subscriptions]
        if not new:
            return
        self.subscriptions = [*self.subscriptions, *new]
        if self.connected.is_set():
            self._subscribe(new)

    def _subscribe(self, topics: list[str]) -> None:
        """QoS 1; MQTT 5: not our own messages back."""
        if not topics:
            return
        if self.v5:
            opts = SubscribeOptions(qos=1, noLocal=True)
            self.client.subscribe([(t, opts) for t in topics])
        else:
            self.client.subscribe([(t, 1) for t in topics])

    def is_connected(self) -> bool:
        return self.connected.is_set()

    def start(self) -> None:
        """Remember where to connect; the first `pump` connects."""
        props = None
        if self.v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = int(self.cfg.session_expiry_hours * 3600)
        self.client.connect_async(
            self.cfg.host,
            self.cfg.port,
            keepalive=self.cfg.keepalive,
            clean_start=False if self.v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            properties=props,
        )
        self._started = True

    def pump(self, timeout: float, max_reads: int = 1000) -> None:
        """Do the network's work in the calling thread: connect (with back-off), read what
        has arrived (waiting up to `timeout` for something), write, keep alive."""
        if not self._started:
            time.sleep(timeout)
            return
        if self.client.socket() is None:
            self._connect_now(timeout)
            return
        attempt = self._attempt_at
        if attempt is not None and time.monotonic() - attempt > CONNACK_WAIT_S:
            self._not_mqtt()  # connected, but no CONNACK: is it a broker at all?
            return
        rc = self.client.loop(timeout)
        # loop() reads about one packet; drain what else is readable, without waiting.
        for _ in range(max_reads):
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
            seen = self._packets
            rc = self.client.loop_read()
            if self._packets == seen:
                break
        if rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_AGAIN):
            if self._attempt_at is not None:  # dropped before any CONNACK: what is there?
                self._not_mqtt()
                return
            self.connected.clear()
            self._next_attempt = time.monotonic() + self._backoff.next()
            self._outage_logged = False  # the first failed attempt of this outage is said

    def _not_mqtt(self) -> None:
        """The connection opened but no CONNACK came: say what listens there instead."""
        self._attempt_at = None
        with contextlib.suppress(Exception):
            self.client.disconnect()
        sock = self.client.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
        self.connected.clear()
        self._next_attempt = time.monotonic() + self._backoff.next()
        what = what_listens(self.cfg.host, self.cfg.port)
        if what is None:  # an MQTT broker after all, slow to answer us
            what = f"no CONNACK within {CONNACK_WAIT_S:g} s"
        self._say(broker_hints.not_mqtt(self.cfg.host, self.cfg.port, what))

    def _connect_now(self, timeout: float) -> None:
        wait = self._next_attempt - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, timeout))
            return
        if not self.may_connect():
            self._next_attempt = time.monotonic() + self._backoff.next()
            return
        try:
            self.client.reconnect()
            self._attempt_at = time.monotonic()
        except (OSError, ssl.SSLError) as exc:
            if not self._outage_logged or log.isEnabledFor(logging.DEBUG):
                self._outage_logged = True
                log.warning(
                    "cannot connect to %s:%s: %s; retrying (back-off up to %.0f s)",
                    self.cfg.host,
                    self.cfg.port,
                    exc,
                    MOST_S,
                )
            self._next_attempt = time.monotonic() + self._backoff.next()

    def ack(self, mid: int, qos: int) -> None:
        if qos > 0:
            self.client.ack(mid, qos)

    def publish(
        self,
        topic: str,
        payload: str | bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        expiry_seconds: int | None = None,
    ) -> int | None:
        """Publish; returns the message id to await PUBACK for, None when not handed over."""
        props = None
        if self.v5 and expiry_seconds is not None:
            # A copy of one template: Properties() rebuilds its name tables each time, which
            # was a fifth of the worker's time per nudge. paho packs the copy again for a
            # resend, so each message keeps its own.
            props = copy.copy(self._publish_props)
            props.MessageExpiryInterval = max(1, expiry_seconds)
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        if info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            return info.mid
        if qos > 0 and info.mid:
            # The socket write failed (the broker went away mid-write), but paho keeps a
            # QoS 1 message and resends it after the reconnect: it is handed over, and
            # treating it as not sent would send it a second time.
            log.warning("publish to %s: %s; paho resends it", topic, mqtt.error_string(info.rc))
            return info.mid
        log.warning("publish to %s failed: %s", topic, mqtt.error_string(info.rc))
        return None

    def stop(self, timeout: float = 2.0, *, offline: bool = True) -> None:
        """Publish `offline` (waiting for its PUBACK), then disconnect. Call after the worker.
        `offline=False`: the shard was taken over, and its new owner's status stands."""
        self._stopping = True
        if self.connected.is_set() and offline:
            info = self.client.publish(self.status_topic, "offline", qos=1, retain=True)
            deadline = time.monotonic() + timeout
            while not info.is_published() and time.monotonic() < deadline:
                if self.client.loop(0.05) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break
        self.client.disconnect()
        self.connected.clear()
