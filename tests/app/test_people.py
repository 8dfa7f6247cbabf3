"""People set up over MQTT (`<base>/<user>/profile`), through the live worker on the
in-memory transport and store (simulate's wiring): created, changed, refused by field,
owned by the YAML, capped, removed; and a failed batch leaves who the people are as before."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytest_mock import MockerFixture
from recovery_coach.contract.config import parse_config
from recovery_coach.contract.transport import Inbound
from recovery_coach.runtime.simulate import Simulation
from recovery_coach.store import jobs
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from tests.support.service_process import user_config

BASE = "recovery_coach"
NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)  # a Wednesday, midday in UTC


def sim(**cfg: Any) -> Simulation:
    s = Simulation(parse_config({"timezone": "UTC", **cfg}))
    s.now = NOW
    return s


MID = iter(range(1, 1_000_000))


def send(s: Simulation, topic: str, body: Any, *, retain: bool = False) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    s.worker.safely([Inbound(next(MID), 1, f"{BASE}/{topic}", raw, retain)])


def pending_jobs(s: Simulation) -> list[str]:
    """The job ids in APScheduler's table."""
    with s.engine.connect() as conn:
        return [r[0] for r in conn.execute(select(jobs.c.id))]


def profile(**over: Any) -> dict[str, Any]:
    return {**user_config(timezone="UTC", name="Robin", weight_kg=70), **over}


def errors(s: Simulation, user: str) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in s.transport.on(f"{BASE}/{user}/error")]


def nudges(s: Simulation, user: str) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in s.transport.on(f"{BASE}/{user}/nudge")]


def leg_day(s: Simulation, user: str, event_id: str) -> None:
    body = {
        "event_id": event_id,
        "ended_at": (s.now - timedelta(minutes=2)).isoformat(),
        "kind": "strength",
        "focus": "legs",
    }
    send(s, f"{user}/workout/completed", body)


def test_a_service_without_users_gains_one_from_a_profile_and_nudges_them() -> None:
    s = sim()
    assert s.profiles == {}
    send(s, "robin/profile", profile(), retain=True)
    assert "robin" in s.profiles
    assert s.profiles["robin"].weight_kg == 70
    assert s.transport.on(f"{BASE}/robin/state")  # announced
    leg_day(s, "robin", "w1")
    kinds = {n["kind"] for n in nudges(s, "robin")}
    assert "cooldown_start" in kinds
    assert errors(s, "robin") == []


def test_a_profile_and_an_event_for_that_person_in_one_batch() -> None:
    """The event after the profile is parsed once the person exists (not refused)."""
    s = sim()
    ended = (s.now - timedelta(minutes=2)).isoformat()
    body = {"event_id": "w1", "ended_at": ended, "kind": "strength", "focus": "legs"}
    s.worker.safely(
        [
            Inbound(1, 1, f"{BASE}/kim/profile", json.dumps(profile()).encode(), True),
            Inbound(2, 1, f"{BASE}/kim/workout/completed", json.dumps(body).encode(), False),
        ]
    )
    assert errors(s, "kim") == []
    assert {n["kind"] for n in nudges(s, "kim")} >= {"cooldown_start"}


def test_the_same_profile_again_changes_nothing() -> None:
    s = sim()
    send(s, "robin/profile", profile(), retain=True)
    states = len(s.transport.on(f"{BASE}/robin/state"))
    send(s, "robin/profile", profile(), retain=True)  # the retained copy at a reconnect
    assert len(s.transport.on(f"{BASE}/robin/state")) == states
    assert errors(s, "robin") == []


def test_a_changed_wake_time_re_decides_tonights_bedtime() -> None:
    """Bedtime follows wake time minus sleep need: a later wake time moves the planned
    bedtime nudge, and the old one is cancelled (its job goes)."""
    s = sim()
    send(s, "robin/profile", profile(wake_time="06:00", sleep_hours=8), retain=True)
    before = set(pending_jobs(s))
    send(s, "robin/profile", profile(wake_time="09:00", sleep_hours=8), retain=True)
    after = set(pending_jobs(s))
    assert before != after
    assert s.profiles["robin"].wake_times[0].hour == 9
    # One day-start job for the person, at the new wake time.
    days = [j for j in after if j.startswith("day:robin:")]
    assert len(days) == 1
    assert days[0].endswith("T0900")


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        ({"weight_kg": 10}, "weight_kg", "must be between 25 and 400"),
        ({"goal": "bulk"}, "goal", ""),
        ({"wake_time": 7.3}, "wake_time", "quotes"),
        ({"timezone": "Mars/Olympus"}, "timezone", "IANA"),
        ({"sleep_hours": 6}, "sleep_hours", "8 is the minimum"),
        ({"favourite_colour": "red"}, "favourite_colour", "spelling"),
    ],
)
def test_an_invalid_profile_is_refused_by_field_and_the_previous_one_stays(
    change: dict[str, Any], field: str, says: str
) -> None:
    s = sim()
    send(s, "robin/profile", profile(), retain=True)
    send(s, "robin/profile", profile(**change), retain=True)
    [err] = errors(s, "robin")
    assert err["topic"] == f"{BASE}/robin/profile"
    fields = {p["field"]: p["reason"] for p in err["problems"]}
    assert field in fields
    assert says in fields[field]
    assert f"{field}: " in err["reason"]
    assert s.profiles["robin"].weight_kg == 70  # the previous profile is in force


