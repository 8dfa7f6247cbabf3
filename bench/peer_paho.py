"""Peer 1: a bare paho-mqtt automation, as a hobbyist would write one. Not durable.

It reads workout events and publishes the same first nudge the service does (R1's
"cool down now") at once, and the "cooldown done" 5 minutes later on a threading.Timer:
no rules beyond that, no store, nothing survives a restart. The benchmark measures the
service against it through the same mosquitto, with the same events.

Run: python -m bench.peer_paho PORT BASE
"""

from __future__ import annotations

import hashlib
import json
import signal
import socket
import sys
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

COOLDOWN = timedelta(minutes=5)


def nudge(user: str, event_id: str, kind: str, due: datetime) -> str:
    digest = hashlib.sha256(f"{user}|{event_id}|{kind}".encode()).hexdigest()[:16]
    return json.dumps(
        {
            "nudge_id": f"{kind}-{digest}",
            "user": user,
            "rule": "R1",
            "kind": kind,
            "source_event_id": event_id,
            "due_at": due.isoformat(),
            "title": "Cool down now" if kind == "cooldown_start" else "Cooldown done",
        }
    )


def main() -> int:
    port, base = int(sys.argv[1]), sys.argv[2]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"peer-paho-{port}")
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)

    def on_socket_open(c: mqtt.Client, u: Any, sock: Any) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def on_connect(c: mqtt.Client, u: Any, flags: Any, rc: Any, props: Any) -> None:
        c.subscribe(f"{base}/+/workout/completed", qos=1)

    def on_subscribe(c: mqtt.Client, u: Any, mid: int, rcs: Any, props: Any) -> None:
        print("ready", flush=True)

    def on_message(c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        user = msg.topic.split("/")[-3]
        event = json.loads(msg.payload)
        now = datetime.now(UTC)
        topic = f"{base}/{user}/nudge"
        c.publish(topic, nudge(user, event["event_id"], "cooldown_start", now), qos=1)
        later = nudge(user, event["event_id"], "cooldown_done", now + COOLDOWN)
        timer = threading.Timer(COOLDOWN.total_seconds(), c.publish, (topic, later, 1))
        timer.daemon = True
        timer.start()

    client.on_socket_open = on_socket_open
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    client.connect("127.0.0.1", port)
    client.loop_start()
    stop.wait()
    client.disconnect()
    client.loop_stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
