"""The floor: a bare paho-mqtt echo client (no persistence, no logic) in its own process.

It republishes every message on `<prefix>/req` to `<prefix>/resp` at QoS 1, acknowledging
automatically, with TCP_NODELAY like the service. Run: python -m bench.echo PORT PREFIX
"""

from __future__ import annotations

import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def serve(
    port: int,
    client_id: str,
    topic: str,
    on_message: Callable[[mqtt.Client, bytes | bytearray, str], None],
) -> int:
    """A bare paho client in this process until SIGTERM: unlimited in flight, TCP_NODELAY,
    `topic` subscribed at QoS 1, "ready" printed once the broker has taken the subscription;
    `on_message(client, payload, topic)` for each message. Shared with bench/peer_paho.py."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)

    def on_socket_open(c: mqtt.Client, u: Any, sock: Any) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def on_connect(c: mqtt.Client, u: Any, flags: Any, rc: Any, props: Any) -> None:
        c.subscribe(topic, qos=1)

    def on_subscribe(c: mqtt.Client, u: Any, mid: int, rcs: Any, props: Any) -> None:
        print("ready", flush=True)

    def message(c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        on_message(c, msg.payload, msg.topic)

    client.on_socket_open = on_socket_open
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = message
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    client.connect("127.0.0.1", port)
    client.loop_start()
    stop.wait()
    client.disconnect()
    client.loop_stop()
    return 0


def main() -> int:
    port, prefix = int(sys.argv[1]), sys.argv[2]

    def echo(c: mqtt.Client, payload: bytes | bytearray, _topic: str) -> None:
        c.publish(f"{prefix}/resp", payload, qos=1)

    return serve(port, f"echo-{prefix}", f"{prefix}/req", echo)


if __name__ == "__main__":
    sys.exit(main())
