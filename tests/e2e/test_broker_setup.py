"""A Home Assistant user's first hour with a broker: the shipped ACL against every topic
the docs tell a person's devices to use, and each common broker mistake said in one line
with what to change: a broker that wants a login, a wrong password, a port that is not
MQTT, two services with one client id; `status` and `publish-example` with the broker or
the service stopped. Against real mosquitto brokers and the service as a child process."""

from __future__ import annotations

import http.server
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.mosquitto import BrokerFactory, MosquittoBroker, example_broker, free_port
from tests.support.service_process import HOST, ServiceProcess, user_config

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
OUTBOUND = {"nudge", "state", "error"}  # the service's; a person's devices read them
HA_ONLY = {"profile"}  # who a person is: only Home Assistant's account sets it


def documented_person_topics() -> set[str]:
    """Every `<base>/<user>/...` topic the docs name (or `recovery_coach/<your user id>/...`),
    as the part after the user: `workout/completed`, `nudge/<nudge_id>/ack`, ..."""
    found: set[str] = set()
    pattern = re.compile(r"`(?:<base>|recovery_coach)/<[^>/`]+>/([a-z_/<>+]+)`")
    for doc in DOCS:
        found.update(m.group(1).rstrip("/") for m in pattern.finditer(doc.read_text()))
    return found


def concrete(rest: str) -> str:
    return re.sub(r"<[^>]+>|\+", "n1", rest)


class Client:
    """A plain paho client of one broker account, recording what it receives."""

    def __init__(self, port: int, username: str, password: str) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"t-{username}-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv311,
        )
        self.c.username_pw_set(username, password)
        self.c.on_message = self._message
        assert self.c.connect(HOST, port) == 0
        self.c.loop_start()

    def _message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.got.append((msg.topic, bytes(msg.payload)))

    def subscribe(self, topic: str) -> None:
        self.c.subscribe(topic, 1)[1]
        time.sleep(0.2)  # until the SUBACK: paho has no blocking subscribe

    def wait_for(self, topic: str, payload: bytes, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if (topic, payload) in self.got:
                    return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


@pytest.fixture
def shipped(mosquitto_factory: BrokerFactory) -> MosquittoBroker:
    users = {"recovery_coach": "c", "homeassistant": "h", "alex": "a"}
    return example_broker(mosquitto_factory, users)


def test_the_docs_name_the_topics_a_device_uses() -> None:
    """The check below is only as good as what it reads: the docs name them all."""
    topics = documented_person_topics()
    for rest in ("workout/completed", "workout/health_auto_export", "gym/checkin", "soreness"):
        assert rest in topics, rest


def test_the_shipped_acl_allows_every_topic_the_docs_tell_a_person_to_use(
    shipped: MosquittoBroker,
) -> None:
    """Each documented inbound topic, published by the person's own account, reaches the
    service (one connection for all: mosquitto closes a client whose publish it refuses, so
    a refused topic loses what follows it too); the person reads the service's outbound
    topics, and cannot set their own profile."""
    topics = documented_person_topics()
    inbound = sorted(t for t in topics if t.split("/")[0] not in OUTBOUND | HA_ONLY)
    service = Client(shipped.port, "recovery_coach", "c")
    alex = Client(shipped.port, "alex", "a")
    try:
        service.subscribe("recovery_coach/#")
        alex.subscribe("recovery_coach/alex/#")
        for rest in inbound:
            alex.c.publish(f"recovery_coach/alex/{concrete(rest)}", b"doc", qos=1)
        alex.c.publish("recovery_coach/alex/profile", b"forged", qos=1)
        end = b"sentinel"  # published last on a topic surely allowed: all before it came
        alex.c.publish("recovery_coach/alex/workout/completed", end, qos=1)
        assert service.wait_for("recovery_coach/alex/workout/completed", end), (
            "the person's connection was closed: one of the documented topics is refused "
            f"by the shipped ACL: {inbound}"
        )
        missing = [
            t for t in inbound if (f"recovery_coach/alex/{concrete(t)}", b"doc") not in service.got
        ]
        assert missing == [], f"documented but not allowed for a person: {missing}"
        assert ("recovery_coach/alex/profile", b"forged") not in service.got
        for rest in sorted(topics & OUTBOUND):
            service.c.publish(f"recovery_coach/alex/{rest}", b"out", qos=1)
            assert alex.wait_for(f"recovery_coach/alex/{rest}", b"out"), rest
    finally:
        service.close()
        alex.close()


# ------------------------------------------------------------------ the service's login


def _attempts_refused(broker: MosquittoBroker) -> int:
    return broker.log_text().count("not authorised")


@pytest.fixture
def with_login(mosquitto_factory: BrokerFactory) -> MosquittoBroker:
    return mosquitto_factory(users={"coach": "right"})


@pytest.mark.parametrize(
    ("login", "says"),
    [
        ({}, "it wants a login. Set broker.username and broker.password_file"),
        ({"username": "coach", "password": "wrong"}, "refused the login 'coach'"),
    ],
    ids=["no login", "wrong password"],
)
def test_a_refused_login_is_said_once_with_what_to_change(
    tmp_path: Path, with_login: MosquittoBroker, login: dict[str, str], says: str
) -> None:
    broker: dict[str, object] = {"host": HOST, "port": with_login.port}
    env: dict[str, str] = {}
    if login:
        broker["username"] = login["username"]
        env["RECOVERY_COACH_MQTT_PASSWORD"] = login["password"]
    svc = ServiceProcess(tmp_path, port=None, broker=broker, users={}, env=env)
    try:
        svc.start()
        svc.wait_log(says, timeout=20)
        deadline = time.monotonic() + 30
        while _attempts_refused(with_login) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)  # the broker's log counts the service's attempts
        assert _attempts_refused(with_login) >= 3, with_login.log_text()[-2000:]
        said = [line for line in svc.log().splitlines() if says in line and " ERROR " in line]
        assert len(said) == 1  # once, not at every attempt (the repeats are at DEBUG)
        assert "Traceback" not in svc.log()
    finally:
        svc.close()


