"""End to end against a real mosquitto: events in, nudges, state, discovery and errors out."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.mosquitto import MosquittoBroker
from tests.support.service_process import Recorder, ServiceProcess, publish, user_config, workout

BASE = "rc_e2e"


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, mosquitto: MosquittoBroker
) -> Iterator[tuple[ServiceProcess, Recorder]]:
    rec = Recorder(
        mosquitto.host, mosquitto.port, [f"{BASE}/#", "homeassistant/device/+/config"]
    ).start()
    svc = ServiceProcess(
        tmp_path_factory.mktemp("e2e"),
        port=mosquitto.port,
        base=BASE,
        # Workouts that end close together are one session (one cooldown): tests that each
        # need a session of their own have a user of their own.
        users={
            "alex": user_config(goal="hypertrophy"),
            "sam": user_config(name="Sam"),
            **{u: user_config() for u in ("redo", "fuzz", "acks", "expiry")},
        },
    ).start()
    svc.wait_connected()
    rec.wait_for(lambda r: bool(r.on(f"{BASE}/status")), 10, "the status topic")
    yield svc, rec
    svc.close()
    rec.stop()


def test_status_is_online_and_retained(live: tuple[ServiceProcess, Recorder]) -> None:
    """A client that subscribes later gets `online` from the broker's retained copy (the
    test used to read the live copy only, so it could not tell retained from not)."""
    _, rec = live
    assert rec.on(f"{BASE}/status")[-1].payload == b"online"
    late = Recorder(rec.host, rec.port, [f"{BASE}/status"]).start()
    try:
        late.wait_for(lambda r: bool(r.on(f"{BASE}/status")), 5, "the retained status")
        status = late.on(f"{BASE}/status")[-1]
        assert status.retain
        assert status.payload == b"online"
    finally:
        late.stop()


def test_leg_day_gives_immediate_nudges_within_a_second(
    live: tuple[ServiceProcess, Recorder],
) -> None:
    _, rec = live
    event = workout()
    sent = time.time()
    publish(rec.port, f"{BASE}/alex/workout/completed", event)

    def arrived(r: Recorder) -> bool:
        ids = {n["source_event_id"] for n in r.nudges("alex", BASE)}
        return event["event_id"] in ids

    rec.wait_for(arrived, 5, "the first nudge")
    first = min(
        m.at
        for m in rec.on(f"{BASE}/alex/nudge")
        if m.json()["source_event_id"] == event["event_id"]
    )
    assert first - sent < 1.0
    time.sleep(0.3)
    mine = [n for n in rec.nudges("alex", BASE) if n["source_event_id"] == event["event_id"]]
    rules = {n["rule"] for n in mine}
    # R1 cooldown, R2 cardio cap, R3 gains (hypertrophy): immediate; R8 protein is scheduled.
    assert {"R1", "R2", "R3"} <= rules
    assert "R8" not in rules
    for n in mine:
        for key in ("nudge_id", "user", "rule", "kind", "title", "message", "speech", "due_at"):
            assert n[key], key
        assert n["user"] == "alex"
        assert n["evidence"]


def test_state_topic_is_retained_and_updated(live: tuple[ServiceProcess, Recorder]) -> None:
    _, rec = live
    event = workout(focus="upper")
    publish(rec.port, f"{BASE}/sam/workout/completed", event)

    def updated(r: Recorder) -> bool:
        states = [m.json() for m in r.on(f"{BASE}/sam/state") if m.payload]
        return any(
            (s.get("last_workout") or {}).get("event_id") == event["event_id"] for s in states
        )

    rec.wait_for(updated, 5, "sam's state with the new workout")
    late = Recorder(rec.host, rec.port, [f"{BASE}/sam/state"]).start()
    try:
        late.wait_for(lambda r: bool(r.on(f"{BASE}/sam/state")), 5, "the retained state")
        state = late.on(f"{BASE}/sam/state")[-1]
        assert state.retain
        body = state.json()
        assert body["protein_target_g"] == 128  # 80 kg x 1.6 g/kg
        assert body["cooldown_ends_at"] is not None
        for key in ("next_bedtime", "protein_remaining_g", "zone2_minutes_week", "last_nudge"):
            assert key in body
    finally:
        late.stop()


def test_discovery_announces_one_device_per_user(live: tuple[ServiceProcess, Recorder]) -> None:
    _, rec = live
    rec.wait_for(
        lambda r: len({m.topic for m in r.on("homeassistant/device/+/config")}) >= 2,
        5,
        "discovery for both users",
    )
    topics = {m.topic for m in rec.on("homeassistant/device/+/config")}
    assert "homeassistant/device/recovery_coach_alex/config" in topics
    assert "homeassistant/device/recovery_coach_sam/config" in topics
    cfg = rec.on("homeassistant/device/recovery_coach_alex/config")[-1].json()
    assert cfg["cmps"]
    assert all(c["unique_id"].startswith("recovery_coach_alex_") for c in cfg["cmps"].values())


def test_redelivered_event_adds_no_nudge(live: tuple[ServiceProcess, Recorder]) -> None:
    _, rec = live
    event = workout()
    publish(rec.port, f"{BASE}/redo/workout/completed", event)
    rec.wait_for(
        lambda r: any(n["source_event_id"] == event["event_id"] for n in r.nudges("redo", BASE)),
        5,
        "nudges for the event",
    )
    time.sleep(0.5)
    before = [n for n in rec.nudges("redo", BASE) if n["source_event_id"] == event["event_id"]]
    publish(rec.port, f"{BASE}/redo/workout/completed", event)
    publish(rec.port, f"{BASE}/redo/workout/completed", event)
    time.sleep(1.0)
    after = [n for n in rec.nudges("redo", BASE) if n["source_event_id"] == event["event_id"]]
    assert len(after) == len(before)
    errors = [
        m.json()
        for m in rec.on(f"{BASE}/redo/error")
        if m.json().get("event_id") == event["event_id"]
    ]
    assert errors == []  # a duplicate is not an error (CONTRACT.md)


def test_payload_user_differing_from_topic_is_refused(
    live: tuple[ServiceProcess, Recorder],
) -> None:
    _, rec = live
    event = workout(user="sam")
    publish(rec.port, f"{BASE}/alex/workout/completed", event)
    rec.wait_for(
        lambda r: any(
            m.json().get("event_id") == event["event_id"] for m in r.on(f"{BASE}/alex/error")
        ),
        5,
        "the refusal",
    )
    err = next(
        m.json() for m in rec.on(f"{BASE}/alex/error") if m.json()["event_id"] == event["event_id"]
    )
    assert "sam" in err["reason"]
    assert err["topic"] == f"{BASE}/alex/workout/completed"
    assert not any(n["source_event_id"] == event["event_id"] for n in rec.nudges("alex", BASE))


payloads = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200),
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text(max_size=20),
        lambda kids: (
            st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids, max_size=4)
        ),
        max_leaves=12,
    ).map(json.dumps),
    st.fixed_dictionaries(
        {},
        optional={
            "event_id": st.one_of(st.text(max_size=5), st.integers()),
            "ended_at": st.one_of(st.text(max_size=30), st.just("2026-01-01T10:00:00")),
            "kind": st.sampled_from(["strength", "run", "", "cardio"]),
            "rpe": st.one_of(st.integers(-5, 20), st.text(max_size=3)),
        },
    ).map(json.dumps),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=payloads)
def test_bad_payloads_get_an_error_each_and_the_service_stays_up(
    live: tuple[ServiceProcess, Recorder], body: str | bytes
) -> None:
    svc, rec = live
    n_before = len(rec.on(f"{BASE}/sam/error"))
    publish(rec.port, f"{BASE}/sam/workout/completed", body)
    rec.wait_for(lambda r: len(r.on(f"{BASE}/sam/error")) > n_before, 5, "an error for the payload")
    err = rec.on(f"{BASE}/sam/error")[-1].json()
    assert err["reason"]
    assert err["topic"] == f"{BASE}/sam/workout/completed"
    assert svc.proc is not None
    assert svc.proc.poll() is None


def test_service_still_answers_after_the_bad_payloads(
    live: tuple[ServiceProcess, Recorder],
) -> None:
    _, rec = live
    event = workout(ago=timedelta(minutes=1))
    publish(rec.port, f"{BASE}/fuzz/workout/completed", event)
    rec.wait_for(
        lambda r: any(n["source_event_id"] == event["event_id"] for n in r.nudges("fuzz", BASE)),
        5,
        "a nudge after the fuzzing",
    )


def test_sigterm_stops_within_seconds_and_publishes_offline(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    base = "rc_stop"
    rec = Recorder(mosquitto.host, mosquitto.port, [f"{base}/status"]).start()
    svc = ServiceProcess(tmp_path, port=mosquitto.port, base=base, users={"alex": user_config()})
    try:
        svc.start().wait_connected()
        rec.wait_for(
            lambda r: any(m.payload == b"online" for m in r.on(f"{base}/status")), 5, "online"
        )
        took = svc.stop()
        assert took < 5.0
        rec.wait_for(lambda r: r.on(f"{base}/status")[-1].payload == b"offline", 5, "offline")
        assert svc.proc is not None
        assert svc.proc.returncode == 0
    finally:
        svc.close()
        rec.stop()


def test_home_assistant_online_makes_the_service_announce_again(
    live: tuple[ServiceProcess, Recorder],
) -> None:
    _, rec = live
    topic = "homeassistant/device/recovery_coach_alex/config"
    rec.wait_for(lambda r: bool(r.on(topic)), 5, "the first announcement")
    before = len(rec.on(topic))
    publish(rec.port, "homeassistant/status", "online")
    # The service waits 1-5 s (random) so many services do not answer at once.
    rec.wait_for(lambda r: len(r.on(topic)) > before, 10, "discovery sent again")
    assert json.loads(rec.on(topic)[-1].payload)["cmps"]


def test_ack_and_snooze_of_the_last_nudge(live: tuple[ServiceProcess, Recorder]) -> None:
    """Snooze the last nudge: a copy waits as a job. Acknowledge it: it is done, and the
    snoozed copy goes with it (the job is cancelled)."""
    svc, rec = live
    event = workout(focus="upper")
    publish(rec.port, f"{BASE}/acks/workout/completed", event)

    def last_nudge(r: Recorder) -> dict[str, object] | None:
        states = [m.json() for m in r.on(f"{BASE}/acks/state") if m.payload]
        return states[-1].get("last_nudge") if states else None

    def jobs() -> int:
        with sqlite3.connect(svc.db) as db:
            n: int = db.execute("select count(*) from apscheduler_jobs").fetchone()[0]
        return n

    rec.wait_for(
        lambda r: (last_nudge(r) or {}).get("kind") == "cooldown_start", 5, "the cooldown nudge"
    )
    n_errors = len(rec.on(f"{BASE}/acks/error"))
    publish(rec.port, f"{BASE}/acks/nudge/no-such-nudge/snooze", {"minutes": 5})
    rec.wait_for(lambda r: len(r.on(f"{BASE}/acks/error")) > n_errors, 5, "a refusal")
    assert "no-such-nudge" in rec.on(f"{BASE}/acks/error")[-1].json()["reason"]

    before = jobs()
    # The cooldown still applies for its 5 minutes: a 3-minute snooze brings it back then.
    publish(rec.port, f"{BASE}/acks/nudge/last/snooze", {"minutes": 3})
    deadline = time.time() + 5
    while time.time() < deadline and jobs() == before:
        time.sleep(0.05)
    assert jobs() == before + 1  # the snoozed copy waits 3 min as a job

    publish(rec.port, f"{BASE}/acks/nudge/last/ack", {})
    rec.wait_for(lambda r: (last_nudge(r) or {}).get("acknowledged") is True, 5, "the ack in state")
    deadline = time.time() + 5
    while time.time() < deadline and jobs() != before:
        time.sleep(0.05)
    assert jobs() == before  # acknowledged: its snoozed copy is cancelled


def test_json_logs_are_one_object_a_line(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    svc = ServiceProcess(
        tmp_path,
        port=mosquitto.port,
        base="rc_jsonlog",
        users={"alex": user_config()},
        extra={"log_format": "json"},
    )
    try:
        svc.start().wait_connected()
        svc.stop()
        lines = [line for line in svc.log().splitlines() if line.strip()]
        records = [json.loads(line) for line in lines]
        assert {"ts", "level", "logger", "msg"} <= set(records[0])
        assert any(r["msg"].startswith("connected to") for r in records)
    finally:
        svc.close()


def test_nudges_carry_mqtt5_message_expiry_from_expires_at(
    live: tuple[ServiceProcess, Recorder],
) -> None:
    _, rec = live
    got: list[tuple[dict[str, object], object]] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="v5-expiry", protocol=mqtt.MQTTv5)

    def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        got.append(
            (json.loads(msg.payload), getattr(msg.properties, "MessageExpiryInterval", None))
        )

    client.on_message = on_message
    client.connect(rec.host, rec.port)
    client.subscribe(f"{BASE}/expiry/nudge", qos=1)
    client.loop_start()
    try:
        time.sleep(0.3)
        event = workout()
        publish(rec.port, f"{BASE}/expiry/workout/completed", event)
        deadline = time.time() + 5
        while time.time() < deadline and not any(
            n["source_event_id"] == event["event_id"] for n, _ in got
        ):
            time.sleep(0.02)
        mine = [(n, e) for n, e in got if n["source_event_id"] == event["event_id"]]
        assert mine
        for nudge, expiry in mine:
            assert nudge["expires_at"] is not None
            left = datetime.fromisoformat(str(nudge["expires_at"])).timestamp() - time.time()
            assert isinstance(expiry, int)
            assert abs(expiry - left) < 5  # seconds until expires_at, as sent
    finally:
        client.loop_stop()
        client.disconnect()
