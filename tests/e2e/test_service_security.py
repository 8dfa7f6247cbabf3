"""Security and transport: password auth with the shipped ACL, TLS, the embedded broker."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.mosquitto import BrokerFactory, free_port
from tests.support.service_process import (
    Recorder,
    ServiceProcess,
    publish,
    refused_publish,
    user_config,
    workout,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
BASE = "recovery_coach"  # the shipped ACL is written for the default base topic
PASSWORDS = {"recovery_coach": "svc-pw", "alex": "alex-pw", "sam": "sam-pw"}


@pytest.fixture
def secured(tmp_path: Path, mosquitto_factory: BrokerFactory):  # type: ignore[no-untyped-def]
    acl = (REPO_ROOT / "config" / "mosquitto" / "acl").read_text()
    broker = mosquitto_factory(users=PASSWORDS, acl=acl)
    secret = tmp_path / "mqtt-password"
    secret.write_text("svc-pw\n")
    svc = ServiceProcess(
        tmp_path / "svc",
        port=None,
        base=BASE,
        users={"alex": user_config(), "sam": user_config()},
        broker={
            "host": broker.host,
            "port": broker.port,
            "username": "recovery_coach",
            "password_file": str(secret),
        },
    )
    svc.start().wait_connected()
    yield broker, svc
    svc.close()


def test_service_works_with_password_auth_and_the_acl(secured) -> None:  # type: ignore[no-untyped-def]
    broker, svc = secured
    rec = Recorder(broker.host, broker.port, [f"{BASE}/alex/#"], "alex", "alex-pw").start()
    try:
        event = workout()
        publish(
            broker.port,
            f"{BASE}/alex/workout/completed",
            event,
            username="alex",
            password="alex-pw",
        )
        rec.wait_for(
            lambda r: any(
                n["source_event_id"] == event["event_id"] for n in r.nudges("alex", BASE)
            ),
            5,
            "alex's nudges",
        )
        assert "svc-pw" not in svc.log()  # the password is never logged
    finally:
        rec.stop()


def test_a_client_without_credentials_gets_nothing(secured) -> None:  # type: ignore[no-untyped-def]
    broker, _ = secured
    result: list[object] = []
    done = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="anon", protocol=mqtt.MQTTv5)

    def on_connect(c: mqtt.Client, u: object, flags: object, rc: object, props: object) -> None:
        result.append(rc)
        done.set()

    client.on_connect = on_connect
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        assert done.wait(5)
        assert getattr(result[0], "is_failure", False)
    finally:
        client.loop_stop()


def test_a_users_device_cannot_publish_another_users_events(secured) -> None:  # type: ignore[no-untyped-def]
    broker, svc = secured
    rec = Recorder(broker.host, broker.port, [f"{BASE}/#"], "recovery_coach", "svc-pw").start()
    try:
        forged = workout()
        assert refused_publish(broker, "alex", "alex-pw", f"{BASE}/sam/workout/completed", forged)
        genuine = workout()
        publish(
            broker.port, f"{BASE}/sam/workout/completed", genuine, username="sam", password="sam-pw"
        )
        rec.wait_for(
            lambda r: any(
                n["source_event_id"] == genuine["event_id"] for n in r.nudges("sam", BASE)
            ),
            5,
            "sam's own event handled",
        )
        assert not any(n["source_event_id"] == forged["event_id"] for n in rec.nudges("sam", BASE))
        assert forged["event_id"] not in svc.log()
    finally:
        rec.stop()


def test_a_user_cannot_read_another_users_nudges(secured) -> None:  # type: ignore[no-untyped-def]
    broker, _ = secured
    spy = Recorder(broker.host, broker.port, [f"{BASE}/sam/#"], "alex", "alex-pw").start()
    try:
        event = workout()
        publish(
            broker.port, f"{BASE}/sam/workout/completed", event, username="sam", password="sam-pw"
        )
        time.sleep(1.5)
        assert spy.on(f"{BASE}/sam/#") == []
    finally:
        spy.stop()


def test_tls_with_a_test_ca(tmp_path: Path, mosquitto_factory: BrokerFactory) -> None:
    broker = mosquitto_factory(tls=True)
    assert broker.tls_files is not None
    assert broker.tls_port is not None
    ca = str(broker.tls_files.ca_cert)
    svc = ServiceProcess(
        tmp_path,
        port=None,
        base="rc_tls",
        users={"alex": user_config()},
        broker={"host": "127.0.0.1", "port": broker.tls_port, "tls": {"ca_file": ca}},
    )
    rec = Recorder(broker.host, broker.tls_port, ["rc_tls/#"], tls_ca=ca).start()
    try:
        svc.start().wait_connected()
        event = workout()
        publish(broker.tls_port, "rc_tls/alex/workout/completed", event, tls_ca=ca)
        rec.wait_for(
            lambda r: any(
                n["source_event_id"] == event["event_id"] for n in r.nudges("alex", "rc_tls")
            ),
            5,
            "a nudge over TLS",
        )
    finally:
        svc.close()
        rec.stop()


def test_tls_refuses_a_server_the_ca_did_not_sign(
    tmp_path: Path, mosquitto_factory: BrokerFactory
) -> None:
    broker = mosquitto_factory(tls=True)
    other = mosquitto_factory(tls=True)  # a different test CA
    assert broker.tls_port is not None
    assert other.tls_files is not None
    svc = ServiceProcess(
        tmp_path,
        port=None,
        base="rc_tls2",
        users={"alex": user_config()},
        broker={
            "host": "127.0.0.1",
            "port": broker.tls_port,
            "tls": {"ca_file": str(other.tls_files.ca_cert)},
        },
    )
    try:
        svc.start()
        time.sleep(3)
        assert "connected to" not in svc.log()
        assert svc.proc is not None
        assert svc.proc.poll() is None  # still up, still retrying
    finally:
        svc.close()


def _run_embedded(tmp_path: Path, port: int) -> ServiceProcess:
    svc = ServiceProcess(
        tmp_path,
        port=None,
        base="rc_embedded",
        users={"alex": user_config()},
        extra={"embedded_broker": {"host": "127.0.0.1", "port": port}},
    )
    return svc.start()


def test_embedded_broker_runs_the_service_on_a_fresh_port(tmp_path: Path) -> None:
    port = free_port()
    svc = _run_embedded(tmp_path, port)
    try:
        svc.wait_connected(20)
        assert "embedded MQTT broker listening" in svc.log()
        rec = Recorder("127.0.0.1", port, ["rc_embedded/#"]).start()
        try:
            event = workout()
            publish(port, "rc_embedded/alex/workout/completed", event)
            rec.wait_for(
                lambda r: any(
                    n["source_event_id"] == event["event_id"]
                    for n in r.nudges("alex", "rc_embedded")
                ),
                5,
                "a nudge through the embedded broker",
            )
        finally:
            rec.stop()
        assert svc.stop() < 5
    finally:
        svc.close()


def test_embedded_port_taken_by_a_broker_uses_that_broker(
    tmp_path: Path, mosquitto_factory: BrokerFactory
) -> None:
    broker = mosquitto_factory()
    svc = _run_embedded(tmp_path, broker.port)
    try:
        svc.wait_connected(20)
        assert "taken by an MQTT broker that answers: using it" in svc.log()
        assert "Traceback" not in svc.log()
    finally:
        svc.close()


def test_embedded_port_taken_by_something_else_is_one_clear_line(tmp_path: Path) -> None:
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    port = squatter.getsockname()[1]

    def accept_and_hang() -> None:
        try:
            conn, _ = squatter.accept()
            time.sleep(3)
            conn.close()
        except OSError:
            pass

    threading.Thread(target=accept_and_hang, daemon=True).start()
    svc = _run_embedded(tmp_path, port)
    try:
        assert svc.proc is not None
        assert svc.proc.wait(15) == 2
        log = svc.log()
        assert "Traceback" not in log
        assert f"port {port} on 127.0.0.1 is in use by something that is not an MQTT broker" in log
    finally:
        squatter.close()
        svc.close()


def test_status_command_reports_the_running_service(
    tmp_path: Path, mosquitto_factory: BrokerFactory
) -> None:
    broker = mosquitto_factory()
    svc = ServiceProcess(
        tmp_path, port=broker.port, base="rc_status", users={"alex": user_config()}
    )
    try:
        svc.start().wait_connected()
        deadline = time.time() + 10
        out = ""
        while time.time() < deadline:
            res = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "recovery_coach.cli",
                    "status",
                    "--config",
                    str(svc.config_path),
                ],
                capture_output=True,
                text=True,
                timeout=20,
            )
            out = res.stdout
            if res.returncode == 0 and "jobs_pending" in out:
                break
            time.sleep(0.5)
        assert "service: online" in out
        assert "connected: True" in out
    finally:
        svc.close()


def test_a_device_cannot_take_the_services_session(
    tmp_path: Path, mosquitto_factory: BrokerFactory
) -> None:
    """A person's account connects, while the service is stopped, with the client id the
    service used to have (the documented `recovery-coach-<base>`) and a persistent session,
    as a misconfigured or curious device could. Another person's workout sent meanwhile is
    still handled when the service is back: the service's session is not theirs to take."""
    acl = (REPO_ROOT / "config" / "mosquitto" / "acl").read_text()
    broker = mosquitto_factory(users=PASSWORDS, acl=acl)
    secret = tmp_path / "mqtt-password"
    secret.write_text("svc-pw\n")
    svc = ServiceProcess(
        tmp_path / "svc",
        port=None,
        base=BASE,
        users={"alex": user_config(), "sam": user_config()},
        broker={
            "host": broker.host,
            "port": broker.port,
            "username": "recovery_coach",
            "password_file": str(secret),
        },
    )
    rec = Recorder(broker.host, broker.port, [f"{BASE}/sam/nudge"], "recovery_coach", "svc-pw")
    rec.start()
    try:
        svc.start().wait_connected()
        svc.stop()
        device = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"recovery-coach-{BASE}", clean_session=False
        )
        device.username_pw_set("alex", "alex-pw")
        connected = threading.Event()
        device.on_connect = lambda *_a: connected.set()
        device.connect(broker.host, broker.port)
        device.loop_start()
        assert connected.wait(10)
        device.disconnect()
        device.loop_stop()
        event = workout("sam-while-down")
        publish(
            broker.port, f"{BASE}/sam/workout/completed", event, username="sam", password="sam-pw"
        )
        svc.start().wait_connected()
        rec.wait_for(
            lambda r: any(n["source_event_id"] == "sam-while-down" for n in r.nudges("sam", BASE)),
            20,
            "sam's nudge for the workout sent while the service was down",
        )
    finally:
        svc.close()
        rec.stop()
