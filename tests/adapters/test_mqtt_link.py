"""MqttLink against a real mosquitto: what paho keeps when a socket write fails."""

from __future__ import annotations

import socket
import time

from recovery_coach.contract.config import BrokerConfig
from recovery_coach.mqtt.link import MqttLink

from tests.support.mosquitto import MosquittoBroker
from tests.support.service_process import Recorder


def test_a_nudge_whose_socket_write_fails_is_handed_over_and_arrives_once(
    mosquitto: MosquittoBroker,
) -> None:
    """The broker goes away mid-write: paho keeps the QoS 1 message and resends it after the
    reconnect, so publish returns its id (before, None: the service then sent it again)."""
    topic = "rc_link/alex/nudge"
    rec = Recorder(mosquitto.host, mosquitto.port, [topic]).start()
    acked: list[int] = []
    link = MqttLink(
        BrokerConfig(host=mosquitto.host, port=mosquitto.port, client_id="rc-link-test"),
        "rc-link-test",
        "rc_link/status",
        [],
        on_message=lambda _m: None,
        on_connected=lambda _present: None,
        on_published=acked.append,
    )
    link.start()
    try:
        deadline = time.monotonic() + 10
        while not link.connected.is_set() and time.monotonic() < deadline:
            link.pump(0.05)
        assert link.connected.is_set()
        sock = link.client.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)  # the next write fails
        mid = link.publish(topic, '{"nudge_id": "n1"}', qos=1)
        assert mid is not None
        deadline = time.monotonic() + 15
        while mid not in acked and time.monotonic() < deadline:
            link.pump(0.05)
        assert mid in acked  # resent by paho after the reconnect, and acknowledged
        rec.wait_for(lambda r: bool(r.on(topic)), 5, "the nudge")
        assert [m.payload for m in rec.on(topic)] == [b'{"nudge_id": "n1"}']
    finally:
        link.stop()
        rec.stop()