def test_check_config_refuses_a_username_without_a_password(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("broker: {host: localhost, username: coach}\nusers: {}\n")
    done = subprocess.run(
        [sys.executable, "-m", "recovery_coach.cli", "check-config", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,  # and no RECOVERY_COACH_MQTT_PASSWORD in its environment
        env={k: v for k, v in os.environ.items() if not k.startswith("RECOVERY_COACH_")},
    )
    assert done.returncode == 2
    assert "broker.username 'coach' has no password: set broker.password_file" in done.stderr


# ------------------------------------------------------------------ not a broker


class _Web(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_broker_port_where_http_answers_is_named_at_once(tmp_path: Path) -> None:
    """Home Assistant's web port given as the broker's: said within seconds, in one line."""
    server = http.server.ThreadingHTTPServer((HOST, free_port()), _Web)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    svc = ServiceProcess(tmp_path, port=port, users={})
    try:
        svc.start()
        svc.wait_log(f"{HOST}:{port} does not answer MQTT: an HTTP server answers", timeout=30)
        assert "Set broker.port to the broker's MQTT port" in svc.log()
    finally:
        svc.close()
        server.shutdown()


# ------------------------------------------------------------------ one client id, twice


def test_two_services_with_one_client_id_say_which_id_they_share(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    """The same config started twice (each with its own store, so nothing else stops it):
    the broker hands the session back and forth, and the logs say why."""
    base = f"rc_twice_{uuid.uuid4().hex[:6]}"
    broker = {"host": HOST, "port": mosquitto.port, "client_id": f"{base}-coach"}
    first = ServiceProcess(tmp_path / "a", port=None, base=base, broker=broker, users={})
    second = ServiceProcess(tmp_path / "b", port=None, base=base, broker=broker, users={})
    try:
        first.start().wait_connected()
        second.start()
        said = f"with this service's client id '{base}-coach' and took its session"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(said in s.log() for s in (first, second)):
            time.sleep(0.2)
        assert any(said in s.log() for s in (first, second)), first.log()[-3000:]
    finally:
        first.close()
        second.close()


# ------------------------------------------------------------------ the commands


def _cli(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "recovery_coach.cli", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_status_and_publish_example_say_when_the_broker_is_down(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"broker: {{host: {HOST}, port: {free_port()}}}\nusers: {{alex: {{}}}}\n")
    status = _cli("status", config=cfg)
    assert status.returncode == 1
    assert "cannot reach the broker at" in status.stdout
    example = _cli("publish-example", config=cfg)
    assert example.returncode == 1
    assert "nothing published: cannot reach the broker at" in example.stdout
    assert "Traceback" not in example.stderr + status.stderr


def test_publish_example_says_when_the_service_is_not_running(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    base = f"rc_none_{uuid.uuid4().hex[:6]}"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"broker: {{host: {HOST}, port: {mosquitto.port}}}\nbase_topic: {base}\n"
        "users: {alex: {}}\n"
    )
    example = _cli("publish-example", config=cfg)
    assert example.returncode == 1
    assert "the service is not running" in example.stdout
    status = _cli("status", config=cfg)
    assert status.returncode == 1
    assert "no retained status: the service has never connected" in status.stdout


def test_publish_example_prints_the_nudges_of_a_running_service(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    base = f"rc_ex_{uuid.uuid4().hex[:6]}"
    svc = ServiceProcess(tmp_path, port=mosquitto.port, base=base, users={"alex": user_config()})
    try:
        svc.start().wait_connected()
        example = _cli("publish-example", config=svc.config_path)
        assert example.returncode == 0, example.stdout
        assert "R1 cooldown_start" in example.stdout
    finally:
        svc.close()


def test_status_into_a_closed_pipe_is_no_traceback(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    base = f"rc_pipe_{uuid.uuid4().hex[:6]}"
    svc = ServiceProcess(tmp_path, port=mosquitto.port, base=base, users={"alex": user_config()})
    try:
        svc.start().wait_connected()
        status = f"{sys.executable} -m recovery_coach.cli status --config {svc.config_path}"
        # A reader that leaves at once (as `head` does once it has its lines).
        done = subprocess.run(f"{status} | true", shell=True, capture_output=True, text=True)
        assert "Traceback" not in done.stderr
        assert "BrokenPipeError" not in done.stderr
        first = subprocess.run(f"{status} | head -1", shell=True, capture_output=True, text=True)
        assert first.stdout.startswith("service: online")
        assert first.stderr == ""
    finally:
        svc.close()
