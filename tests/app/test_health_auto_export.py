"""Apple Health workouts from Health Auto Export, on `<base>/<user>/workout/
health_auto_export`: the app's documented export (workouts version 2, help.healthyapps.dev/
en/health-auto-export/export-format/workouts) turned into workout events, through the live
worker (simulate's wiring)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from recovery_coach.contract import health_auto_export as hae
from recovery_coach.contract.config import parse_config
from recovery_coach.contract.transport import Inbound
from recovery_coach.runtime.simulate import Simulation

from tests.support.service_process import user_config

BASE = "recovery_coach"
NOW = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)  # a Monday
TOPIC = f"{BASE}/robin/workout/health_auto_export"


def app_time(t: datetime) -> str:
    """The app's own format: yyyy-MM-dd HH:mm:ss Z."""
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S %z")


def workout(name: str, ended_ago: timedelta, minutes: float = 45, **extra: Any) -> dict[str, Any]:
    end = NOW - ended_ago
    start = end - timedelta(minutes=minutes)
    return {
        "id": f"{name.lower().replace(' ', '-')}-{int(ended_ago.total_seconds())}",
        "name": name,
        "start": app_time(start),
        "end": app_time(end),
        "duration": minutes * 60,
        "location": "Indoor",
        "isIndoor": True,
        "activeEnergyBurned": {"qty": 350, "units": "kcal"},
        **extra,
    }


def export(*workouts: dict[str, Any]) -> bytes:
    return json.dumps({"data": {"metrics": [], "workouts": list(workouts)}}).encode()


def sim(**user: Any) -> Simulation:
    cfg = {"timezone": "UTC", "users": {"robin": user_config(timezone="UTC", **user)}}
    s = Simulation(parse_config(cfg))
    s.now = NOW
    return s


MID = iter(range(1, 1_000_000))


def send(s: Simulation, body: bytes) -> None:
    s.worker.safely([Inbound(next(MID), 1, TOPIC, body, False)])


def nudges(s: Simulation) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in s.transport.on(f"{BASE}/robin/nudge")]


def errors(s: Simulation) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in s.transport.on(f"{BASE}/robin/error")]


def test_the_mapping_of_an_export() -> None:
    profile = parse_config(
        {
            "users": {
                "robin": user_config(
                    timezone="UTC", max_heart_rate=190, weekly_plan={"mon": "legs"}
                )
            }
        }
    ).profiles()["robin"]
    body = export(
        workout(
            "Traditional Strength Training",
            timedelta(minutes=5),
            intensity={"qty": 5.2, "units": "MET"},
        ),
        workout(
            "Outdoor Run", timedelta(hours=3), 30, heartRate={"avg": {"qty": 125, "units": "bpm"}}
        ),
        workout("Walking", timedelta(hours=1)),
        workout("Yoga", timedelta(hours=40)),
        workout("Underwater Basket Weaving", timedelta(hours=2)),
    )
    events, skipped = hae.workouts(body, profile, NOW)
    assert events == [
        {
            "event_id": "hae:traditional-strength-training-300",
            "ended_at": (NOW - timedelta(minutes=5)).isoformat(),
            "kind": "strength",
            "focus": "legs",  # Monday's plan
            "duration_min": 45.0,
            "rpe": 5.0,  # 5.2 MET: moderate
        },
        {
            "event_id": "hae:outdoor-run-10800",
            "ended_at": (NOW - timedelta(hours=3)).isoformat(),
            "kind": "cardio",
            "duration_min": 30.0,
            "rpe": 4.0,
            "zone": 2,  # 125 of 190 bpm: 66%
        },
    ]
    assert {s.workout_id: s.why for s in skipped} == {
        "walking-3600": "workout type 'Walking' is not one we map",
        "yoga-144000": "it ended more than 36 hours ago",
        "underwater-basket-weaving-7200": (
            "workout type 'Underwater Basket Weaving' is not one we map"
        ),
    }


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("Functional Strength Training", "strength"),
        ("Indoor Cycle", "cardio"),
        ("Rowing", "cardio"),
        ("Pool Swim", "cardio"),
        ("Elliptical", "cardio"),
        ("High Intensity Interval Training", "class"),
        ("Cross Training", "class"),
        ("Soccer", "sport"),
        ("Tennis", "sport"),
    ],
)
def test_apple_workout_types(name: str, kind: str) -> None:
    profile = parse_config({"users": {"robin": user_config()}}).profiles()["robin"]
    [event], _ = hae.workouts(export(workout(name, timedelta(minutes=1))), profile, NOW)
    assert event["kind"] == kind


def test_without_a_max_heart_rate_the_zone_is_not_guessed() -> None:
    profile = parse_config({"users": {"robin": user_config()}}).profiles()["robin"]
    w = workout("Running", timedelta(minutes=1), heartRate={"avg": {"qty": 150}})
    [event], _ = hae.workouts(export(w), profile, NOW)
    assert "zone" not in event
    assert "rpe" not in event


def test_an_export_gives_the_person_their_nudges_once() -> None:
    s = sim(weekly_plan={"mon": "legs"})
    body = export(workout("Traditional Strength Training", timedelta(minutes=2)))
    send(s, body)
    first = nudges(s)
    assert "cooldown_start" in {n["kind"] for n in first}
    assert {n["source_event_id"] for n in first} == {"hae:traditional-strength-training-120"}
    send(s, body)  # the app exports again (its automation runs on a schedule)
    assert nudges(s) == first
    assert errors(s) == []


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"not json", "not Health Auto Export JSON"),
        (b'{"data": {"metrics": []}}', 'no "data"'),
        (b"[]", "not a Health Auto Export workouts export"),
    ],
)
def test_what_is_not_an_export_is_refused_on_the_error_topic(body: bytes, says: str) -> None:
    s = sim()
    send(s, body)
    [err] = errors(s)
    assert err["topic"] == TOPIC
    assert says in err["reason"]


def test_an_export_too_large_is_refused_with_the_fix() -> None:
    s = sim()
    send(s, b" " * (hae.MAX_BYTES + 1))
    [err] = errors(s)
    assert "heart rate and route data" in err["reason"]


def test_an_unknown_users_export_is_refused_as_any_message_is() -> None:
    s = sim()
    s.worker.safely([Inbound(1, 1, f"{BASE}/nobody/workout/health_auto_export", export(), False)])
    [err] = [json.loads(m.payload) for m in s.transport.on(f"{BASE}/nobody/error")]
    assert "not a configured user" in err["reason"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=300),
        st.lists(
            st.dictionaries(
                st.sampled_from(
                    ["id", "name", "start", "end", "duration", "intensity", "heartRate"]
                ),
                st.one_of(st.none(), st.integers(), st.text(max_size=30), st.floats()),
                max_size=7,
            ),
            max_size=4,
        ).map(lambda ws: json.dumps({"data": {"workouts": ws}}).encode()),
    )
)
def test_any_export_is_events_or_a_refusal_never_a_crash(body: bytes) -> None:
    s = sim()
    send(s, body)
    assert s.worker.health.store_error is None
    assert len(errors(s)) <= 5
