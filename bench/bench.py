"""Recovery Coach benchmarks: the live service against what the broker itself allows.

One command (`bench/run`, or `python -m bench`) starts its own mosquitto on a free port (per-
client queue limits lifted), the service as a child process (`python -m recovery_coach.cli
run`) on a temporary store, and drives it from this process with one paho client:

1. floor        a bare paho echo client (bench/echo.py, its own process) through the same
                broker: round trip p50/p99 and QoS 1 messages/s
2. latency      workout event published -> first nudge received, sequential events
3. throughput   a QoS 1 burst over 100 users; every immediate nudge received, every
                scheduled job stored, lost and duplicated nudges counted
4. punctuality  protein reminders (R8) of many users due within one minute: published
                time - due time
5. scale        many users with their pending jobs in the store: resident memory,
                start-up time (process start -> first event handled), latency at that size

Figures are printed as a markdown table and written to bench/results/latest-<store>.json.
Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from recovery_coach.contract.config import RateLimitConfig
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from mosquitto import MosquittoBroker  # noqa: E402

from bench.peers import (  # noqa: E402
    NodeRedPeer,
    PahoPeer,
    Peer,
    cpu_seconds,
    cpu_until_quiet,
    wait_ready,
)

HOST = "127.0.0.1"
BASE = "rc_bench"
PG_ADMIN_URL = os.environ.get("RC_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


# ------------------------------------------------------------------ helpers


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of values, in the values' unit."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100 * len(s) + 0.5) - 1))
    return s[k]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def midday_zone(now: datetime | None = None) -> str:
    """An Etc/GMT zone where it is about midday now, so no nudge meets the sleep window."""
    now = now or datetime.now(UTC)
    offset = (12 - now.hour + 12) % 24 - 12
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


def workout(event_id: str, ended_at: datetime) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "ended_at": ended_at.isoformat(),
        "kind": "strength",
        "focus": "legs",
        "rpe": 7,
        "duration_min": 50,
    }


def log(msg: str) -> None:
    print(f"[{datetime.now(UTC).strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def nodelay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# ------------------------------------------------------------------ the load client


@dataclass
class Got:
    nudge_id: str
    source: str
    rule: str
    kind: str
    due_at: float
    at: float


@dataclass
class LoadClient:
    """One paho client (TCP_NODELAY, QoS 1) that publishes events and records nudges."""

    port: int
    topics: list[str]
    nudges: list[Got] = field(default_factory=list)
    raw: dict[str, list[float]] = field(default_factory=dict)  # topic -> receive times

    def __post_init__(self) -> None:
        self.cond = threading.Condition()
        self.first: dict[str, float] = {}  # source event id -> first nudge received
        # Counts kept as nudges arrive, so that waiting on them costs nothing per message:
        # recounting 25,000 nudges on each of 10,000 arrivals took the load client a core.
        self.firsts_by_tag: dict[str, int] = {}  # event id prefix (before the last -)
        self.kinds_by_tag: dict[tuple[str, str], int] = {}
        self.ids: dict[str, int] = {}  # nudge id -> times received
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"bench-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        self.client.max_inflight_messages_set(0)  # unlimited: a burst is a burst
        self.client.max_queued_messages_set(0)
        self.client.on_socket_open = nodelay
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def _on_connect(self, c: mqtt.Client, u: Any, flags: Any, rc: Any, props: Any) -> None:
        c.subscribe([(t, 1) for t in self.topics])

    def _on_subscribe(self, c: mqtt.Client, u: Any, mid: int, rcs: Any, props: Any) -> None:
        self._subscribed.set()

    def _on_message(self, c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        at = time.time()
        topic = msg.topic
        if topic.endswith("/nudge"):
            body = json.loads(msg.payload)
            got = Got(
                body["nudge_id"],
                body["source_event_id"],
                body["rule"],
                body["kind"],
                datetime.fromisoformat(body["due_at"]).timestamp(),
                at,
            )
            with self.cond:
                self.nudges.append(got)
                self.ids[got.nudge_id] = self.ids.get(got.nudge_id, 0) + 1
                tag = got.source.rsplit("-", 1)[0]
                key = (got.kind, tag)
                self.kinds_by_tag[key] = self.kinds_by_tag.get(key, 0) + 1
                if got.source not in self.first:
                    self.first[got.source] = at
                    self.firsts_by_tag[tag] = self.firsts_by_tag.get(tag, 0) + 1
                self.cond.notify_all()
        else:
            with self.cond:
                self.raw.setdefault(topic, []).append(at)
                self.cond.notify_all()

    def start(self) -> LoadClient:
        self.client.connect(HOST, self.port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("load client could not subscribe")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, payload: dict[str, Any] | bytes) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.client.publish(topic, body, qos=1)

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.time() + timeout
        with self.cond:
            while not predicate():
                left = deadline - time.time()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True


# ------------------------------------------------------------------ stores


@dataclass
class Store:
    kind: str  # sqlite | postgres
    workdir: Path
    _dbs: list[str] = field(default_factory=list)

    def new_url(self, name: str) -> str:
        if self.kind == "sqlite":
            return f"sqlite:///{self.workdir / (name + '.db')}"
        db = f"rc_bench_{name}_{os.getpid()}"
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db}"'))
            conn.execute(text(f'CREATE DATABASE "{db}"'))
        admin.dispose()
        self._dbs.append(db)
        return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + db

    def close(self) -> None:
        if not self._dbs:
            return
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            for db in self._dbs:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()


def ensure_postgres() -> None:
    """Start the machine's PostgreSQL cluster if nothing answers on 5432."""
    engine = create_engine(PG_ADMIN_URL)
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        return
    except Exception:
        log("PostgreSQL is not answering: starting it")
    finally:
        engine.dispose()
    versions = sorted(os.listdir("/etc/postgresql")) if Path("/etc/postgresql").is_dir() else []
    if not versions:
        raise RuntimeError("no PostgreSQL installed (/etc/postgresql is missing)")
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"], check=True
    )
    for _ in range(50):
        with contextlib.suppress(Exception):
            engine = create_engine(PG_ADMIN_URL)
            with engine.connect() as conn:
                conn.execute(text("select 1"))
            engine.dispose()
            return
        time.sleep(0.2)
    raise RuntimeError("PostgreSQL did not come up")


