"""The worker against a real mosquitto, in process: a message that fails alone, commands
without an id redelivered after the commit, and a flooding device beside a quiet one."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from pytest_mock import MockerFixture
from recovery_coach.contract.config import BrokerConfig, parse_config
from recovery_coach.core import coach
from recovery_coach.runtime.service import Service

from tests.support.mosquitto import MosquittoBroker
from tests.support.service_process import Recorder, user_config, workout

BASE = f"rc_worker_{uuid.uuid4().hex[:6]}"  # this module's own topics on the shared broker


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def make_service(
    tmp_path: Path, mosquitto: MosquittoBroker, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Service]]:
    """Services on one store and one client id, so a second one resumes the first's session.
    Each test has its own users (retained states of earlier tests are not theirs)."""
    started: list[Service] = []

    def make(protocol: Literal["5", "3.1.1"] = "5", **extra: Any) -> Service:
        cfg = parse_config(
            {
                "base_topic": BASE,
                "store": f"sqlite:///{tmp_path / 'coach.db'}",
                "users": {"alex": user_config(), "sam": user_config()},
                **extra,
            }
        )
        broker = BrokerConfig(
            host=mosquitto.host,
            port=mosquitto.port,
            client_id=f"rc-{tmp_path.name}"[-60:],
            protocol=protocol,
        )
        svc = Service(cfg, broker)
        return svc

    def start(svc: Service) -> Service:
        svc.start()
        started.append(svc)
        _wait(svc.link.connected.is_set, 10, "the service to connect")
        return svc

    def make_and_start(protocol: Literal["5", "3.1.1"] = "5", **extra: Any) -> Service:
        return start(make(protocol, **extra))

    yield make_and_start
    for svc in started:
        if svc.running():
            svc.stop()


def _sender(broker: MosquittoBroker) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"dev-{uuid.uuid4().hex[:8]}")
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def _send(client: mqtt.Client, topic: str, body: dict[str, Any]) -> None:
    client.publish(f"{BASE}/{topic}", json.dumps(body), qos=1).wait_for_publish(5)


def _last_state(rec: Recorder, user: str) -> dict[str, Any]:
    states = rec.on(f"{BASE}/{user}/state")
    return states[-1].json() if states else {}


def test_a_message_that_fails_alone_is_refused_and_acked_and_its_neighbours_go_on(
    mosquitto: MosquittoBroker, make_service: Callable[..., Service], mocker: MockerFixture
) -> None:
    real = coach.decide

    def decide(event: Any, *args: Any) -> Any:
        if getattr(getattr(event, "workout", None), "event_id", "") == "poison":
            raise RuntimeError("a bug in the rules")
        return real(event, *args)

    mocker.patch.object(coach, "decide", side_effect=decide)
    rec = Recorder(mosquitto.host, mosquitto.port, [f"{BASE}/#"]).start()
    svc = make_service()
    client = _sender(mosquitto)
    try:
        # Sent without waiting, so that they share a batch when the worker reads them.
        infos = [
            client.publish(f"{BASE}/{u}/workout/completed", json.dumps(workout(e)), qos=1)
            for u, e in (("alex", "good-1"), ("sam", "poison"), ("sam", "good-2"))
        ]
        for info in infos:
            info.wait_for_publish(5)

        def sources(r: Recorder) -> set[str]:
            return {n["source_event_id"] for n in r.all_nudges(BASE)}

        rec.wait_for(lambda r: {"good-1", "good-2"} <= sources(r), 10, "the good ones' nudges")
        rec.wait_for(lambda r: bool(r.on(f"{BASE}/sam/error")), 10, "the refusal")
        error = rec.on(f"{BASE}/sam/error")[0].json()
        assert error["topic"] == f"{BASE}/sam/workout/completed"
        assert "failed on this message" in error["reason"]
        assert "poison" not in sources(rec)
        # Nothing stays in flight once the PUBACKs are stored (the set of nudges handed to
        # paho used to grow for as long as the process ran).
        sent = {m.json()["nudge_id"] for m in rec.on(f"{BASE}/+/nudge")}
        _wait(lambda: len(svc.inflight) == 0, 5, "the PUBACKs to be stored")
        assert not any(svc.inflight.holds(i) for i in sent)
        svc.stop()

        # Acknowledged: a restart with the bug fixed does not see it again. A sentinel sent
        # after it shows the broker has delivered everything it held.
        mocker.stopall()
        svc = make_service()
        _send(client, "alex/workout/completed", workout("sentinel"))
        rec.wait_for(lambda r: "sentinel" in sources(r), 10, "the sentinel's nudge")
        assert "poison" not in sources(rec)
        assert svc.health.events_handled == 1
    finally:
        client.disconnect()
        client.loop_stop()
        rec.stop()


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_identical_commands_count_each_and_a_redelivery_after_the_commit_counts_none(
    mosquitto: MosquittoBroker,
    make_service: Callable[..., Service],
    mocker: MockerFixture,
    protocol: Literal["5", "3.1.1"],
) -> None:
    """Three identical {"grams": 30} are 90 g; the broker's redelivery of all three (the
    process died after the commit, before the acks) adds nothing: same packet ids, DUP set."""
    rec = Recorder(mosquitto.host, mosquitto.port, [f"{BASE}/alex/state"]).start()
    svc = make_service(protocol)
    mocker.patch.object(svc.link, "ack")  # the acks never reach the broker
    client = _sender(mosquitto)
    try:
        infos = [
            client.publish(f"{BASE}/alex/protein/logged", json.dumps({"grams": 30}), qos=1)
            for _ in range(3)
        ]
        for info in infos:
            info.wait_for_publish(5)
        rec.wait_for(
            lambda r: _last_state(r, "alex").get("protein_logged_g") == 90, 10, "90 g counted"
        )
        svc.stop()
        mocker.stopall()
        again = make_service(protocol)
        _wait(lambda: again.health.duplicates == 3, 10, "the three redeliveries")
        assert again.health.events_handled == 0
        _send(client, "alex/protein/logged", {"grams": 30})  # a fourth, new one counts
        rec.wait_for(
            lambda r: _last_state(r, "alex").get("protein_logged_g") == 120, 10, "120 g counted"
        )
    finally:
        client.disconnect()
        client.loop_stop()
        rec.stop()


def test_a_flooding_device_is_refused_beyond_its_rate_and_the_quiet_user_is_served(
    mosquitto: MosquittoBroker, make_service: Callable[..., Service]
) -> None:
    rec = Recorder(mosquitto.host, mosquitto.port, [f"{BASE}/#"]).start()
    make_service(rate_limit={"per_minute": 1, "burst": 20})
    client = _sender(mosquitto)
    try:
        now = datetime.now(UTC)
        infos = [
            client.publish(
                f"{BASE}/alex/protein/logged",
                json.dumps(
                    {"grams": 1, "at": (now - timedelta(seconds=i)).isoformat(), "event_id": f"{i}"}
                ),
                qos=1,
            )
            for i in range(200)
        ]
        _send(client, "sam/workout/completed", workout("quiet"))
        for info in infos:
            info.wait_for_publish(5)
        rec.wait_for(lambda r: bool(r.nudges("sam", BASE)), 10, "the quiet user's nudge")
        rec.wait_for(
            lambda r: _last_state(r, "alex").get("protein_logged_g") == 20, 10, "20 g counted"
        )
        errors = [m.json() for m in rec.on(f"{BASE}/alex/error")]
        assert len(errors) == 1  # one report a minute, not one per refused message
        assert errors[0]["reason"].startswith("too many messages: 1 refused")
        assert not rec.on(f"{BASE}/sam/error")
    finally:
        client.disconnect()
        client.loop_stop()
        rec.stop()


def test_a_database_failure_that_repeats_is_no_message_s_fault(
    mosquitto: MosquittoBroker, make_service: Callable[..., Service], mocker: MockerFixture
) -> None:
    """The batch's connection is lost again and again while the store's test write passes
    (every connection ended at once, and the pool hands out one that is going): the
    message is retried, not refused and dropped as if it failed by itself."""
    rec = Recorder(mosquitto.host, mosquitto.port, [f"{BASE}/#"]).start()
    svc = make_service()
    uow = svc.repo.uow
    real = uow.commit
    # Four: if the event shares its batch, two fail the batch and two the event alone.
    lost = iter([sqlite3.OperationalError("disk I/O error")] * 4)

    def commit() -> None:
        # Only the batch that holds the event: start-up's batches commit as they are.
        failure = next(lost, None) if any("lost-again" in e for _u, e in uow.events) else None
        if failure is not None:
            raise failure
        real()

    mocker.patch.object(svc.repo.uow, "commit", side_effect=commit)
    client = _sender(mosquitto)
    try:
        _send(client, "alex/workout/completed", workout("lost-again"))
        rec.wait_for(
            lambda r: "lost-again" in {n["source_event_id"] for n in r.all_nudges(BASE)},
            15,
            "the nudge of the event whose commit failed twice",
        )
        assert not rec.on(f"{BASE}/alex/error")
        assert next(lost, None) is None  # every failure was met
    finally:
        client.disconnect()
        client.loop_stop()
        rec.stop()
