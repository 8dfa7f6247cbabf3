"""Faults against real processes: kill -9 the service, stop the broker, change the config.

A scheduled nudge here is the R8 protein reminder: due `protein_reminder_delay_minutes`
(60) after the workout ended, so a workout that ended 59m52s ago has its reminder due in
8 s of real time, with no clock mocked.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

from tests.support.mosquitto import BrokerFactory
from tests.support.service_process import Recorder, ServiceProcess, publish, user_config, workout

BASE = "rc_faults"


def due_in(seconds: float) -> timedelta:
    """`ago` for a workout whose protein reminder falls due in `seconds`."""
    return timedelta(minutes=60) - timedelta(seconds=seconds)


def protein_nudges(rec: Recorder, user: str, event_id: str) -> list[dict[str, object]]:
    return [
        n for n in rec.nudges(user, BASE) if n["rule"] == "R8" and n["source_event_id"] == event_id
    ]


def report(
    case: str, rec: Recorder, event: dict[str, str], base: str, since: float | None = None
) -> None:
    """Print how late the reminder came (shown with pytest -s; figures for the README)."""
    (msg,) = [
        m
        for m in rec.on(f"{base}/alex/nudge")
        if m.json()["rule"] == "R8" and m.json()["source_event_id"] == event["event_id"]
    ]
    due = datetime.fromisoformat(msg.json()["due_at"]).timestamp()
    extra = f", {msg.at - since:.2f} s after the broker returned" if since else ""
    print(f"\n{case}: reminder received once, {msg.at - due:+.2f} s after its due time{extra}")


def handled(svc: ServiceProcess, event_id: str) -> bool:
    if not svc.db.exists():
        return False
    with sqlite3.connect(svc.db) as db:
        row = db.execute(
            "select 1 from rc_handled_events where event_id = ?", (f"workout:{event_id}",)
        ).fetchone()
    return row is not None


def wait_handled(svc: ServiceProcess, event_id: str, timeout: float = 10) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if handled(svc, event_id):
            return
        time.sleep(0.02)
    raise AssertionError(f"event {event_id} never stored:\n{svc.log()[-3000:]}")


def test_kill_9_after_an_event_the_scheduled_nudge_still_fires_once(
    tmp_path: Path, mosquitto_factory: BrokerFactory
) -> None:
    broker = mosquitto_factory()
    rec = Recorder(broker.host, broker.port, [f"{BASE}/#"]).start()
    svc = ServiceProcess(tmp_path, port=broker.port, base=BASE, users={"alex": user_config()})
    try:
        svc.start().wait_connected()
        event = workout(ago=due_in(6))
        publish(broker.port, f"{BASE}/alex/workout/completed", event)
        wait_handled(svc, event["event_id"])
        svc.kill()
        assert protein_nudges(rec, "alex", event["event_id"]) == []
        svc.start().wait_connected()
        rec.wait_for(
            lambda r: len(protein_nudges(r, "alex", event["event_id"])) >= 1, 20, "the reminder"
        )
        time.sleep(2)
        assert len(protein_nudges(rec, "alex", event["event_id"])) == 1
        report("kill -9 after the event", rec, event, BASE)
    finally:
        svc.close()
        rec.stop()


def test_nudge_due_while_the_service_is_down_is_sent_late_once(
    tmp_path: Path, mosquitto_factory: BrokerFactory
) -> None:
    broker = mosquitto_factory()
    rec = Recorder(broker.host, broker.port, [f"{BASE}/#"]).start()
    svc = ServiceProcess(tmp_path, port=broker.port, base=BASE, users={"alex": user_config()})
    try:
        svc.start().wait_connected()
        event = workout(ago=due_in(2))
        publish(broker.port, f"{BASE}/alex/workout/completed", event)
        wait_handled(svc, event["event_id"])
        svc.kill()
        time.sleep(4)  # the reminder falls due while nothing runs
        svc.start().wait_connected()
        rec.wait_for(
            lambda r: len(protein_nudges(r, "alex", event["event_id"])) >= 1,
            15,
            "the late reminder",
        )
        time.sleep(1.5)
        assert len(protein_nudges(rec, "alex", event["event_id"])) == 1
        report("due while the service was down", rec, event, BASE)
    finally:
        svc.close()
        rec.stop()


def test_broker_down_when_a_nudge_falls_due_it_arrives_once_when_back(
    tmp_path: Path, mosquitto_factory: BrokerFactory
) -> None:
    broker = mosquitto_factory()
    rec = Recorder(broker.host, broker.port, [f"{BASE}/#"]).start()
    svc = ServiceProcess(tmp_path, port=broker.port, base=BASE, users={"alex": user_config()})
    try:
        svc.start().wait_connected()
        event = workout(ago=due_in(3))
        publish(broker.port, f"{BASE}/alex/workout/completed", event)
        wait_handled(svc, event["event_id"])
        broker.stop()
        svc.wait_log("disconnected from the broker")
        svc.wait_log("waits for the connection", timeout=15)
        assert protein_nudges(rec, "alex", event["event_id"]) == []
        broker.start()
        back = time.time()
        rec.wait_for(
            lambda r: len(protein_nudges(r, "alex", event["event_id"])) >= 1, 30, "the reminder"
        )
        time.sleep(2)
        assert len(protein_nudges(rec, "alex", event["event_id"])) == 1
        report("broker down at the due time", rec, event, BASE, since=back)
    finally:
        svc.close()
        rec.stop()


def test_events_sent_while_the_service_is_down_are_handled_when_it_returns(
    tmp_path: Path, mosquitto_factory: BrokerFactory
) -> None:
    broker = mosquitto_factory()
    rec = Recorder(broker.host, broker.port, [f"{BASE}/#"]).start()
    svc = ServiceProcess(tmp_path, port=broker.port, base=BASE, users={"alex": user_config()})
    try:
        svc.start().wait_connected()
        svc.stop()
        event = workout(ago=timedelta(minutes=2))
        publish(broker.port, f"{BASE}/alex/workout/completed", event)
        svc.start().wait_connected()
        rec.wait_for(
            lambda r: any(
                n["source_event_id"] == event["event_id"] for n in r.nudges("alex", BASE)
            ),
            10,
            "nudges for the event sent while down",
        )
    finally:
        svc.close()
        rec.stop()


def test_kill_9_in_a_burst_loses_no_event_and_adds_no_nudge_id(
    tmp_path: Path, mosquitto_factory: BrokerFactory
) -> None:
    broker = mosquitto_factory()
    rec = Recorder(broker.host, broker.port, [f"{BASE}/+/nudge"]).start()
    # One workout per user: workouts of one user that end together are one session.
    users = {f"u{i}": user_config() for i in range(400)}
    svc = ServiceProcess(tmp_path, port=broker.port, base=BASE, users=users)
    try:
        svc.start().wait_connected()
        events = [(f"u{i}", workout(ago=timedelta(minutes=1))) for i in range(400)]
        client = broker.paho_client("burst", mqtt5=False)
        client.connect(broker.host, broker.port)
        client.loop_start()
        infos = [
            client.publish(f"{BASE}/{u}/workout/completed", json.dumps(e), qos=1) for u, e in events
        ]
        for info in infos:
            info.wait_for_publish(10)
        client.disconnect()
        client.loop_stop()
        time.sleep(0.15)
        svc.kill()  # in the middle of the burst
        svc.start().wait_connected()

        def all_in(r: Recorder) -> bool:
            seen = {(n["user"], n["source_event_id"]) for n in r.all_nudges(BASE)}
            return all((u, e["event_id"]) in seen for u, e in events)

        rec.wait_for(all_in, 60, "nudges for all 400 events")
        time.sleep(1)
        nudges = rec.all_nudges(BASE)
        by_event = Counter((n["user"], n["source_event_id"], n["rule"], n["kind"]) for n in nudges)
        ids = {n["nudge_id"] for n in nudges}
        # Exactly one nudge id per (event, rule, kind): nothing decided twice.
        assert len(ids) == len(by_event)
        # Immediate cooldown nudges: one per event, whatever was redelivered.
        cooldowns = {n["source_event_id"] for n in nudges if n["kind"] == "cooldown_start"}
        assert cooldowns == {e["event_id"] for _, e in events}
        wire_duplicates = len(nudges) - len(ids)
        print(
            f"\nkill -9 mid-burst: {len(nudges)} nudges received, {wire_duplicates} wire duplicates"
        )
    finally:
        svc.close()
        rec.stop()


def test_restart_with_changed_config_moves_jobs_with_the_users(
    tmp_path: Path, mosquitto_factory: BrokerFactory
) -> None:
    broker = mosquitto_factory()
    rec = Recorder(broker.host, broker.port, [f"{BASE}/#", "homeassistant/device/+/config"]).start()
    svc = ServiceProcess(
        tmp_path, port=broker.port, base=BASE, users={"alex": user_config(), "sam": user_config()}
    )
    try:
        svc.start().wait_connected()
        event = workout(ago=due_in(8))
        publish(broker.port, f"{BASE}/sam/workout/completed", event)
        wait_handled(svc, event["event_id"])
        svc.stop()
        with sqlite3.connect(svc.db) as db:
            assert (
                db.execute(
                    "select count(*) from apscheduler_jobs where id like 'day:sam:%'"
                ).fetchone()[0]
                == 1
            )

        svc.write_config({"alex": user_config(), "kim": user_config()})
        svc.start().wait_connected()
        rec.wait_for(
            lambda r: any(
                m.payload == b"" for m in r.on("homeassistant/device/recovery_coach_sam/config")
            ),
            10,
            "sam's discovery removed",
        )
        rec.wait_for(
            lambda r: bool(r.on("homeassistant/device/recovery_coach_kim/config")),
            10,
            "kim announced",
        )
        with sqlite3.connect(svc.db) as db:
            sam_jobs = db.execute(
                "select count(*) from apscheduler_jobs a join rc_nudges n on a.id = n.nudge_id "
                "where n.user_id = 'sam'"
            ).fetchone()[0]
            sam_pending = db.execute(
                "select count(*) from rc_nudges where user_id = 'sam' and status = 'pending'"
            ).fetchone()[0]
            sam_days = db.execute(
                "select count(*) from apscheduler_jobs where id like 'day:sam:%'"
            ).fetchone()[0]
        assert (sam_jobs, sam_pending, sam_days) == (0, 0, 0)
        deadline = time.time() + 10
        while time.time() < deadline:
            with sqlite3.connect(svc.db) as db:
                kim_days = db.execute(
                    "select count(*) from apscheduler_jobs where id like 'day:kim:%'"
                ).fetchone()[0]
            if kim_days:
                break
            time.sleep(0.1)
        assert kim_days == 1
        time.sleep(9)  # past the time sam's reminder was due
        assert protein_nudges(rec, "sam", event["event_id"]) == []
    finally:
        svc.close()
        rec.stop()


def test_sigterm_during_a_broker_outage_still_stops_within_seconds(
    tmp_path: Path, mosquitto_factory: BrokerFactory
) -> None:
    broker = mosquitto_factory()
    svc = ServiceProcess(tmp_path, port=broker.port, base=BASE, users={"alex": user_config()})
    try:
        svc.start().wait_connected()
        broker.stop()
        svc.wait_log("disconnected from the broker")
        # The first failed attempt of an outage is said (it used to be skipped: the back-off
        # had doubled before the first retry), and the stop comes in the reconnect attempts.
        svc.wait_log("cannot connect to", 5)
        assert svc.stop() < 5.0
        assert svc.proc is not None
        assert svc.proc.returncode == 0
    finally:
        svc.close()


def test_sigterm_in_a_burst_sends_no_nudge_twice_after_the_restart(
    tmp_path: Path, mosquitto_factory: BrokerFactory
) -> None:
    """A clean stop commits the PUBACKs of what it published before it exits (before, a
    stop between a publish and its PUBACK's commit re-sent that nudge after the restart)."""
    broker = mosquitto_factory()
    rec = Recorder(broker.host, broker.port, [f"{BASE}/+/nudge"]).start()
    users = {f"u{i}": user_config() for i in range(300)}
    svc = ServiceProcess(tmp_path, port=broker.port, base=BASE, users=users)
    try:
        svc.start().wait_connected()
        events = [(f"u{i}", workout(ago=timedelta(minutes=1))) for i in range(300)]
        client = broker.paho_client("burst", mqtt5=False)
        client.connect(broker.host, broker.port)
        client.loop_start()
        infos = [
            client.publish(f"{BASE}/{u}/workout/completed", json.dumps(e), qos=1) for u, e in events
        ]
        rec.wait_for(lambda r: len(r.on(f"{BASE}/+/nudge")) >= 30, 20, "the first nudges")
        svc.stop()  # in the middle of the burst
        for info in infos:
            info.wait_for_publish(10)
        client.disconnect()
        client.loop_stop()
        svc.start().wait_connected()

        def cooldowns(r: Recorder) -> list[str]:
            return [n["nudge_id"] for n in r.all_nudges(BASE, "cooldown_start")]

        rec.wait_for(lambda r: len(set(cooldowns(r))) == 300, 60, "all 300 cooldowns")
        svc.wait_log("stopped", 1)
        time.sleep(1)  # a re-sent nudge would arrive right after the connect
        ids = [m.json()["nudge_id"] for m in rec.on(f"{BASE}/+/nudge")]
        assert len(ids) == len(set(ids))
    finally:
        svc.close()
        rec.stop()