# ------------------------------------------------------------------ the service


class Service:
    """`recovery-coach run` as a child process with a generated config."""

    profile_dir: Path | None = None  # --py-spy: record each process with py-spy

    def __init__(self, workdir: Path, name: str, port: int, url: str) -> None:
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.url = url
        self.config = self.dir / "config.yaml"
        self.log_path = self.dir / "service.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.spy: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def write_config(self, n_users: int, zone: str, *, as_json: bool = False) -> list[str]:
        """Users u000000.. in one zone (midday there, so nothing meets the sleep window),
        each with their own weight and wake time, as a generated config would hold them."""
        users = [f"u{i:06d}" for i in range(n_users)]
        cfg: dict[str, Any] = {
            "base_topic": BASE,
            "store": self.url,
            "log_level": "INFO",
            "timezone": zone,
            "broker": {"host": HOST, "port": self.port, "client_id": f"rc-bench-{self.dir.name}"},
            "users": {
                u: {
                    "weight_kg": 50 + i % 61,
                    "goal": ("general", "hypertrophy", "strength", "endurance")[i % 4],
                    "wake_time": f"{6 + i % 2:02d}:{(i * 15) % 60:02d}",
                }
                for i, u in enumerate(users)
            },
        }
        if as_json:  # JSON is YAML's subset; the service reads it with the json module
            self.config.write_text(json.dumps(cfg))
        else:
            lines = [f"{k}: {json.dumps(v)}" for k, v in cfg.items() if k != "users"]
            lines.append("users:")
            lines += [f"  {u}: {json.dumps(c)}" for u, c in cfg["users"].items()]
            self.config.write_text("\n".join(lines) + "\n")
        return users

    def start(self) -> Service:
        out = self.log_path.open("ab")
        self.started_at = time.time()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "recovery_coach.cli", "run", "--config", str(self.config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
        )
        if self.profile_dir is not None:
            out_file = self.profile_dir / f"{self.dir.name}-{self.proc.pid}.speedscope.json"
            self.spy = subprocess.Popen(
                ["py-spy", "record", "--pid", str(self.proc.pid), "--rate", "250",
                 "--format", "speedscope", "--output", str(out_file), "--threads", "--nonblocking"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_log(self, needle: str, timeout: float, count: int = 1) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.log().count(needle) >= count:
                return
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"service: '{needle}' not seen; log tail:\n{self.log()[-3000:]}")

    def rss_mb(self) -> tuple[float, float]:
        """(VmRSS, VmHWM) of the service process in MB."""
        assert self.proc is not None
        fields: dict[str, float] = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
        return round(fields["VmRSS"], 1), round(fields["VmHWM"], 1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.spy is not None:
            self.spy.wait(30)  # py-spy writes its file when the process exits
            self.spy = None


@contextlib.contextmanager
def running(svc: Service) -> Iterator[Service]:
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()


def store_rows(url: str, sql: str) -> list[Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql)).all())
    finally:
        engine.dispose()


# ------------------------------------------------------------------ 1. floor


