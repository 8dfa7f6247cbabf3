"""The floor: a bare paho-mqtt echo client (no persistence, no logic) in its own process.

It republishes every message on `<prefix>/req` to `<prefix>/resp` at QoS 1, acknowledging
automatically, with TCP_NODELAY like the service. Run: python -m bench.echo PORT PREFIX
"""

from __future__ import annotations

import signal
import socket
import sys
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def main() -> int:
    port, prefix = int(sys.argv[1]), sys.argv[2]
    ready = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"echo-{prefix}")
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)

    def on_socket_open(c: mqtt.Client, u: Any, sock: Any) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def on_connect(c: mqtt.Client, u: Any, flags: Any, rc: Any, props: Any) -> None:
        c.subscribe(f"{prefix}/req", qos=1)

    def on_subscribe(c: mqtt.Client, u: Any, mid: int, rcs: Any, props: Any) -> None:
        print("ready", flush=True)
        ready.set()

    def on_message(c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        c.publish(f"{prefix}/resp", msg.payload, qos=1)

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
    sys.exit(main())
