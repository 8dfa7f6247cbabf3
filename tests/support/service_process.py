"""The live service as a real child process, and an MQTT recorder, for end-to-end tests.

The service runs as `python -m recovery_coach.cli run` so that tests can SIGKILL it like
a power cut would; nothing in it is mocked. Waits are bounded and fail with the service's log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

HOST = "127.0.0.1"


def midday_zone(now: datetime | None = None) -> str:
    """An Etc/GMT zone where it is about midday now, so no test nudge meets the sleep window."""
    now = now or datetime.now(UTC)
    offset = (12 - now.hour + 12) % 24 - 12  # -12..11 hours from UTC
    # Etc/GMT signs are inverted (POSIX): Etc/GMT-3 is UTC+3.
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


def user_config(**over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "name": "Test",
        "timezone": midday_zone(),
        "weight_kg": 80,
        "goal": "general",
        "wake_time": "07:00",
    }
    cfg.update(over)
    return cfg


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    at: float

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class Recorder:
    """A paho client that records everything on its topics (QoS 1, persistent session)."""

    host: str
    port: int
    topics: list[str]
    username: str | None = None
    password: str | None = None
    tls_ca: str | None = None
    messages: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"recorder-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv311,
            clean_session=False,
        )
        if self.username:
            self.client.username_pw_set(self.username, self.password)
        if self.tls_ca:
            self.client.tls_set(ca_certs=self.tls_ca)
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    def _on_connect(self, client: mqtt.Client, u: Any, flags: Any, rc: Any, props: Any) -> None:
        if not rc.is_failure:
            client.subscribe([(t, 1) for t in self.topics])
            self._connected.set()

    def _on_message(self, client: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Received(msg.topic, bytes(msg.payload), msg.retain, time.time()))

    def start(self) -> Recorder:
        self.client.connect(self.host, self.port)
        self.client.loop_start()
        if not self._connected.wait(5):
            raise TimeoutError("recorder could not connect")
        time.sleep(0.2)  # let the SUBACK land before anything is published
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def on(self, topic: str) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if mqtt.topic_matches_sub(topic, m.topic)]

    def nudges(self, user: str, base: str) -> list[dict[str, Any]]:
        return [m.json() for m in self.on(f"{base}/{user}/nudge")]

    def all_nudges(self, base: str, kind: str | None = None) -> list[dict[str, Any]]:
        """Every user's nudges received, in order; only those of `kind` when given."""
        found = [m.json() for m in self.on(f"{base}/+/nudge")]
        return [n for n in found if kind is None or n["kind"] == kind]

    def wait_for(
        self, predicate: Callable[[Recorder], bool], timeout: float, what: str = "condition"
    ) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if predicate(self):
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def publish(
    port: int,
    topic: str,
    payload: Any,
    *,
    host: str = HOST,
    username: str | None = None,
    password: str | None = None,
    tls_ca: str | None = None,
    qos: int = 1,
    retain: bool = False,
) -> None:
    """Publish one message (dicts as JSON) at QoS 1 and wait for the broker's PUBACK;
    `retain` as Home Assistant's mqtt.publish does for a profile."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    if username:
        client.username_pw_set(username, password)
    if tls_ca:
        client.tls_set(ca_certs=tls_ca)
    client.connect(host, port)
    client.loop_start()
    body = payload if isinstance(payload, str | bytes) else json.dumps(payload)
    client.publish(topic, body, qos=qos, retain=retain).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def workout(
    event_id: str | None = None, ago: timedelta = timedelta(0), **over: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": event_id or f"w-{uuid.uuid4().hex[:10]}",
        "ended_at": (datetime.now(UTC) - ago).isoformat(),
        "kind": "strength",
        "focus": "legs",
        "rpe": 7,
        "duration_min": 50,
    }
    body.update(over)
    return body


class ServiceProcess:
    """`recovery-coach run` in a child process with a config written for the test."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None,
        users: dict[str, dict[str, Any]],
        base: str = "rc_test",
        broker: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.base = base
        self.port = port
        self.env = env or {}
        self.config_path = workdir / "config.yaml"
        self.db = workdir / "coach.db"
        self.log_path = workdir / "service.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.write_config(users, broker=broker, extra=extra)

    def write_config(
        self,
        users: dict[str, dict[str, Any]],
        *,
        broker: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        cfg: dict[str, Any] = {
            "base_topic": self.base,
            "store": f"sqlite:///{self.db}",
            "log_level": "DEBUG",
            "users": users,
        }
        if broker is not None:
            cfg["broker"] = broker
        elif self.port is not None:
            cfg["broker"] = {"host": HOST, "port": self.port}
        cfg.update(extra or {})
        self.config_path.write_text(yaml.safe_dump(cfg))

    def start(self) -> ServiceProcess:
        log = self.log_path.open("ab")
        env = {**os.environ, **self.env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "recovery_coach.cli", "run", "--config", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env=env,
        )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_log(self, text: str, timeout: float = 10.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if text in self.log():
                return
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"'{text}' not in the service log:\n{self.log()[-4000:]}")

    def wait_connected(self, timeout: float = 15.0) -> None:
        self.wait_log("connected to", timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 10.0) -> float:
        """SIGTERM; returns how long the service took to exit."""
        assert self.proc is not None
        t0 = time.time()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout)
        return time.time() - t0

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def refused_publish(broker: object, user: str, password: str, topic: str, body: object) -> bool:
    """Publish at QoS 1 over MQTT 5; True when the broker answers 'not authorized'."""
    codes: list[object] = []
    done = threading.Event()
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"forger-{user}", protocol=mqtt.MQTTv5
    )
    client.username_pw_set(user, password)

    def on_publish(c: mqtt.Client, u: object, mid: int, rc: object, props: object) -> None:
        codes.append(rc)
        done.set()

    client.on_publish = on_publish
    client.connect(broker.host, broker.port)  # type: ignore[attr-defined]
    client.loop_start()
    try:
        client.publish(topic, json.dumps(body), qos=1)
        done.wait(5)
    finally:
        client.disconnect()
        client.loop_stop()
    return bool(codes) and getattr(codes[0], "value", 0) == 135  # Not authorized
