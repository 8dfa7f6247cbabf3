"""What the worker needs from MQTT, so that it can run on the real link or in memory.

`MqttLink` (paho) implements it for `run`; `MemoryTransport` for tests of the worker
without a broker: it records what is published and acknowledged, and answers every QoS 1
publish with a PUBACK on the next pump, as a broker would.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Inbound:
    """A message as it arrives: the seam's own type, so the worker needs no MQTT client."""

    mid: int
    qos: int
    topic: str
    payload: bytes
    retain: bool
    dup: bool = False  # the broker's redelivery of a message it sent before


class Transport(Protocol):
    disconnects: int

    def is_connected(self) -> bool: ...

    def pump(self, timeout: float) -> None: ...

    def publish(
        self,
        topic: str,
        payload: str | bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        expiry_seconds: int | None = None,
    ) -> int | None: ...

    def ack(self, mid: int, qos: int) -> None: ...


@dataclass(frozen=True)
class Sent:
    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass
class MemoryTransport:
    on_published: Callable[[int], None] = lambda _mid: None
    connected: bool = True
    disconnects: int = 0
    sent: list[Sent] = field(default_factory=list)
    acked: list[int] = field(default_factory=list)
    _pubacks: list[int] = field(default_factory=list)
    _mid: int = 0

    def is_connected(self) -> bool:
        return self.connected

    def pump(self, timeout: float) -> None:
        pubacks, self._pubacks = self._pubacks, []
        for mid in pubacks:
            self.on_published(mid)
        if not pubacks and timeout > 0:
            time.sleep(timeout)  # as select() waits on a quiet socket

    def publish(
        self,
        topic: str,
        payload: str | bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        expiry_seconds: int | None = None,
    ) -> int | None:
        if not self.connected:
            return None
        body = payload.encode() if isinstance(payload, str) else payload
        self.sent.append(Sent(topic, body, qos, retain))
        self._mid = self._mid % 65535 + 1
        if qos > 0:
            self._pubacks.append(self._mid)
        return self._mid

    def ack(self, mid: int, qos: int) -> None:
        if qos > 0:
            self.acked.append(mid)

    def on(self, topic: str) -> list[Sent]:
        return [s for s in self.sent if s.topic == topic]
