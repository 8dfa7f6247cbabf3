"""`recovery-coach status` and `publish-example`: small MQTT clients for people at a terminal."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt

from recovery_coach.contract.config import BrokerConfig, Config
from recovery_coach.mqtt import broker_hints
from recovery_coach.mqtt.embedded_broker import what_listens
from recovery_coach.mqtt.link import make_client, read_credentials


def _client(b: BrokerConfig) -> mqtt.Client:
    return make_client(b, f"recovery-coach-cli-{uuid.uuid4().hex[:8]}")


class BrokerUnavailableError(Exception):
    """The broker cannot be reached, or will not have this client: the message says why."""


def _connected(cfg: Config, timeout: float = 5.0) -> mqtt.Client:
    """A client connected to the config's broker (its loop running), or BrokerUnavailableError
    with the one line a person needs: what happened and what to change."""
    b = cfg.broker_to_use()
    client = _client(b)
    answer: dict[str, Any] = {}
    done = threading.Event()

    def on_connect(c: mqtt.Client, u: object, f: Any, reason: Any, p: Any) -> None:
        answer["reason"] = reason
        done.set()

    client.on_connect = on_connect
    try:
        client.connect(b.host, b.port)
    except OSError as exc:
        hint = " (scripts/run starts the embedded broker)" if cfg.broker is None else ""
        raise BrokerUnavailableError(
            f"cannot reach the broker at {b.host}:{b.port}: {exc.strerror or exc}{hint}"
        ) from None
    client.loop_start()
    if not done.wait(timeout):
        client.loop_stop()
        what = what_listens(b.host, b.port) or "it did not answer in time"
        raise BrokerUnavailableError(broker_hints.not_mqtt(b.host, b.port, what))
    reason = answer["reason"]
    if reason.is_failure:
        client.loop_stop()
        creds = read_credentials(b)
        raise BrokerUnavailableError(
            broker_hints.refusal(
                reason.value, str(reason), creds.username, creds.password is not None
            )
        )
    return client


def print_status(cfg: Config, timeout: float) -> int:
    """Print the service's retained status and diagnostics; exit 0 when it is online.
    Sharded, each instance with the shards it owns, and each shard's problems."""
    got: dict[str, bytes] = {}
    done = threading.Event()
    status_t, diag_t = f"{cfg.base_topic}/status", f"{cfg.base_topic}/diagnostics"
    sharded = cfg.shards > 1
    try:
        client = _connected(cfg)
    except BrokerUnavailableError as exc:
        print(f"service: unknown: {exc}")
        return 1

    def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        got[msg.topic] = bytes(msg.payload)
        if status_t in got and diag_t in got:
            done.set()

    client.on_message = on_message
    topics = [status_t, diag_t]
    if sharded:  # every retained status and diagnostics: no one topic says it is all in
        topics += [f"{status_t}/+", f"{diag_t}/+", f"{diag_t}/shards/+"]
    client.subscribe([(t, 1) for t in topics])
    done.wait(min(timeout, 1.0) if sharded else timeout)
    client.loop_stop()
    client.disconnect()
    status = got.get(status_t, b"").decode() or (
        "unknown: no retained status: the service has never connected to this broker "
        f"with base topic '{cfg.base_topic}' (is it running? scripts/run starts it)"
    )
    print(f"service: {status}")
    if sharded:
        return _print_instances(cfg, got, status)
    diagnostics = json.loads(got[diag_t]) if diag_t in got else {}
    for key, value in diagnostics.items():
        print(f"  {key}: {value}")
    for problem in ("scheduler_error", "store_error"):  # online, but not doing its job
        if diagnostics.get(problem):
            print(f"unhealthy: {diagnostics[problem]}")
            return 1
    return 0 if status == "online" else 1


def _print_instances(cfg: Config, got: dict[str, bytes], status: str) -> int:
    base = cfg.base_topic
    served: set[int] = set()
    for topic, payload in sorted(got.items()):
        name = topic.removeprefix(f"{base}/diagnostics/")
        if "/" in name or topic == f"{base}/diagnostics" or not payload:
            continue
        shards = json.loads(payload).get("shards", [])
        state = got.get(f"{base}/status/{name}", b"").decode() or "unknown"
        served |= set(shards) if state == "online" else set()
        print(f"  instance {name}: {state}, shard(s) {', '.join(map(str, shards)) or 'none'}")
    unhealthy = 0
    for k in range(cfg.shards):
        raw = got.get(f"{base}/diagnostics/shards/{k}")
        d = json.loads(raw) if raw else {}
        for problem in ("scheduler_error", "store_error"):
            if d.get(problem):
                unhealthy += 1
                print(f"unhealthy: shard {k}: {d[problem]}")
    missing = sorted(set(range(cfg.shards)) - served)
    if missing:
        print(f"not served: shard(s) {', '.join(map(str, missing))}")
    return 0 if status == "online" and not missing and not unhealthy else 1


def publish_example(cfg: Config, user: str | None, wait: float = 5.0) -> int:
    """Publish a leg-day workout for a user and print the nudges that come back; exit 1,
    saying why, when the broker or the service is not there or no nudge comes."""
    if not cfg.users:
        print("the config has no users: add one under `users:` (see config/example.yaml)")
        return 2
    user = user or sorted(cfg.users)[0]
    if user not in cfg.users:
        print(f"'{user}' is not a user in the config (its users: {', '.join(sorted(cfg.users))})")
        return 2
    try:
        client = _connected(cfg)
    except BrokerUnavailableError as exc:
        print(f"nothing published: {exc}")
        return 1
    nudge_topic = f"{cfg.base_topic}/{user}/nudge"
    status_topic = f"{cfg.base_topic}/status"
    status: dict[str, str] = {}
    got_status = threading.Event()
    nudges: list[dict[str, Any]] = []

    def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == status_topic:
            status["value"] = bytes(msg.payload).decode(errors="replace")
            got_status.set()
            return
        n = json.loads(msg.payload)
        nudges.append(n)
        print(f"{n['due_at']}  {n['rule']:>3} {n['kind']:<16} {n['title']}: {n['message']}")

    client.on_message = on_message
    client.subscribe([(status_topic, 1), (nudge_topic, 1)])
    got_status.wait(2.0)
    try:
        if status.get("value") != "online":
            print(
                f"nothing published: the service is not running (its status on "
                f"{status_topic} is {status.get('value') or 'not there'}): start it with "
                "scripts/run (or recovery-coach run --config ...), then try again"
            )
            return 1
        event = {
            "event_id": f"example-{uuid.uuid4().hex[:12]}",
            "ended_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
            "kind": "strength",
            "focus": "legs",
            "rpe": 7,
            "duration_min": 55,
        }
        topic = f"{cfg.base_topic}/{user}/workout/completed"
        client.publish(topic, json.dumps(event), qos=1).wait_for_publish(5)
        print(f"published a leg-day workout on {topic}; nudges for {user} ({wait:g} s):")
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            time.sleep(0.1)  # printing what arrives for the promised few seconds
        if not nudges:
            print(
                f"no nudge came back within {wait:g} s: see the service's log for why "
                f"(its errors for {user} go to {cfg.base_topic}/{user}/error)"
            )
            return 1
        return 0
    finally:
        client.loop_stop()
        client.disconnect()