def bench_floor(port: int, n_latency: int, n_burst: int) -> dict[str, Any]:
    prefix = f"floor{uuid.uuid4().hex[:6]}"
    echo = subprocess.Popen(
        [sys.executable, "-m", "bench.echo", str(port), prefix],
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert echo.stdout is not None
        echo.stdout.readline()  # "ready"
        lc = LoadClient(port, [f"{prefix}/resp"]).start()
        resp = f"{prefix}/resp"

        def count() -> int:
            return len(lc.raw.get(resp, []))

        for i in range(50):  # warm up
            n = count()
            lc.publish(f"{prefix}/req", b"w%d" % i)
            lc.wait(lambda n=n: count() > n, 5)  # type: ignore[misc]
        rtts: list[float] = []
        for i in range(n_latency):
            n = count()
            t0 = time.time()
            lc.publish(f"{prefix}/req", b"x%d" % i)
            lc.wait(lambda n=n: count() > n, 5)  # type: ignore[misc]
            rtts.append(lc.raw[resp][n] - t0)
        base = count()
        t0 = time.time()
        for i in range(n_burst):
            lc.publish(f"{prefix}/req", b"b%d" % i)
        ok = lc.wait(lambda: count() >= base + n_burst, 60)
        t1 = lc.raw[resp][-1]
        lc.stop()
        return {
            "round_trips": n_latency,
            "p50_ms": ms(pct(rtts, 50)),
            "p99_ms": ms(pct(rtts, 99)),
            "burst": n_burst,
            "burst_complete": ok,
            "msgs_per_s": round(n_burst / (t1 - t0)),
        }
    finally:
        echo.send_signal(signal.SIGTERM)
        echo.wait(10)


# ------------------------------------------------------------------ 2. latency


def latency_run(
    lc: LoadClient, users: list[str], n: int, tag: str, step: int = 1
) -> tuple[list[float], int]:
    """Sequential events (each waits for its first nudge); returns (latencies, timeouts)."""
    lat: list[float] = []
    timeouts = 0
    for i in range(n):
        user = users[(i * step) % len(users)]
        eid = f"{tag}-{i}"
        t0 = time.time()
        lc.publish(f"{BASE}/{user}/workout/completed", workout(eid, datetime.now(UTC)))
        if lc.wait(lambda eid=eid: eid in lc.first, 10):  # type: ignore[misc]
            lat.append(lc.first[eid] - t0)
        else:
            timeouts += 1
    return lat, timeouts


def latency_figures(lat: list[float], timeouts: int, floor_p50_ms: float) -> dict[str, Any]:
    p50 = ms(pct(lat, 50))
    return {
        "events": len(lat) + timeouts,
        "timeouts": timeouts,
        "p50_ms": p50,
        "p99_ms": ms(pct(lat, 99)),
        "max_ms": ms(max(lat)) if lat else None,
        "mean_ms": ms(statistics.fmean(lat)) if lat else None,
        "ratio_to_floor_p50": round(p50 / floor_p50_ms, 2) if floor_p50_ms else None,
    }


# ------------------------------------------------------------------ 0. peers


def bench_peers(port: int, workdir: Path, n_latency: int, n_burst: int) -> dict[str, Any]:
    """Each peer's latency and burst rate, with the service's events, through this broker."""
    out: dict[str, Any] = {}
    for peer_class in (PahoPeer, NodeRedPeer):
        peer = peer_class(workdir, port, BASE).start()
        try:
            out[peer.name] = peer_figures(peer, port, n_latency, n_burst)
            log(f"peer {peer.name}: {out[peer.name]}")
        finally:
            peer.stop()
    return out


def peer_figures(peer: Peer, port: int, n_latency: int, n_burst: int) -> dict[str, Any]:
    lc = LoadClient(port, [f"{BASE}/+/nudge"]).start()
    try:
        wait_ready(lc, peer, BASE)
        users = [f"p{i:06d}" for i in range(100)]
        latency_run(lc, users, 100, f"{peer.name}-warm")
        lat, timeouts = latency_run(lc, users, n_latency, f"{peer.name}-lat")
        tag = f"{peer.name}-burst"
        ids = [f"{tag}-{i}" for i in range(n_burst)]
        now = datetime.now(UTC)
        bodies = [
            (f"{BASE}/{users[i % 100]}/workout/completed", json.dumps(workout(e, now)))
            for i, e in enumerate(ids)
        ]
        cpu0, t0 = cpu_seconds(peer.pid), time.time()
        for topic, body in bodies:
            lc.client.publish(topic, body, qos=1)
        complete = lc.wait(lambda: lc.firsts_by_tag.get(tag, 0) >= n_burst, 120)
        t1 = max((lc.first.get(e, 0.0) for e in ids), default=t0)
        cpu = cpu_seconds(peer.pid) - cpu0
        cpu_all = cpu_until_quiet(peer.pid, cpu0)
    finally:
        lc.stop()
    return {
        "p50_ms": ms(pct(lat, 50)),
        "p99_ms": ms(pct(lat, 99)),
        "timeouts": timeouts,
        "burst": n_burst,
        "burst_complete": complete,
        "events_per_s": round(n_burst / (t1 - t0)),
        "burst_cpu_s": round(cpu, 2),
        "cpu_ms_per_event": round(1000 * cpu / n_burst, 3),
        "quiet_cpu_s": round(cpu_all, 2),
        "quiet_cpu_ms_per_event": round(1000 * cpu_all / n_burst, 3),
    }


def with_ratios(result: dict[str, Any]) -> None:
    """The service's figures as ratios to the peers' of the same run."""
    peers, lat, tp = result.get("peers"), result.get("latency"), result.get("throughput")
    if not peers:
        return
    ratios: dict[str, Any] = {}
    paho, red = peers.get("paho", {}), peers.get("node-red", {})
    if lat and paho.get("p50_ms"):
        ratios["p50_to_paho"] = round(lat["p50_ms"] / paho["p50_ms"], 2)
    if lat and red.get("p50_ms"):
        ratios["p50_to_node_red"] = round(lat["p50_ms"] / red["p50_ms"], 2)
    if tp and red.get("events_per_s"):
        ratios["events_per_s_to_node_red"] = round(tp["events_per_s"] / red["events_per_s"], 2)
    if tp and paho.get("events_per_s"):
        ratios["events_per_s_to_paho"] = round(tp["events_per_s"] / paho["events_per_s"], 2)
    if tp and paho.get("quiet_cpu_ms_per_event") and tp.get("quiet_cpu_ms_per_event"):
        ratios["cpu_per_event_to_paho"] = round(
            tp["quiet_cpu_ms_per_event"] / paho["quiet_cpu_ms_per_event"], 2
        )
    result["ratios"] = ratios


# ------------------------------------------------------------------ 2b. flood


FLOOD_PER_S = 50  # one device looping on its own topic (issue 10 measured 50 workouts/s)


def bench_flood(port: int, store: Store, workdir: Path, n: int) -> dict[str, Any]:
    """A quiet user's latency with and without a device flooding its own topic beside it;
    the flood is refused beyond the rate limit (config defaults) and its state stays small."""
    svc = Service(workdir, "flood", port, store.new_url("flood"))
    users = svc.write_config(1 + 50 + 2 * n, midday_zone())
    flooder, warm, quiet = users[0], users[1:51], users[51:]
    lc = LoadClient(port, [f"{BASE}/+/nudge", f"{BASE}/{flooder}/error"]).start()
    dev = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"flood-{uuid.uuid4().hex[:6]}")
    dev.max_inflight_messages_set(0)
    dev.max_queued_messages_set(0)
    dev.on_socket_open = nodelay
    stop = threading.Event()
    sent = 0

    def flood() -> None:
        nonlocal sent
        t0 = time.monotonic()
        while not stop.is_set():
            body = json.dumps(workout(f"flood-{sent}", datetime.now(UTC)))
            dev.publish(f"{BASE}/{flooder}/workout/completed", body, qos=1)
            sent += 1
            stop.wait(max(0.0, t0 + sent / FLOOD_PER_S - time.monotonic()))

    try:
        with running(svc):
            svc.wait_log("connected to", 60)
            dev.connect(HOST, port)
            dev.loop_start()
            latency_run(lc, warm, 50, "fwarm")
            calm, calm_timeouts = latency_run(lc, quiet[:n], n, "calm")
            flooding = threading.Thread(target=flood, daemon=True)
            flooding.start()
            # Past the burst the rate limit allows: the flood is being refused (steady state).
            stop.wait(RateLimitConfig().burst / FLOOD_PER_S + 2.0)
            busy, busy_timeouts = latency_run(lc, quiet[n:], n, "busy")
            stop.set()
            flooding.join(5)
            dev.disconnect()
            dev.loop_stop()
            flood_s = sent / FLOOD_PER_S
            rows = store_rows(
                svc.url, f"SELECT length(state) FROM rc_user_states WHERE user_id = '{flooder}'"
            )
            reports = len(lc.raw.get(f"{BASE}/{flooder}/error", []))
    finally:
        lc.stop()
    calm_p50, busy_p50 = ms(pct(calm, 50)), ms(pct(busy, 50))
    return {
        "flood_per_s": FLOOD_PER_S,
        "flood_events": sent,
        "flood_seconds": round(flood_s, 1),
        "quiet_events": 2 * n,
        "timeouts": calm_timeouts + busy_timeouts,
        "calm_p50_ms": calm_p50,
        "calm_p99_ms": ms(pct(calm, 99)),
        "flood_p50_ms": busy_p50,
        "flood_p99_ms": ms(pct(busy, 99)),
        "ratio_p50": round(busy_p50 / calm_p50, 2) if calm_p50 else None,
        "flooder_state_kb": round(rows[0][0] / 1024, 1) if rows else None,
        "refusal_reports": reports,
    }


