"""`recovery-coach status` and `publish-example`: small MQTT clients for people at a terminal."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt

from .config import BrokerConfig, Config
from .mqtt_link import make_client


def _client(b: BrokerConfig) -> mqtt.Client:
    return make_client(b, f"recovery-coach-cli-{uuid.uuid4().hex[:8]}")


def print_status(cfg: Config, timeout: float) -> int:
    """Print the service's retained status and diagnostics; exit 0 when it is online.
    Sharded, each instance with the shards it owns, and each shard's problems."""
    b = cfg.broker_to_use()
    got: dict[str, bytes] = {}
    done = threading.Event()
    status_t, diag_t = f"{cfg.base_topic}/status", f"{cfg.base_topic}/diagnostics"
    sharded = cfg.shards > 1
    client = _client(b)

    def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        got[msg.topic] = bytes(msg.payload)
        if status_t in got and diag_t in got:
            done.set()

    client.on_message = on_message
    try:
        client.connect(b.host, b.port)
    except OSError as exc:
        print(f"cannot reach the broker at {b.host}:{b.port}: {exc}")
        return 1
    topics = [status_t, diag_t]
    if sharded:  # every retained status and diagnostics: no one topic says it is all in
        topics += [f"{status_t}/+", f"{diag_t}/+", f"{diag_t}/shards/+"]
    client.subscribe([(t, 1) for t in topics])
    client.loop_start()
    done.wait(min(timeout, 1.0) if sharded else timeout)
    client.loop_stop()
    client.disconnect()
    status = got.get(status_t, b"").decode() or "unknown (no retained status)"
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


def publish_example(cfg: Config, user: str | None) -> int:
    """Publish a leg-day workout for a user and print the nudges that come back (5 s)."""
    if not cfg.users:
        print("the config has no users")
        return 2
    user = user or sorted(cfg.users)[0]
    if user not in cfg.users:
        print(f"'{user}' is not a user in the config")
        return 2
    b = cfg.broker_to_use()
    client = _client(b)
    nudge_topic = f"{cfg.base_topic}/{user}/nudge"

    def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        n = json.loads(msg.payload)
        print(f"{n['due_at']}  {n['rule']:>3} {n['kind']:<16} {n['title']}: {n['message']}")

    client.on_message = on_message
    client.connect(b.host, b.port)
    client.subscribe(nudge_topic, 1)
    client.loop_start()
    time.sleep(0.3)
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
    print(f"published a leg-day workout on {topic}; nudges for {user} (5 s):")
    time.sleep(5)
    client.loop_stop()
    client.disconnect()
    return 0
