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
import sys
import threading
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt

from bench.echo import serve

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

    def on_event(c: mqtt.Client, payload: bytes | bytearray, topic: str) -> None:
        user = topic.split("/")[-3]
        event = json.loads(payload)
        now = datetime.now(UTC)
        out = f"{base}/{user}/nudge"
        c.publish(out, nudge(user, event["event_id"], "cooldown_start", now), qos=1)
        later = nudge(user, event["event_id"], "cooldown_done", now + COOLDOWN)
        timer = threading.Timer(COOLDOWN.total_seconds(), c.publish, (out, later, 1))
        timer.daemon = True
        timer.start()

    return serve(port, f"peer-paho-{port}", f"{base}/+/workout/completed", on_event)


if __name__ == "__main__":
    raise SystemExit(main())
