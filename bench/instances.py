"""`bench/run --instances 1,2,3`: a sharded service (16 shards, PostgreSQL) run as 1, 2, 3
instances on this machine; events/s for a QoS 1 burst and CPU per event over all instances.

Every instance has the same config (users, store, client id) and its own name; the burst
goes out once the shards are balanced and every shard's client has said `online`.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from recovery_coach.contract.shards import fair_share

from bench.harness import (
    BASE,
    HOST,
    LoadClient,
    Service,
    Store,
    log,
    midday_zone,
    store_rows,
    workout,
)
from bench.peers import cpu_seconds

SHARDS = 16


class ShardStatus:
    """The latest payload on each shard's status topic."""

    def __init__(self, port: int) -> None:
        self.latest: dict[int, tuple[bytes, float]] = {}
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, f"bench-st-{uuid.uuid4().hex[:6]}")
        self.client.on_message = self._message
        self.client.connect(HOST, port)
        self.client.subscribe(f"{BASE}/status/shards/+", 1)
        self.client.loop_start()

    def _message(self, c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.latest[int(msg.topic.rsplit("/", 1)[1])] = (bytes(msg.payload), time.time())

    def online_since(self, t: float) -> int:
        with self.lock:
            return sum(1 for p, at in self.latest.values() if p == b"online" and at >= t)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _owners(url: str) -> dict[str, int]:
    try:
        rows = store_rows(url, "select owner, count(*) from rc_shards group by owner")
    except Exception:  # the first instance has not made the table yet
        return {}
    return {str(o): int(c) for o, c in rows if o is not None}


def _wait_idle(pids: list[int], deadline: float, window: float = 0.5) -> None:
    """Until the processes together use under 10% of a core over two windows running."""
    quiet = 0
    last = sum(cpu_seconds(p) for p in pids)
    while quiet < 2 and time.time() < deadline:
        time.sleep(window)  # the sampling window itself: CPU is measured over it
        now = sum(cpu_seconds(p) for p in pids)
        quiet = quiet + 1 if now - last < 0.1 * window else 0
        last = now


def _all_first(lc: LoadClient, tag: str, n: int) -> Callable[[], bool]:
    return lambda: lc.firsts_by_tag.get(tag, 0) >= n


def bench_instances(
    port: int, store: Store, workdir: Path, counts: list[int], n: int
) -> list[dict[str, Any]]:
    results = []
    for count in counts:
        url = store.new_url(f"inst{count}")
        services: list[Service] = []
        status = ShardStatus(port)
        lc = LoadClient(port, [f"{BASE}/+/nudge"]).start()
        t_start = time.time()
        try:
            for i in range(count):
                svc = Service(workdir, f"inst{count}-{i}", port, url)
                users = svc.write_config(n, midday_zone(), as_json=True)
                cfg = json.loads(svc.config.read_text())
                cfg.update(shards=SHARDS, instance=f"i{i}")
                cfg["broker"]["client_id"] = f"rc-bench-sharded-{count}"
                svc.config.write_text(json.dumps(cfg))
                services.append(svc.start())
            names = [f"i{i}" for i in range(count)]
            want = {m: fair_share(names, m, SHARDS) for m in names}
            deadline = time.time() + 120
            while time.time() < deadline:
                if _owners(url) == want and status.online_since(t_start) == SHARDS:
                    break
                time.sleep(0.1)
            else:
                raise RuntimeError(f"{count} instance(s) did not balance: {_owners(url)}")
            balanced_s = time.time() - t_start
            # Each shard taken announces its users to Home Assistant (discovery and states)
            # in chunks after it is online: the burst waits until the instances are idle.
            pids = [s.proc.pid for s in services if s.proc is not None]
            _wait_idle(pids, deadline=time.time() + 120)
            tag = f"in{count}x{uuid.uuid4().hex[:4]}"
            ids = [f"{tag}-{k}" for k in range(n)]
            now = datetime.now(UTC)
            cpu0 = sum(cpu_seconds(p) for p in pids)
            t0 = time.time()
            for k, e in enumerate(ids):
                topic = f"{BASE}/{users[k]}/workout/completed"
                lc.client.publish(topic, json.dumps(workout(e, now)).encode(), qos=1)
            complete = lc.wait(_all_first(lc, tag, n), 180)
            t_all = max((lc.first.get(e, 0.0) for e in ids), default=t0)
            cpu = sum(cpu_seconds(p) for p in pids) - cpu0
            res = {
                "instances": count,
                "shards": SHARDS,
                "events": n,
                "complete": complete,
                "balanced_s": round(balanced_s, 2),
                "events_per_s": round(n / (t_all - t0)),
                "cpu_s": round(cpu, 2),
                "cpu_ms_per_event": round(1000 * cpu / n, 3),
            }
            log(f"instances: {res}")
            results.append(res)
        finally:
            for s in services:  # all at once: one by one, each would take the others' shards
                if s.proc is not None and s.proc.poll() is None:
                    s.proc.send_signal(signal.SIGTERM)
            for s in services:
                s.stop()
            lc.stop()
            status.stop()
    return results


def instances_table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| instances (16 shards, PostgreSQL) | events | events/s, QoS 1 burst | CPU, all "
        "instances | CPU per event | balanced after start |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['instances']} | {r['events']:,} | {r['events_per_s']:,} | {r['cpu_s']} s "
            f"| {r['cpu_ms_per_event']} ms | {r['balanced_s']} s |"
        )
    return "\n".join(out)