def test_every_problem_is_named() -> None:
    s = sim()
    send(s, "robin/profile", profile(weight_kg=1000, protein_g_per_kg=9), retain=True)
    [err] = errors(s, "robin")
    assert {p["field"] for p in err["problems"]} == {"weight_kg", "protein_g_per_kg"}
    assert "robin" not in s.profiles


@pytest.mark.parametrize("body", [b"{", b"[1, 2]", b'"robin"', b"\xff\xfe"])
def test_a_profile_that_is_not_a_json_object_is_refused(body: bytes) -> None:
    s = sim()
    send(s, "robin/profile", body, retain=True)
    [err] = errors(s, "robin")
    assert "JSON" in err["reason"]
    assert "robin" not in s.profiles


def test_a_user_of_the_yaml_belongs_to_the_yaml() -> None:
    s = sim(users={"alex": user_config(timezone="UTC", weight_kg=80)})
    send(s, "alex/profile", profile(weight_kg=60), retain=True)
    [err] = errors(s, "alex")
    assert "YAML" in err["reason"]
    assert s.profiles["alex"].weight_kg == 80


def test_max_users_caps_the_profiles_accepted() -> None:
    s = sim(max_users=2)
    for user in ("a1", "a2", "a3"):
        send(s, f"{user}/profile", profile(), retain=True)
    assert set(s.profiles) == {"a1", "a2"}
    [err] = errors(s, "a3")
    assert "max_users" in err["reason"]
    send(s, "a1/profile", profile(weight_kg=90), retain=True)  # a known one may change
    assert s.profiles["a1"].weight_kg == 90


def test_an_empty_profile_removes_the_person() -> None:
    s = sim()
    send(s, "robin/profile", profile(), retain=True)
    leg_day(s, "robin", "w1")
    assert any(j for j in pending_jobs(s) if "robin" in j)
    send(s, "robin/profile", b"", retain=True)
    assert "robin" not in s.profiles
    assert not [j for j in pending_jobs(s) if "robin" in j]  # jobs and day start gone
    cleared = s.transport.on(f"{BASE}/robin/state")[-1]
    assert cleared.payload == b""
    assert cleared.retain
    counts = s.repo.queries.counts()
    assert counts["nudges_pending"] == 0
    # What the store held about the person's health is gone with them.
    assert s.repo.queries.profiles() == {}
    leg_day(s, "robin", "w2")
    assert "not a configured user" in errors(s, "robin")[-1]["reason"]


def test_clearing_a_profile_never_set_is_nothing() -> None:
    s = sim()
    send(s, "ghost/profile", b"", retain=True)
    assert errors(s, "ghost") == []
    assert s.profiles == {}


def test_a_failed_batch_leaves_who_the_people_are_as_before(mocker: MockerFixture) -> None:
    """The commit fails and the store refuses a test write: the batch is held; its retry
    (after the store is back) sets the person up once, from the same message."""
    s = sim()
    real = s.repo.uow.commit
    seen_during_failure: list[bool] = []

    def commit() -> None:
        if not seen_during_failure:
            seen_during_failure.append(True)
            raise OperationalError("INSERT", {}, Exception("database or disk is full"))
        real()

    mocker.patch.object(s.repo.uow, "commit", side_effect=commit)
    probe = mocker.patch.object(s.repo, "writable", side_effect=[False, True])
    send(s, "robin/profile", profile(), retain=True)
    assert probe.call_count >= 1
    assert "robin" in s.profiles
    assert s.repo.queries.profiles().keys() == {"robin"}
    assert "robin" in s.worker.people.texts


def test_a_profile_on_a_topic_with_a_bad_user_id_is_refused_without_an_error_topic() -> None:
    s = sim()
    send(s, "Robin!/profile", profile(), retain=True)
    assert s.profiles == {}
    assert s.transport.on(f"{BASE}/+/error") == []
    assert any("not a valid user id" in r["reason"] for r in s.refused)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.one_of(
        st.binary(max_size=200),
        st.dictionaries(
            st.sampled_from(
                ["name", "timezone", "weight_kg", "goal", "wake_time", "sleep_hours", "x"]
            ),
            st.one_of(st.none(), st.integers(-10, 1000), st.text(max_size=12), st.floats()),
            max_size=5,
        ).map(lambda d: json.dumps(d).encode()),
    )
)
def test_any_profile_body_is_a_person_or_a_refusal_never_a_crash(body: bytes) -> None:
    s = sim()
    send(s, "fuzz/profile", profile(), retain=True)
    send(s, "fuzz/profile", body, retain=True)
    errs = errors(s, "fuzz")
    if "fuzz" in s.profiles:
        assert len(errs) <= 1
    else:
        assert body.strip() == b""  # only an empty profile removes
    assert s.worker.health.store_error is None
