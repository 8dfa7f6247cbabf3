"""RULES.md, "What the rules must never do": one test per bullet, over generated weeks.

Hypothesis builds a user (any zone, goal, weight, sleep need, wake times, weekly plan) and a
few days of inbound messages, replays them through `simulate` (the same handler, rules and
placement as the live service), and every nudge that would be published is checked.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from recovery_coach.contract.config import Config
from recovery_coach.core.local_time import night_around

from tests.support.generated_weeks import activity_spans, awake_then, replay, scenario


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
        own = r.config.users["alex"].protein_g_per_kg  # set explicitly by the user
        for per_kg in G_PER_KG.findall(text):
            assert 1.2 <= float(per_kg) <= 2.0 or float(per_kg) == own, text
        if own > 2.0 and n["kind"] == "protein":
            assert "above the usual 1.2 to 2.0 g/kg, as you set" in text
        data = n["data"]
        if "bedtime" in data:
            elapsed = datetime.fromisoformat(data["wake_at"]) - datetime.fromisoformat(
                data["bedtime"]
            )
            assert elapsed >= timedelta(hours=8)
            assert data["sleep_hours"] >= 8
        if n["kind"] == "protein":
            assert 1.2 <= data["protein_g_per_kg"] <= max(2.0, own)
            target = data["protein_target_g"]
            if weight is None:
                assert target is None
            else:  # whole grams: within half a gram of the range
                assert 1.2 * weight - 0.5 <= target <= max(2.0, own) * weight + 0.5
                assert 0 <= data["protein_remaining_g"] <= target


@CHECK
@given(scenario())
def test_never_nudges_inside_the_sleep_window_except_bedtime(
    case: tuple[Config, list[str]],
) -> None:
    """Inside the window only the bedtime nudge at bedtime (a snooze the person asked for, or
    the one "cool down, then sleep" after a late workout), and what follows activity the
    person did there: someone who works out at 06:00 is up."""
    r = replay(*case)
    p = r.config.profiles()["alex"]
    spans = activity_spans(case[1])
    for n in r.nudges:
        due = datetime.fromisoformat(n["due_at"])
        night = night_around(p, due)
        if not night.contains(due):
            continue
        if n["kind"] == "bedtime":
            at_bedtime = due - night.bedtime <= timedelta(minutes=15)
            snoozed = "snoozed_from" in n["data"] and due - night.bedtime <= timedelta(hours=1)
            late = n["title"].startswith("Late workout") and any(
                timedelta(0) <= due - end <= timedelta(minutes=30) for _, end in spans
            )
            assert at_bedtime or snoozed or late, f"bedtime at {n['due_at']}"
            continue
        assert awake_then(p, spans, n), f"{n['kind']} at {n['due_at']} in the sleep window"
