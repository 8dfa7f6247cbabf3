"""The embedded MQTT broker (amqtt, pure Python) for `recovery-coach run` with no `broker`.

It runs in its own thread with its own asyncio loop. If the port is taken, by a broker that
answers MQTT we use that broker (and say so); by anything else we stop with one clear line.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from concurrent.futures import Future
from typing import Any

log = logging.getLogger(__name__)


class PortTakenError(Exception):
    """The embedded broker's port is used by something that does not speak MQTT."""


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def speaks_mqtt(host: str, port: int, timeout: float = 2.0) -> bool:
    """Send an MQTT 3.1.1 CONNECT and see whether a CONNACK comes back."""
    client_id = b"rc-probe"
    var = b"\x00\x04MQTT\x04\x02\x00\x05"
    body = var + len(client_id).to_bytes(2, "big") + client_id
    packet = bytes([0x10, len(body)]) + body
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(packet)
            reply = s.recv(4)
            if len(reply) >= 1 and reply[0] == 0x20:
                s.sendall(b"\xe0\x00")  # DISCONNECT
                return True
    except OSError:
        return False
    return False


class EmbeddedBroker:
    """amqtt on host:port, in a daemon thread."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="embedded-broker", daemon=True)
        self._broker: Any = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def start(self, timeout: float = 10.0) -> None:
        from amqtt.broker import Broker

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "sys_interval": 0,
            "auth": {"allow-anonymous": True},
            "topic-check": {"enabled": False},
        }
        self._thread.start()

        async def boot() -> None:
            self._broker = Broker(config, loop=self._loop)
            await self._broker.start()

        fut: Future[None] = asyncio.run_coroutine_threadsafe(boot(), self._loop)
        fut.result(timeout)
        log.info("embedded MQTT broker listening on %s:%s", self.host, self.port)

    def stop(self, timeout: float = 5.0) -> None:
        if self._broker is not None:
            fut = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
            try:
                fut.result(timeout)
            except Exception:
                log.debug("embedded broker shutdown raised", exc_info=True)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
