"""Tests of the Mosquitto fixtures (tests/mosquitto.py) with real paho-mqtt clients,
and of the example broker config in config/mosquitto/."""

from __future__ import annotations

import os
import queue
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.support.mosquitto import (
    BrokerFactory,
    BrokerStartError,
    MosquittoBroker,
    build_acl,
    example_broker,
    free_port,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_DIR = REPO / "config" / "mosquitto"
WAIT = 5.0  # seconds for anything that should happen "at once"
QUIET = 0.5  # seconds to wait to be sure that something does NOT happen


class Peer:
    """A paho client (VERSION2 callbacks) run on its own network thread, recording
    connection results and received messages for assertions."""

    def __init__(self, client: mqtt.Client) -> None:
        self.client = client
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connected = threading.Event()
        self.connect_result: Any = None
        self.session_present: bool | None = None
        self.subscribed: queue.Queue[list[Any]] = queue.Queue()
        self.published: set[int] = set()
        self._published_cv = threading.Condition()
        client.on_connect = self._on_connect
        client.on_message = lambda _c, _u, msg: self.messages.put(msg)
        client.on_subscribe = lambda _c, _u, _mid, codes, _p: self.subscribed.put(list(codes))
        client.on_publish = self._on_publish
        # paho retries a lost or refused connection after this many seconds (and
        # loop_stop() waits for that sleep): keep it short for fast tests.
        client.reconnect_delay_set(min_delay=0.2, max_delay=0.2)  # type: ignore[arg-type]

    def _on_connect(self, _c: Any, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        self.connect_result = reason
        self.session_present = bool(flags.session_present)
        self.connected.set()

    def _on_publish(self, _c: Any, _u: Any, mid: int, _reason: Any, _p: Any) -> None:
        with self._published_cv:
            self.published.add(mid)
            self._published_cv.notify_all()

    def connect(self, host: str, port: int, **kwargs: Any) -> Any:
        """Connect and wait for CONNACK; returns the reason code."""
        self.connected.clear()
        self.client.connect(host, port, keepalive=30, **kwargs)
        self.client.loop_start()
        assert self.connected.wait(WAIT), "no CONNACK"
        return self.connect_result

    def subscribe(self, topic: str, qos: int = 1) -> list[Any]:
        self.client.subscribe(topic, qos)
        return self.subscribed.get(timeout=WAIT)

    def publish(self, topic: str, payload: bytes | str, qos: int = 1) -> None:
        """Publish and, for QoS 1, wait for the broker's PUBACK."""
        info = self.client.publish(topic, payload, qos=qos)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, mqtt.error_string(info.rc)
        if qos:
            with self._published_cv:
                assert self._published_cv.wait_for(lambda: info.mid in self.published, WAIT), (
                    "no PUBACK"
                )

    def expect(self, timeout: float = WAIT) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=timeout)

    def expect_nothing(self, timeout: float = QUIET) -> None:
        try:
            msg = self.messages.get(timeout=timeout)
        except queue.Empty:
            return
        pytest.fail(f"unexpected message on {msg.topic}: {msg.payload!r}")

    def close(self) -> None:
        # disconnect() also stops paho's reconnect attempts, so loop_stop() is quick.
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def peers() -> Iterator[Callable[..., Peer]]:
    """``peers(broker, client_id, **paho_client_kwargs)`` -> a Peer, closed after the test."""
    made: list[Peer] = []

    def make(broker: MosquittoBroker, client_id: str = "", **kwargs: Any) -> Peer:
        peer = Peer(broker.paho_client(client_id, **kwargs))
        made.append(peer)
        return peer

    yield make
    for peer in made:
        peer.close()


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def persistent_session_props(expiry: int = 3600) -> Properties:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = expiry
    return props


# -- the plain session broker ----------------------------------------------------------


def test_round_trip_qos0_and_qos1(mosquitto: MosquittoBroker, peers: Callable[..., Peer]) -> None:
    topic = f"recovery_coach/{unique()}/nudge"
    sub = peers(mosquitto, unique("sub"))
    pub = peers(mosquitto, unique("pub"))
    assert sub.connect(mosquitto.host, mosquitto.port) == 0
    assert sub.subscribe(topic, qos=1)[0] == 1  # granted QoS 1
    assert pub.connect(mosquitto.host, mosquitto.port) == 0

    pub.publish(topic, b'{"n": 0}', qos=0)
    pub.publish(topic, b'{"n": 1}', qos=1)

    got = [sub.expect(), sub.expect()]
    assert [(m.topic, m.payload, m.qos) for m in got] == [
        (topic, b'{"n": 0}', 0),
        (topic, b'{"n": 1}', 1),
    ]


def test_burst_of_qos1_is_not_dropped(
    mosquitto: MosquittoBroker, peers: Callable[..., Peer]
) -> None:
    """Mosquitto's default limits (20 in flight, 1000 queued) would drop part of this."""
    topic = f"burst/{unique()}"
    n = 3000
    sub = peers(mosquitto, unique("sub"))
    sub.connect(mosquitto.host, mosquitto.port)
    sub.subscribe(topic)
    sub.client.loop_stop()  # a slow consumer: messages pile up in the broker
    pub = peers(mosquitto, unique("pub"))
    pub.connect(mosquitto.host, mosquitto.port)
    infos = [pub.client.publish(topic, str(i), qos=1) for i in range(n)]
    for info in infos:
        info.wait_for_publish(WAIT)
    sub.client.loop_start()
    payloads = [int(sub.expect().payload) for _ in range(n)]
    assert sorted(payloads) == list(range(n))


def test_broker_basics(mosquitto: MosquittoBroker) -> None:
    assert mosquitto.running
    assert mosquitto.host == "127.0.0.1"
    assert mosquitto.url == f"mqtt://127.0.0.1:{mosquitto.port}"
    assert "mosquitto version" in mosquitto.log_text()
    # Our brokers never use the system broker's port.
    assert mosquitto.port != 1883


# -- outages: stop / kill / start on the same port ------------------------------------------


def test_stop_start_keeps_the_port_and_start_is_fast(mosquitto_factory: BrokerFactory) -> None:
    t0 = time.monotonic()
    broker = mosquitto_factory()
    assert time.monotonic() - t0 < 2.0  # typically ~20 ms
    port, pid = broker.port, broker.pid
    broker.stop()
    assert not broker.running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((broker.host, port), timeout=0.5).close()
    broker.start()
    assert broker.running
    assert broker.port == port
    assert broker.pid != pid
    broker.restart(kill=True)
    assert broker.running
    assert broker.port == port
    socket.create_connection((broker.host, port), timeout=1).close()
    with pytest.raises(RuntimeError, match="already running"):
        broker.start()


def _queued_while_away(
    broker: MosquittoBroker, peers: Callable[..., Peer], outage: Callable[[], object]
) -> None:
    """A persistent MQTT 5 session subscribes, goes away, a QoS 1 message is
    published, the broker has an outage, and the subscriber must still get it."""
    topic = f"recovery_coach/{unique()}/nudge"
    sub_id = unique("sub")
    sub = peers(broker, sub_id)
    assert (
        sub.connect(
            broker.host, broker.port, clean_start=False, properties=persistent_session_props()
        )
        == 0
    )
    sub.subscribe(topic, qos=1)
    sub.close()

    pub = peers(broker, unique("pub"))
    pub.connect(broker.host, broker.port)
    pub.publish(topic, b"while you were away", qos=1)
    pub.close()

    outage()
    assert broker.running

    again = peers(broker, sub_id)
    assert (
        again.connect(
            broker.host, broker.port, clean_start=False, properties=persistent_session_props()
        )
        == 0
    )
    assert again.session_present is True
    msg = again.expect()
    assert (msg.topic, msg.payload, msg.qos) == (topic, b"while you were away", 1)


def test_persistent_session_survives_graceful_restart(
    mosquitto_factory: BrokerFactory, peers: Callable[..., Peer]
) -> None:
    broker = mosquitto_factory(autosave_interval=3600)  # only the SIGTERM save counts
    _queued_while_away(broker, peers, broker.restart)


def test_persistent_session_survives_kill_after_save(
    mosquitto_factory: BrokerFactory, peers: Callable[..., Peer]
) -> None:
    broker = mosquitto_factory(autosave_interval=3600)

    def crash() -> None:
        broker.save()
        broker.kill()
        broker.start()

    _queued_while_away(broker, peers, crash)


def test_persistent_session_survives_kill_after_autosave(
    mosquitto_factory: BrokerFactory, peers: Callable[..., Peer]
) -> None:
    broker = mosquitto_factory(autosave_interval=1)
    db = broker.persistence_dir / "mosquitto.db"

    def crash() -> None:
        # Wait for an autosave that happened after the message was queued.
        since = time.time_ns()
        deadline = time.monotonic() + 5
        while not (db.exists() and db.stat().st_mtime_ns > since):
            assert time.monotonic() < deadline, "no autosave"
            time.sleep(0.05)
        broker.kill()
        broker.start()

    _queued_while_away(broker, peers, crash)


def test_client_sees_outage_and_reconnects(
    mosquitto_factory: BrokerFactory, peers: Callable[..., Peer]
) -> None:
    broker = mosquitto_factory()
    peer = peers(broker, unique("c"))
    disconnected = threading.Event()
    peer.client.on_disconnect = lambda *_args: disconnected.set()
    peer.connect(broker.host, broker.port)
    broker.kill()
    assert disconnected.wait(WAIT)
    peer.connected.clear()
    broker.start()
    assert peer.connected.wait(WAIT), "paho did not reconnect to the restarted broker"


def test_port_taken_is_a_clear_error(mosquitto: MosquittoBroker) -> None:
    clash = MosquittoBroker(port=mosquitto.port)
    try:
        with pytest.raises(BrokerStartError, match="Address already in use"):
            clash.start()
    finally:
        clash.close()


def test_bad_config_error_carries_the_log(mosquitto_factory: BrokerFactory) -> None:
    broker = mosquitto_factory(start=False, extra_config="no_such_option 1")
    with pytest.raises(BrokerStartError, match="no_such_option"):
        broker.start()
    assert not broker.running


def test_close_leaves_no_process() -> None:
    broker = MosquittoBroker().start()
    pid, directory = broker.pid, broker.directory
    assert pid is not None
    broker.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not directory.exists()


# -- authentication and ACL -------------------------------------------------------------------

NOT_AUTHORIZED = {134, 135}  # MQTT 5: bad user name or password / not authorized


def test_auth_refuses_anonymous_and_wrong_password(
    mosquitto_factory: BrokerFactory, peers: Callable[..., Peer]
) -> None:
    broker = mosquitto_factory(users={"coach": "s3cret"})
    anon = peers(broker, unique("anon"))
    assert anon.connect(broker.host, broker.port).value in NOT_AUTHORIZED
    wrong = peers(broker, unique("wrong"), username="coach", password="nope")
    assert wrong.connect(broker.host, broker.port).value in NOT_AUTHORIZED
    right = peers(broker, unique("right"), username="coach", password="s3cret")
    assert right.connect(broker.host, broker.port) == 0


def test_acl_refuses_publishing_on_another_users_topic(
    mosquitto_factory: BrokerFactory, peers: Callable[..., Peer]
) -> None:
    broker = mosquitto_factory(
        users={"alex": "a-pw", "sam": "s-pw", "coach": "c-pw"},
        acl={"coach": [("readwrite", "recovery_coach/#")]},
        acl_patterns=[("readwrite", "recovery_coach/%u/#")],
    )
    coach = peers(broker, unique("coach"), username="coach", password="c-pw")
    coach.connect(broker.host, broker.port)
    coach.subscribe("recovery_coach/#")

    # Refused: dropped (MQTT 5 PUBACK "not authorized"), and Mosquitto 2.0 then
    # closes the connection (eclipse-mosquitto/mosquitto#2579), so each refused
    # publish gets a connection of its own.
    publish_as(broker, peers, "alex", "a-pw", "recovery_coach/sam/soreness", b'{"level": 9}')
    alex = peers(broker, unique("alex"), username="alex", password="a-pw")
    alex.connect(broker.host, broker.port)
    alex.publish("recovery_coach/alex/soreness", b'{"level": 2}')
    msg = coach.expect()
    assert (msg.topic, msg.payload) == ("recovery_coach/alex/soreness", b'{"level": 2}')
    coach.expect_nothing()

    # Reading is confined too: alex does not get sam's nudges.
    alex.subscribe("recovery_coach/+/nudge")
    coach.publish("recovery_coach/sam/nudge", b"for sam")
    coach.publish("recovery_coach/alex/nudge", b"for alex")
    assert alex.expect().payload == b"for alex"
    alex.expect_nothing()


def publish_as(
    broker: MosquittoBroker,
    peers: Callable[..., Peer],
    username: str,
    password: str,
    topic: str,
    payload: bytes,
) -> None:
    """Publish once (QoS 1) from a connection of its own and close it."""
    peer = peers(broker, unique(username), username=username, password=password)
    assert peer.connect(broker.host, broker.port) == 0
    peer.publish(topic, payload)
    peer.close()


def test_build_acl_text() -> None:
    text = build_acl(
        {"coach": [("read", "a/#"), ("write", "b")]},
        patterns=[("readwrite", "x/%u/#")],
        anonymous=[("read", "pub/#")],
    )
    assert text.splitlines()[1:] == [
        "topic read pub/#",
        "pattern readwrite x/%u/#",
        "",
        "user coach",
        "topic read a/#",
        "topic write b",
    ]
    with pytest.raises(ValueError, match="access"):
        build_acl({"u": [("publish", "a")]})


# -- TLS ----------------------------------------------------------------------------------------


def test_tls_verifies_against_the_test_ca(
    mosquitto_factory: BrokerFactory, peers: Callable[..., Peer]
) -> None:
    broker = mosquitto_factory(tls=True)
    assert broker.tls_port is not None
    assert broker.tls_files is not None
    for name in ("ca_cert", "server_cert", "server_key", "client_cert", "client_key"):
        assert getattr(broker.tls_files, name).is_file()

    topic = f"tls/{unique()}"
    good = peers(broker, unique("tls"), tls=True)
    assert good.connect("localhost", broker.tls_port) == 0  # host name checked too
    good.subscribe(topic)
    plain = peers(broker, unique("plain"))
    plain.connect(broker.host, broker.port)
    plain.publish(topic, b"over tls")
    assert good.expect().payload == b"over tls"

    no_ca = peers(broker, unique("no-ca"), tls=True, ca=False)
    with pytest.raises(ssl.SSLCertVerificationError):
        no_ca.client.connect(broker.host, broker.tls_port)


def test_tls_require_certificate(
    mosquitto_factory: BrokerFactory, peers: Callable[..., Peer]
) -> None:
    broker = mosquitto_factory(require_certificate=True)
    assert broker.tls_port is not None
    with_cert = peers(broker, unique("cert"), tls=True, client_cert=True)
    assert with_cert.connect(broker.host, broker.tls_port) == 0

    without = peers(broker, unique("nocert"), tls=True)
    gone = threading.Event()
    without.client.on_disconnect = lambda *_args: gone.set()
    try:
        # With TLS 1.3 the server refuses a missing client certificate only after
        # the client's side of the handshake is done: connect() may still succeed.
        without.client.connect(broker.host, broker.tls_port)
    except (ssl.SSLError, OSError):
        return
    without.client.loop_start()
    assert gone.wait(WAIT), "a client without a certificate stayed connected"
    assert without.connect_result is None  # never got a CONNACK


# -- the example config in config/mosquitto/ ----------------------------------------------------


def test_example_config_runs_and_confines_each_user(
    mosquitto_factory: BrokerFactory, peers: Callable[..., Peer]
) -> None:
    users = {"recovery_coach": "c", "homeassistant": "h", "alex": "a", "sam": "s"}
    broker = example_broker(mosquitto_factory, users)
    log = broker.log_text()
    assert "Error" not in log, log
    assert "Warning: ACL" not in log, log

    def peer(user: str) -> Peer:
        p = peers(broker, unique(user), username=user, password=users[user])
        assert p.connect(broker.host, broker.port) == 0
        return p

    assert peers(broker, unique("anon")).connect(broker.host, broker.port).value in NOT_AUTHORIZED

    coach, ha, alex, sam = peer("recovery_coach"), peer("homeassistant"), peer("alex"), peer("sam")
    coach.subscribe("recovery_coach/#")
    coach.subscribe("homeassistant/status")
    ha.subscribe("recovery_coach/+/nudge")
    alex.subscribe("recovery_coach/#")  # granted, but filtered to alex's topics on delivery

    # Devices publish only their own inbound topics (refused publishes are dropped
    # and, with Mosquitto 2.0, cost the client its connection: one each).
    for user, topic in [
        ("alex", "recovery_coach/sam/workout/completed"),  # another person's event
        ("alex", "recovery_coach/alex/nudge"),  # only the service makes nudges
        ("alex", "recovery_coach/alex/state"),
        ("alex", "recovery_coach/status"),
        ("alex", "homeassistant/status"),
        ("sam", "recovery_coach/alex/nudge/n1/ack"),
    ]:
        publish_as(broker, peers, user, users[user], topic, b"forged")
    alex.publish("recovery_coach/alex/workout/completed", b"alex done")
    alex.publish("recovery_coach/alex/nudge/n1/ack", b"{}")
    got = [(m.topic, m.payload) for m in (coach.expect(), coach.expect())]
    assert got == [
        ("recovery_coach/alex/workout/completed", b"alex done"),
        ("recovery_coach/alex/nudge/n1/ack", b"{}"),
    ]
    coach.expect_nothing(0.1)
    # alex receives own messages (read on recovery_coach/alex/#), nothing else.
    assert [alex.expect().topic, alex.expect().topic] == [
        "recovery_coach/alex/workout/completed",
        "recovery_coach/alex/nudge/n1/ack",
    ]

    # The service publishes nudges, state and discovery; HA and the right person see them.
    sam.subscribe("recovery_coach/sam/#")
    coach.publish("recovery_coach/sam/nudge", b"for sam")
    coach.publish("recovery_coach/alex/nudge", b"for alex")
    coach.publish("recovery_coach/status", b"online")
    coach.publish("homeassistant/sensor/rc_alex/config", b"{}")
    assert [ha.expect().payload, ha.expect().payload] == [b"for sam", b"for alex"]
    assert sam.expect().payload == b"for sam"
    assert alex.expect().payload == b"for alex"  # not sam's, not the service status
    alex.expect_nothing(0.1)
    sam.expect_nothing(0.1)
    # (the service's own subscription to recovery_coach/# sees its publishes too)
    assert [coach.expect().topic for _ in range(3)] == [
        "recovery_coach/sam/nudge",
        "recovery_coach/alex/nudge",
        "recovery_coach/status",
    ]

    # Home Assistant's birth message reaches the service.
    ha.publish("homeassistant/status", b"online")
    msg = coach.expect()
    assert (msg.topic, msg.payload) == ("homeassistant/status", b"online")

    # TLS listener of the example config, with the same accounts.
    tls = peers(broker, unique("tls"), username="alex", password="a", tls=True)
    assert broker.tls_port is not None
    assert tls.connect("localhost", broker.tls_port) == 0


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
