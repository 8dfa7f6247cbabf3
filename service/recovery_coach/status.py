"""`recovery-coach status` and `publish-example`: small MQTT clients for people at a terminal."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from .config import BrokerConfig, Config
from .mqtt_link import read_credentials


def _broker(cfg: Config) -> BrokerConfig:
    if cfg.broker is not None:
        return cfg.broker
    return BrokerConfig(
        host=cfg.embedded_broker.host, port=cfg.embedded_broker.port, protocol="3.1.1"
    )


def _client(b: BrokerConfig) -> mqtt.Client:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"recovery-coach-cli-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5 if b.protocol == "5" else mqtt.MQTTv311,
    )
    creds = read_credentials(b)
    if creds.username is not None:
        client.username_pw_set(creds.username, creds.password)
    if b.tls is not None:
        client.tls_set(
            ca_certs=str(b.tls.ca_file) if b.tls.ca_file else None,
            certfile=str(b.tls.cert_file) if b.tls.cert_file else None,
            keyfile=str(b.tls.key_file) if b.tls.key_file else None,
        )
        client.tls_insecure_set(b.tls.insecure)
    return client


def print_status(cfg: Config, timeout: float) -> int:
    """Print the service's retained status and diagnostics; exit 0 when it is online."""
    b = _broker(cfg)
    got: dict[str, bytes] = {}
    done = threading.Event()
    status_t, diag_t = f"{cfg.base_topic}/status", f"{cfg.base_topic}/diagnostics"
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
    client.subscribe([(status_t, 1), (diag_t, 1)])
    client.loop_start()
    done.wait(timeout)
    client.loop_stop()
    client.disconnect()
    status = got.get(status_t, b"").decode() or "unknown (no retained status)"
    print(f"service: {status}")
    diagnostics = json.loads(got[diag_t]) if diag_t in got else {}
    for key, value in diagnostics.items():
        print(f"  {key}: {value}")
    for problem in ("scheduler_error", "store_error"):  # online, but not doing its job
        if diagnostics.get(problem):
            print(f"unhealthy: {diagnostics[problem]}")
            return 1
    return 0 if status == "online" else 1


def publish_example(cfg: Config, user: str | None) -> int:
    """Publish a leg-day workout for a user and print the nudges that come back (5 s)."""
    if not cfg.users:
        print("the config has no users")
        return 2
    user = user or sorted(cfg.users)[0]
    if user not in cfg.users:
        print(f"'{user}' is not a user in the config")
        return 2
    b = _broker(cfg)
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
