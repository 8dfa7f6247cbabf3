"""What every benchmark section drives: the load client (one paho client, this process), the
service as a child process, the stores, and small figures helpers."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent

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