# ------------------------------------------------------------------ 3. throughput


def bench_throughput(lc: LoadClient, svc: Service, users: list[str], n: int) -> dict[str, Any]:
    tag = f"tp{uuid.uuid4().hex[:6]}"
    ids = [f"{tag}-{i}" for i in range(n)]
    now = datetime.now(UTC)
    bodies = [
        (f"{BASE}/{users[i % len(users)]}/workout/completed", json.dumps(workout(e, now)).encode())
        for i, e in enumerate(ids)
    ]
    with lc.cond:
        before = len(lc.nudges)
    assert svc.proc is not None
    cpu0 = cpu_seconds(svc.proc.pid)
    t0 = time.time()
    for topic, body in bodies:
        lc.client.publish(topic, body, qos=1)
    t_sent = time.time()
    complete = lc.wait(lambda: lc.firsts_by_tag.get(tag, 0) >= n, 120)
    t_first_all = max((lc.first.get(e, 0.0) for e in ids), default=t0)
    cpu = cpu_seconds(svc.proc.pid) - cpu0  # before the stragglers' wait below
    # Let stragglers in (the other immediate nudges of the last events), then check the store.
    time.sleep(2.0)
    cpu_all = cpu_until_quiet(svc.proc.pid, cpu0)
    with lc.cond:
        mine = [g for g in lc.nudges[before:] if g.source.startswith(tag)]
    received = {g.nudge_id for g in mine}
    dup = sum(c - 1 for nid, c in lc.ids.items() if nid in received and c > 1)
    rows = store_rows(
        svc.url,
        "select n.nudge_id, n.status, n.due_at, n.payload, j.id is not null "
        "from rc_nudges n left join apscheduler_jobs j on j.id = n.nudge_id",
    )
    check_at = time.time()
    stored_immediate = 0
    scheduled = 0
    scheduled_with_job = 0
    lost = 0
    for nudge_id, status, due_at, payload, has_job in rows:
        if not json.loads(payload)["source_event_id"].startswith(tag):
            continue
        if status == "published" or due_at <= check_at:  # its time has come: must be out
            stored_immediate += 1
            if nudge_id not in received:
                lost += 1
        elif status == "pending" and due_at > check_at:
            scheduled += 1
            scheduled_with_job += int(bool(has_job))
    events_without_nudge = sum(1 for e in ids if e not in lc.first)
    last_immediate = max((g.at for g in mine), default=t0)
    return {
        "events": n,
        "users": len(users),
        "complete": complete,
        "publish_s": round(t_sent - t0, 3),
        "events_per_s": round(n / (t_first_all - t0)),
        "all_immediate_s": round(last_immediate - t0, 3),
        "events_per_s_all_immediate": round(n / (last_immediate - t0)),
        "burst_cpu_s": round(cpu, 2),
        "cpu_ms_per_event": round(1000 * cpu / n, 3),
        "quiet_cpu_s": round(cpu_all, 2),
        "quiet_cpu_ms_per_event": round(1000 * cpu_all / n, 3),
        "immediate_nudges_received": len(received),
        "immediate_nudges_stored": stored_immediate,
        "scheduled_jobs_expected": scheduled,
        "scheduled_jobs_stored": scheduled_with_job,
        "events_without_nudge": events_without_nudge,
        "lost": lost + events_without_nudge + (scheduled - scheduled_with_job),
        "duplicated": dup,
    }


