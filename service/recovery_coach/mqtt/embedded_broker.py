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


def _connect_packet() -> bytes:
    client_id = b"rc-probe"
    var = b"\x00\x04MQTT\x04\x02\x00\x05"
    body = var + len(client_id).to_bytes(2, "big") + client_id
    return bytes([0x10, len(body)]) + body


def _http(host: str, port: int, timeout: float) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"HEAD / HTTP/1.0\r\n\r\n")
            if s.recv(5) == b"HTTP/":
                return "an HTTP server answers (Home Assistant's web port is one, 8123)"
    except OSError:
        pass
    return None


def speaks_mqtt(host: str, port: int, timeout: float = 2.0) -> bool:
    """Send an MQTT 3.1.1 CONNECT and see whether a CONNACK comes back."""
    return what_listens(host, port, timeout) is None


def what_listens(host: str, port: int, timeout: float = 2.0) -> str | None:
    """None when an MQTT broker answers a CONNECT on host:port; else what does, in words
    (an HTTP server such as Home Assistant's web port, PostgreSQL, SSH, a TLS port...)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(_connect_packet())
            reply = s.recv(64)
            if reply[:1] == b"\x20":
                s.sendall(b"\xe0\x00")  # DISCONNECT
                return None
    except TimeoutError:  # an HTTP server waits for the end of a request line: ask it one
        return _http(host, port, timeout) or f"nothing answered an MQTT CONNECT in {timeout:g} s"
    except ConnectionRefusedError:
        return "nothing listens there (connection refused)"
    except OSError as exc:
        return f"the connection failed ({exc.strerror or exc})"
    if reply.startswith(b"HTTP/"):
        return "an HTTP server answers (Home Assistant's web port is one, 8123)"
    if reply.startswith(b"SSH-"):
        return "an SSH server answers"
    if reply[:1] in (b"\x15", b"\x16"):
        return "a TLS server answers: set broker.tls for it"
    if reply[:1] == b"E" or port == 5432:
        return "a PostgreSQL server answers, or something else that is not a broker"
    if not reply:
        return "it closed the connection without answering (a TLS port without broker.tls?)"
    return f"it answered {reply[:16]!r}, which is not MQTT"


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
