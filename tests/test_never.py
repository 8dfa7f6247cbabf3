"""RULES.md, "What the rules must never do": one test per bullet, over generated weeks.

Hypothesis builds a user (any zone, goal, weight, sleep need, wake times, weekly plan) and a
few days of inbound messages, replays them through `simulate` (the same handler, rules and
placement as the live service), and every nudge that would be published is checked.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from recovery_coach.config import Config, parse_config
from recovery_coach.local_time import in_sleep_window
from recovery_coach.simulate import simulate

ZONES = ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "UTC"]
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
clock = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(4, 11), st.sampled_from([0, 15, 30]))
user_config = st.fixed_dictionaries(
    {
        "timezone": st.sampled_from(ZONES),
        "goal": st.sampled_from(
            ["hypertrophy", "strength", "endurance", "power", "hybrid", "general"]
        ),
        "running_experience": st.sampled_from(["beginner", "intermediate", "advanced"]),
        "sleep_hours": st.sampled_from([8, 8.5, 9, 10]),
        "wake_time": clock | st.fixed_dictionaries({d: clock for d in WEEKDAYS}),
        "protein_g_per_kg": st.sampled_from([1.2, 1.45, 1.6, 2.0]),
        "weekly_plan": st.fixed_dictionaries(
            {},
            optional={
                d: st.sampled_from(["legs", "upper", "full", "cardio", "rest"]) for d in WEEKDAYS
            },
        ),
    },
    optional={"weight_kg": st.floats(25, 400).map(lambda w: round(w, 1))},
)
# March and late October: both DST changes in Europe and the US fall in these weeks
starts = st.sampled_from(
    [
        datetime(2026, 3, 6, tzinfo=UTC),
        datetime(2026, 3, 27, tzinfo=UTC),
        datetime(2026, 10, 23, tzinfo=UTC),
    ]
)
rpe = st.none() | st.integers(0, 10)


@st.composite
def message(draw: st.DrawFn, start: datetime, n: int) -> dict[str, Any]:
    at = start + timedelta(minutes=draw(st.integers(0, 4 * 24 * 60)))
    late = timedelta(minutes=draw(st.sampled_from([0, 0, 0, 20, 90])))
    iso = at.isoformat()
    topic = draw(
        st.sampled_from(
            ["workout", "workout", "workout", "plan", "protein", "soreness", "gym", "ack", "snooze"]
        )
    )
    if topic == "workout":
        planned = at + timedelta(minutes=draw(st.integers(0, 30 * 60)))
        payload: dict[str, Any] = {
            "event_id": f"w{n}",
            "ended_at": iso,
            "kind": draw(st.sampled_from(["strength", "cardio", "mixed", "class", "sport"])),
            "focus": draw(st.sampled_from(["legs", "lower", "upper", "full", "core", None])),
            "rpe": draw(rpe),
            "duration_min": draw(st.sampled_from([20, 45, 60, 90])),
        }
        if draw(st.booleans()):
            payload["next_cardio"] = {
                "planned_at": planned.isoformat(),
                "kind": "run",
                "rpe": draw(rpe),
                "key_session": draw(st.booleans()),
            }
        return {
            "topic": "workout/completed",
            "payload": payload,
            "received_at": (at + late).isoformat(),
        }
    if topic == "plan":
        planned = at + timedelta(minutes=draw(st.integers(0, 30 * 60)))
        payload = {
            "planned_at": planned.isoformat(),
            "kind": "run",
            "rpe": draw(rpe),
            "key_session": draw(st.booleans()),
        }
        return {"topic": "cardio/planned", "payload": payload, "received_at": iso}
    if topic == "protein":
        return {
            "topic": "protein/logged",
            "payload": {"grams": draw(st.integers(1, 500)), "at": iso},
        }
    if topic == "soreness":
        return {"topic": "soreness", "payload": {"level": draw(st.integers(0, 10)), "at": iso}}
    if topic == "gym":
        out = at + timedelta(minutes=draw(st.integers(20, 120)))
        return {"topic": "gym/checkin+out", "payload": {"in": iso, "out": out.isoformat()}}
    minutes = draw(st.integers(1, 600))
    rest = "nudge/last/ack" if topic == "ack" else "nudge/last/snooze"
    return {"topic": rest, "payload": {"minutes": minutes}, "received_at": iso}


@st.composite
def scenario(draw: st.DrawFn) -> tuple[Config, list[str]]:
    user = draw(user_config)
    cfg = parse_config({"users": {"alex": user}})
    start = draw(starts)
    items = draw(st.lists(st.integers(), min_size=1, max_size=14).map(len))
    lines: list[str] = []
    for n in range(items):
        m = draw(message(start, n))
        if m["topic"] == "gym/checkin+out":
            p = m["payload"]
            for kind, at in (("checkin", p["in"]), ("checkout", p["out"])):
                body = {"at": at, "event_id": f"gym{n}-{kind}"}
                lines.append(
                    json.dumps({"topic": f"recovery_coach/alex/gym/{kind}", "payload": body})
                )
            continue
        m["topic"] = f"recovery_coach/alex/{m['topic']}"
        lines.append(json.dumps(m))
    return cfg, lines


@dataclass
class Replayed:
    config: Config
    nudges: list[dict[str, Any]]


def replay(cfg: Config, lines: list[str]) -> Replayed:
    out, err = io.StringIO(), io.StringIO()
    simulate(cfg, lines, 36, out, err)
    return Replayed(cfg, [json.loads(line) for line in out.getvalue().splitlines()])


def text_of(n: dict[str, Any]) -> str:
    return f"{n['title']}. {n['message']} {n['speech']}"


CHECK = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------ the four bullets

SCARY = re.compile(r"\b(kill\w*|dangerous|danger|ruin\w*|destroy\w*|wreck\w*|sabotag\w*)\b", re.I)


@CHECK
@given(scenario())
def test_never_says_cardio_after_leg_day_kills_gains_or_is_dangerous(
    case: tuple[Config, list[str]],
) -> None:
    for n in replay(*case).nudges:
        assert not SCARY.search(text_of(n)), text_of(n)


CARDIO = r"(cardio|running|a run|your run|spin\w*|jog\w*|walk\w*|cycling)"
BENEFIT = r"(reduc\w*|eas(e|es|ing)|reliev\w*|speed\w*|faster|help\w*|aid\w*|boost\w*|improv\w*)"
HARM = r"(sore\w*|recover\w*|fatigue)"
NEGATION = re.compile(r"\b(not|no|won't|doesn't|does not|neither|nor)\b", re.I)
CLAIM = re.compile(rf"\b{CARDIO}\b[^.]*\b{BENEFIT}\b[^.]*\b{HARM}\b", re.I)


def claims_cardio_helps_recovery(text: str) -> list[str]:
    return [
        s for s in re.split(r"(?<=[.!?:])\s+", text) if CLAIM.search(s) and not NEGATION.search(s)
    ]


def test_the_claim_detector_catches_claims() -> None:
    """The detector below is only worth its silence if it would catch the claim."""
    assert claims_cardio_helps_recovery("An easy spin speeds up your recovery.")
    assert claims_cardio_helps_recovery("Cardio helps reduce soreness.")
    assert not claims_cardio_helps_recovery("Cardio won't speed up or slow down your recovery.")


@CHECK
@given(scenario())
def test_never_claims_cardio_reduces_soreness_or_speeds_recovery(
    case: tuple[Config, list[str]],
) -> None:
    for n in replay(*case).nudges:
        assert claims_cardio_helps_recovery(text_of(n)) == [], text_of(n)
        if n["rule"] == "R1":  # the cooldown's own purpose is heart rate and blood pressure
            assert "heart rate" in n["message"] or "Nice work" in n["speech"]
            assert not re.search(HARM, n["message"], re.I)


SLEEP_HOURS = re.compile(r"(\d+(?:\.\d+)?) hours of sleep")
G_PER_KG = re.compile(r"(\d+(?:\.\d+)?) (?:g/kg|g of protein per kg)")


@CHECK
@given(scenario())
def test_never_advises_under_8_hours_of_sleep_or_protein_outside_1_2_to_2_0(
    case: tuple[Config, list[str]],
) -> None:
    r = replay(*case)
    weight = r.config.users["alex"].weight_kg
    for n in r.nudges:
        text = text_of(n)
        for hours in SLEEP_HOURS.findall(text):
            assert float(hours) >= 8, text
        for per_kg in G_PER_KG.findall(text):
            assert 1.2 <= float(per_kg) <= 2.0, text
        data = n["data"]
        if "bedtime" in data:
            elapsed = datetime.fromisoformat(data["wake_at"]) - datetime.fromisoformat(
                data["bedtime"]
            )
            assert elapsed >= timedelta(hours=8)
            assert data["sleep_hours"] >= 8
        if n["kind"] == "protein":
            assert 1.2 <= data["protein_g_per_kg"] <= 2.0
            target = data["protein_target_g"]
            if weight is None:
                assert target is None
            else:  # whole grams: within half a gram of the range
                assert 1.2 * weight - 0.5 <= target <= 2.0 * weight + 0.5
                assert 0 <= data["protein_remaining_g"] <= target


@CHECK
@given(scenario())
def test_never_nudges_inside_the_sleep_window_except_bedtime(
    case: tuple[Config, list[str]],
) -> None:
    r = replay(*case)
    p = r.config.profiles()["alex"]
    for n in r.nudges:
        if n["kind"] != "bedtime":
            due = datetime.fromisoformat(n["due_at"])
            assert not in_sleep_window(p, due), f"{n['kind']} at {n['due_at']}"