# ------------------------------------------------------------------ 4. punctuality


def bench_punctuality(
    port: int, store: Store, workdir: Path, n_jobs: int, lead_s: float
) -> dict[str, Any]:
    """n_jobs users each get a protein reminder (R8: ended_at + 60 min) due in one minute."""
    url = store.new_url("punct")
    svc = Service(workdir, "punct", port, url)
    *users, warm_user = svc.write_config(n_jobs + 1, midday_zone())
    lc = LoadClient(port, [f"{BASE}/+/nudge"]).start()
    try:
        with running(svc):
            svc.wait_log("connected to", 120)
            # Settle: the first start plans every user's day (DayStart) and announces them.
            # A user of its own: a measured user's workout would join the warm-up's session
            # (its nudges then name the warm-up, and one reminder looked missing).
            warm = "warm-0"
            body = {**workout(warm, datetime.now(UTC)), "kind": "cardio", "focus": None}
            body.pop("focus")
            lc.publish(f"{BASE}/{warm_user}/workout/completed", body)
            lc.wait(lambda: warm in lc.first, 300)
            window_start = time.time() + lead_s
            due = [window_start + 60.0 * i / n_jobs for i in range(n_jobs)]
            tag = f"pu{uuid.uuid4().hex[:6]}"
            t0 = time.time()
            for i, user in enumerate(users):
                ended = datetime.fromtimestamp(due[i], UTC) - timedelta(minutes=60)
                lc.client.publish(
                    f"{BASE}/{user}/workout/completed",
                    json.dumps(workout(f"{tag}-{i}", ended)).encode(),
                    qos=1,
                )
            stored = lc.wait(lambda: lc.firsts_by_tag.get(tag, 0) >= n_jobs, 120)
            t_stored = time.time()
            log(
                f"punctuality: {n_jobs} events handled in {t_stored - t0:.1f}s; "
                f"window opens in {window_start - t_stored:.1f}s"
            )

            def protein() -> list[Got]:
                return [g for g in lc.nudges if g.kind == "protein" and g.source.startswith(tag)]

            lc.wait(
                lambda: lc.kinds_by_tag.get(("protein", tag), 0) >= n_jobs,
                window_start + 60 - time.time() + 60,
            )
            time.sleep(1)
            with lc.cond:
                got = protein()
            late = [g.at - g.due_at for g in got]
            rss = svc.rss_mb()
            return {
                "jobs": n_jobs,
                "window_s": 60,
                "handled_before_window": stored and t_stored < window_start,
                "published": len({g.nudge_id for g in got}),
                "missing": n_jobs - len({g.nudge_id for g in got}),
                "duplicated": len(got) - len({g.nudge_id for g in got}),
                "lateness_p50_ms": ms(pct(late, 50)),
                "lateness_p99_ms": ms(pct(late, 99)),
                "lateness_max_ms": ms(max(late)) if late else None,
                "early": sum(1 for x in late if x < 0),
                "rss_mb": rss[0],
            }
    finally:
        lc.stop()


# ------------------------------------------------------------------ 5. scale


def bench_scale(
    port: int, store: Store, workdir: Path, n_users: int, n_latency: int, floor_p50: float
) -> dict[str, Any]:
    url = store.new_url("scale")
    svc = Service(workdir, "scale", port, url)
    t0 = time.time()
    users = svc.write_config(n_users, midday_zone(), as_json=True)
    log(f"scale: config of {n_users} users written ({time.time() - t0:.1f}s); seeding")
    # Seed through the service itself: the first start plans every user's day (R9 wind-down
    # and bedtime nudges, the next day start), exactly the rows a running install holds.
    t0 = time.time()
    with running(svc):
        deadline = time.time() + 900
        while time.time() < deadline:
            time.sleep(1)
            with contextlib.suppress(Exception):
                n = store_rows(
                    url,
                    "select (select count(*) from apscheduler_jobs where id like 'day:%'), "
                    "(select count(*) from rc_meta where key = 'announced')",
                )
                if n[0][0] >= n_users and n[0][1] >= 1:  # days planned, everyone announced
                    break
            if svc.proc is not None and svc.proc.poll() is not None:
                raise RuntimeError(f"service died while seeding:\n{svc.log()[-3000:]}")
        svc.wait_log("connected to", 60)
    seed_s = time.time() - t0
    counts = store_rows(
        url,
        "select (select count(*) from apscheduler_jobs), "
        "(select count(*) from rc_nudges where status = 'pending'), "
        "(select count(*) from rc_user_states)",
    )[0]
    log(f"scale: seeded in {seed_s:.1f}s: {counts[0]} jobs, {counts[1]} pending nudges")
    lc = LoadClient(port, [f"{BASE}/+/nudge"]).start()
    try:
        svc.started_at = 0.0
        first = "start-0"
        svc.start()
        t_start = svc.started_at
        # Queued by the broker in the service's persistent session until it is back.
        lc.publish(f"{BASE}/{users[-1]}/workout/completed", workout(first, datetime.now(UTC)))
        handled = lc.wait(lambda: first in lc.first, 120)
        startup = lc.first[first] - t_start if handled else None
        try:
            lat, timeouts = latency_run(lc, users, n_latency, f"sc{uuid.uuid4().hex[:6]}", 7919)
            rss = svc.rss_mb()
        finally:
            svc.stop()
        return {
            "users": n_users,
            "jobs_in_store": counts[0],
            "pending_nudges": counts[1],
            "seed_s": round(seed_s, 1),
            "startup_s": round(startup, 3) if startup is not None else None,
            "rss_mb": rss[0],
            "peak_rss_mb": rss[1],
            "latency": latency_figures(lat, timeouts, floor_p50),
        }
    finally:
        lc.stop()


# ------------------------------------------------------------------ main


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mosq = subprocess.run(
        ["/usr/sbin/mosquitto", "-h"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "mosquitto": mosq[0].replace("mosquitto version ", "") if mosq else "?",
        "kernel": platform.release(),
    }


@dataclass(frozen=True)
class Sizes:
    floor_rtts: int
    floor_burst: int
    latency: int
    burst: int
    punct_jobs: int
    punct_lead_s: float
    scale_users: int
    scale_latency: int


# The punctuality lead leaves time to handle every event before the first reminder is due.
FULL = Sizes(2000, 20000, 1000, 5000, 10000, 60.0, 100_000, 1000)
QUICK = Sizes(500, 5000, 300, 2000, 2000, 20.0, 10_000, 200)


def run_store(kind: str, sizes: Sizes, sections: set[str], keep: bool) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"rc-bench-{kind}-"))
    if kind == "postgres":
        ensure_postgres()
    store = Store(kind, workdir)
    result: dict[str, Any] = {"store": kind, "machine": machine(), "sizes": sizes.__dict__}
    # set_tcp_nodelay: mosquitto's own sockets would otherwise hold small packets back
    # (Nagle + delayed ACK: 40 ms per hop), for the floor and the service alike.
    broker = MosquittoBroker(
        directory=workdir / "broker", persistence=False, extra_config="set_tcp_nodelay true"
    )
    broker.start()
    try:
        port = broker.port
        log(f"{kind}: mosquitto on {HOST}:{port}, work in {workdir}")
        floor_p50 = 0.0
        if "floor" in sections:
            result["floor"] = bench_floor(port, sizes.floor_rtts, sizes.floor_burst)
            floor_p50 = result["floor"]["p50_ms"]
            log(f"floor: {result['floor']}")
        if sections & {"latency", "throughput"}:
            svc = Service(workdir, "main", port, store.new_url("main"))
            # A user of its own for every event: workouts of one user that end together are
            # one session (one set of nudges), which is not what these sections measure.
            users = svc.write_config(100 + sizes.latency + sizes.burst, midday_zone())
            warm, lat_users, burst_users = (
                users[:100],
                users[100 : 100 + sizes.latency],
                users[100 + sizes.latency :],
            )
            lc = LoadClient(port, [f"{BASE}/+/nudge"]).start()
            try:
                with running(svc):
                    svc.wait_log("connected to", 60)
                    latency_run(lc, warm, 100, "warm")  # warm up: imports, caches, pages
                    if "latency" in sections:
                        lat, timeouts = latency_run(lc, lat_users, sizes.latency, "lat")
                        result["latency"] = latency_figures(lat, timeouts, floor_p50)
                        log(f"latency: {result['latency']}")
                    if "throughput" in sections:
                        result["throughput"] = bench_throughput(lc, svc, burst_users, sizes.burst)
                        log(f"throughput: {result['throughput']}")
                    result["main_rss_mb"] = svc.rss_mb()[0]
            finally:
                lc.stop()
        if "peers" in sections:
            result["peers"] = bench_peers(port, workdir, sizes.latency, sizes.burst)
        if "flood" in sections:
            result["flood"] = bench_flood(port, store, workdir, sizes.latency // 3)
            log(f"flood: {result['flood']}")
        if "punctuality" in sections:
            result["punctuality"] = bench_punctuality(
                port, store, workdir, sizes.punct_jobs, sizes.punct_lead_s
            )
            log(f"punctuality: {result['punctuality']}")
        if "scale" in sections:
            result["scale"] = bench_scale(
                port, store, workdir, sizes.scale_users, sizes.scale_latency, floor_p50
            )
            log(f"scale: {result['scale']}")
    finally:
        broker.close()
        store.close()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    with_ratios(result)
    return result


def run_instances(counts: list[int], n: int, keep: bool) -> int:
    """`--instances`: the sharded service as 1, 2, 3... instances, one after the other."""
    from bench.instances import bench_instances, instances_table

    ensure_postgres()
    workdir = Path(tempfile.mkdtemp(prefix="rc-bench-instances-"))
    store = Store("postgres", workdir)
    broker = MosquittoBroker(
        directory=workdir / "broker", persistence=False, extra_config="set_tcp_nodelay true"
    )
    broker.start()
    try:
        rows = bench_instances(broker.port, store, workdir, counts, n)
    finally:
        broker.close()
        store.close()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    out = ROOT / "bench" / "results" / "latest-instances.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2) + "\n")
    m = machine()
    print(f"\n{m['date']}: {m['nproc']} cores, {m['cpu']}, Python {m['python']}\n")
    print(instances_table(rows))
    return 0


def _get(d: dict[str, Any], *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return "-"
        d = d[p]
    return d


def table(results: list[dict[str, Any]]) -> str:
    """A markdown table: one row per figure, one column per store."""
    rows: list[tuple[str, str, tuple[str, ...]]] = [
        (
            "0 peers",
            "bare paho automation p50 / p99 (ms)",
            ("peers.paho.p50_ms", "peers.paho.p99_ms"),
        ),
        (
            "0 peers",
            "bare paho: events/s, CPU ms/event (to the last first nudge / until quiet)",
            (
                "peers.paho.events_per_s",
                "peers.paho.cpu_ms_per_event",
                "peers.paho.quiet_cpu_ms_per_event",
            ),
        ),
        (
            "0 peers",
            "Node-RED flow p50 / p99 (ms)",
            ("peers.node-red.p50_ms", "peers.node-red.p99_ms"),
        ),
        (
            "0 peers",
            "Node-RED: events/s, CPU ms/event (to the last first nudge / until quiet)",
            (
                "peers.node-red.events_per_s",
                "peers.node-red.cpu_ms_per_event",
                "peers.node-red.quiet_cpu_ms_per_event",
            ),
        ),
        ("0 peers", "service p50 / paho p50", ("ratios.p50_to_paho",)),
        ("0 peers", "service events/s / Node-RED's", ("ratios.events_per_s_to_node_red",)),
        (
            "0 peers",
            "service CPU per event / paho's (until quiet)",
            ("ratios.cpu_per_event_to_paho",),
        ),
        ("1 floor", "echo round trip p50 / p99 (ms)", ("floor.p50_ms", "floor.p99_ms")),
        ("1 floor", "echo QoS 1 messages/s", ("floor.msgs_per_s",)),
        ("2 latency", "event -> first nudge p50 / p99 (ms)", ("latency.p50_ms", "latency.p99_ms")),
        ("2 latency", "p50 / floor p50", ("latency.ratio_to_floor_p50",)),
        (
            "2b flood",
            "quiet user p50 calm / beside a 50/s flood (ms)",
            ("flood.calm_p50_ms", "flood.flood_p50_ms"),
        ),
        ("2b flood", "p50 beside the flood / calm", ("flood.ratio_p50",)),
        (
            "2b flood",
            "flooder's state (KB) / refusal reports",
            ("flood.flooder_state_kb", "flood.refusal_reports"),
        ),
        ("3 throughput", "events/s (first nudge of every event)", ("throughput.events_per_s",)),
        (
            "3 throughput",
            "events/s (every immediate nudge)",
            ("throughput.events_per_s_all_immediate",),
        ),
        (
            "3 throughput",
            "CPU for the burst (s), ms per event",
            ("throughput.burst_cpu_s", "throughput.cpu_ms_per_event"),
        ),
        (
            "3 throughput",
            "CPU until quiet (s), ms per event",
            ("throughput.quiet_cpu_s", "throughput.quiet_cpu_ms_per_event"),
        ),
        (
            "3 throughput",
            "immediate nudges received / stored",
            ("throughput.immediate_nudges_received", "throughput.immediate_nudges_stored"),
        ),
        (
            "3 throughput",
            "scheduled jobs stored / expected",
            ("throughput.scheduled_jobs_stored", "throughput.scheduled_jobs_expected"),
        ),
        ("3 throughput", "lost / duplicated", ("throughput.lost", "throughput.duplicated")),
        ("4 punctuality", "jobs due in one minute", ("punctuality.jobs",)),
        (
            "4 punctuality",
            "lateness p50 / p99 (ms)",
            ("punctuality.lateness_p50_ms", "punctuality.lateness_p99_ms"),
        ),
        (
            "4 punctuality",
            "missing / duplicated",
            ("punctuality.missing", "punctuality.duplicated"),
        ),
        ("5 scale", "users / jobs in store", ("scale.users", "scale.jobs_in_store")),
        ("5 scale", "resident memory (MB), peak", ("scale.rss_mb", "scale.peak_rss_mb")),
        ("5 scale", "start-up: process start -> first event handled (s)", ("scale.startup_s",)),
        (
            "5 scale",
            "latency p50 / p99 at that size (ms)",
            ("scale.latency.p50_ms", "scale.latency.p99_ms"),
        ),
    ]
    head = "| section | figure | " + " | ".join(r["store"] for r in results) + " |"
    out = [head, "|---|---|" + "---|" * len(results)]
    for section, label, paths in rows:
        cells = [" / ".join(str(_get(r, *p.split("."))) for p in paths) for r in results]
        out.append(f"| {section} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(out)


TARGETS: list[tuple[str, str, Callable[[dict[str, Any]], Any], Callable[[Any], bool]]] = [
    (
        "latency p50 within 1.5x the bare paho automation's",
        "ratios.p50_to_paho",
        lambda r: _get(r, "ratios", "p50_to_paho"),
        lambda v: v <= 1.5,
    ),
    (
        "latency p99 under 5 ms",
        "latency.p99_ms",
        lambda r: _get(r, "latency", "p99_ms"),
        lambda v: v < 5,
    ),
    (
        "burst events/s at least the Node-RED flow's, 0 lost, 0 doubled",
        "ratios.events_per_s_to_node_red, throughput.lost, throughput.duplicated",
        lambda r: (
            _get(r, "ratios", "events_per_s_to_node_red"),
            _get(r, "throughput", "lost"),
            _get(r, "throughput", "duplicated"),
        ),
        lambda v: v[0] >= 1 and v[1] == 0 and v[2] == 0,
    ),
    (
        "punctuality p99 under 100 ms (10,000 due in one minute)",
        "punctuality.lateness_p99_ms",
        lambda r: _get(r, "punctuality", "lateness_p99_ms"),
        lambda v: v < 100,
    ),
    (
        "100,000 users: under 300 MB resident",
        "scale.rss_mb",
        lambda r: _get(r, "scale", "rss_mb"),
        lambda v: v < 300,
    ),
    (
        "100,000 users: start-up under 5 s",
        "scale.startup_s",
        lambda r: _get(r, "scale", "startup_s"),
        lambda v: v < 5,
    ),
]


def targets_table(results: list[dict[str, Any]]) -> str:
    head = "| target | " + " | ".join(r["store"] for r in results) + " |"
    out = [head, "|---|" + "---|" * len(results)]
    for label, _path, get, ok in TARGETS:
        cells = []
        for r in results:
            v = get(r)
            try:
                mark = "met" if ok(v) else "not met"
            except TypeError:
                mark = "not run"
            shown = " / ".join(map(str, v)) if isinstance(v, tuple) else str(v)
            cells.append(f"{shown} ({mark})")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out)


# RESULTS.md below this line is written by hand (the dated history of what was measured and
# tried); bench/run rewrites only what is above it.
HISTORY_MARK = "<!-- history: written by hand, kept by bench/run -->\n"


def results_md(results: list[dict[str, Any]], quick: bool) -> str:
    m = results[0]["machine"]
    return f"""# Benchmark results

Latest run of `bench/run --store {"both" if len(results) > 1 else results[0]["store"]}\
{" --quick" if quick else ""}` on {m["date"]}: {m["nproc"]} cores ({m["cpu"]}), Linux \
{m["kernel"]}, Python {m["python"]}, mosquitto {m["mosquitto"]}, loopback. Raw figures: \
`bench/results/latest-<store>.json`. Nothing in the test suite asserts a time.

{table(results)}

## Against the targets

{targets_table(results)}

## What each row measures

1. **floor**: a bare paho-mqtt echo client (`bench/echo.py`, its own process, no persistence,
   TCP_NODELAY) through the same mosquitto: round trip of one QoS 1 message, sequential; and
   QoS 1 messages/s echoed for a burst. The physical limit of one Python MQTT client here.
2. **latency**: a workout event published (QoS 1) -> the first nudge received, sequential
   events over 100 users, after 100 warm-up events. The service decides, commits (one
   transaction), then publishes and acknowledges.
2b. **flood**: one user's device publishes workouts at 50/s on its own topic; the latency
   of (2) for other users before and during the flood, the ratio of the two p50s, the
   flooder's stored state and the refusals reported on its error topic (rate limit: the
   config defaults, 30 a minute after a burst of 120), measured once the burst has passed.
3. **throughput**: a QoS 1 burst (the service: a user of its own per event, as workouts
   of one user that end together are one session; the peers: 100 users); events/s
   until every event's immediate nudges arrived. Lost = immediate nudges stored but not
   received, events without a nudge, scheduled nudges without their job row; duplicated =
   a nudge id received twice.
   CPU is read twice, for the service and the peers alike: when the last event's first
   nudge arrived, and once the process is quiet (under 4% of a core for 0.25 s), which
   counts the work it deferred (states, PUBACK marks); the CPU ratio uses the second.
4. **punctuality**: one protein reminder (R8) per user, due spread evenly over one minute,
   each from a workout that ended an hour before; lateness = received - `due_at`.
5. **scale**: users with their pending jobs (the day start and two bedtime nudges each),
   seeded by running the service once; then a restart: resident memory after the latency
   run, start-up = process start -> first event's nudge received (the event was queued by
   the broker in the service's persistent session), and the latency of (2) at that size.
   The generated config is JSON (YAML's subset).

mosquitto runs with per-client queue limits lifted and `set_tcp_nodelay true` (without it,
each hop waits for the 40 ms delayed ACK: the floor was 44 ms).
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", choices=("sqlite", "postgres", "both"), default="sqlite")
    ap.add_argument("--quick", action="store_true", help="smaller sizes, a few minutes")
    ap.add_argument(
        "--only",
        default="floor,peers,latency,flood,throughput,punctuality,scale",
        help="comma-separated sections (floor, peers, latency, flood, throughput, "
        "punctuality, scale)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument(
        "--py-spy",
        metavar="DIR",
        type=Path,
        help="record every service process with py-spy into DIR (speedscope JSON)",
    )
    ap.add_argument(
        "--instances",
        metavar="N,N,...",
        help="only the sharded service: 16 shards on PostgreSQL run as N instances (1,2,3)",
    )
    args = ap.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.instances:
        return run_instances([int(x) for x in args.instances.split(",")], sizes.burst, args.keep)
    if args.py_spy is not None:
        args.py_spy.mkdir(parents=True, exist_ok=True)
        Service.profile_dir = args.py_spy.resolve()
    sections = set(args.only.split(","))
    kinds = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    results = []
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    for kind in kinds:
        res = run_store(kind, sizes, sections, args.keep)
        res["quick"] = args.quick
        (out_dir / f"latest-{kind}.json").write_text(json.dumps(res, indent=2) + "\n")
        results.append(res)
    m = results[0]["machine"]
    print(
        f"\n{m['date']}: {m['nproc']} cores, {m['cpu']}, Python {m['python']}, "
        f"mosquitto {m['mosquitto']}{' (quick)' if args.quick else ''}\n"
    )
    print(table(results))
    print()
    print(targets_table(results))
    if sections >= {"floor", "latency", "throughput", "punctuality", "scale"}:
        out = ROOT / "bench" / "RESULTS.md"
        history = out.read_text().partition(HISTORY_MARK)[2] if out.exists() else ""
        out.write_text(results_md(results, args.quick) + f"\n{HISTORY_MARK}{history}")
        log("bench/RESULTS.md written")
    return 0
