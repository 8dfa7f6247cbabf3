"""R1, R8, R11 and R12: cooldown, protein, soreness; one table per rule, from RULES.md.

Times are Berlin winter time (UTC+1), Monday 2 March 2026 unless a row says otherwise.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from recovery_coach.core import coach
from recovery_coach.core.rules.context import Context

from tests.support.core_builders import (
    Case,
    check_case,
    profile,
    protein,
    run,
    soreness,
    t,
    workout,
)

EVENING = t("2026-03-02T18:00")
LEG_DAY = workout(EVENING)

# ------------------------------------------------------------------------ R1 cooldown

R1 = [
    # (row, profile overrides, event, now, cooldown starts, cooldown minutes)
    ("leg day, told at once", {}, LEG_DAY, EVENING, EVENING, 5),
    ("a run", {}, workout(EVENING, "cardio", None), EVENING, EVENING, 5),
    ("a sport session", {}, workout(EVENING, "sport", None), EVENING, EVENING, 5),
    (
        "cooldown set to 8 min",
        {"settings": {"cooldown_minutes": 8}},
        LEG_DAY,
        EVENING,
        EVENING,
        8,
    ),
    (
        "the event arrives 10 min late: the timer starts when the user is told (30 min at most)",
        {},
        LEG_DAY,
        EVENING + timedelta(minutes=10),
        EVENING + timedelta(minutes=10),
        5,
    ),
]


@pytest.mark.parametrize(
    ("row", "prof", "event", "now", "starts", "minutes"), R1, ids=[r[0] for r in R1]
)
def test_r1_cooldown_fires(
    row: str, prof: dict[str, Any], event: Any, now: datetime, starts: datetime, minutes: int
) -> None:
    """R1: any workout -> cooldown now; a second nudge says when the timer is done."""
    r = run(profile(**prof), [(event, now)])
    start = r.one("R1", "cooldown_start")
    done = r.one("R1", "cooldown_done")
    ends = starts + timedelta(minutes=minutes)
    assert start.due_at == starts
    assert done.due_at == ends
    assert start.data_dict()["cooldown_ends_at"] == ends
    assert start.data_dict()["cooldown_minutes"] == minutes
    assert f"{minutes} easy minutes" in start.message
    assert ends.strftime("%H:%M") in start.message
    assert "heart rate and blood pressure" in start.message
    assert any("ACSM" in e for e in start.evidence + done.evidence)
    ctx = Context(profile=r.profile, state=r.state, now=starts + timedelta(minutes=1))
    assert coach.cooldown_ends_at(ctx) == ends


@pytest.mark.parametrize(
    ("row", "event", "now"),
    [
        (
            "the event arrives 2 h after the workout: 'now' has passed",
            LEG_DAY,
            t("2026-03-02T20:00"),
        ),
        ("soreness is not a workout", None, EVENING),
        ("protein is not a workout", protein(EVENING, 30), EVENING),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_r1_cooldown_does_not_fire(row: str, event: Any, now: datetime) -> None:
    event = event or soreness(EVENING, 4)
    assert run(profile(), [(event, now)]).of("R1") == []


# ------------------------------------------------------------------------- R8 protein

DUE = EVENING + timedelta(minutes=60)  # default reminder 60 min after the workout
R8 = [
    Case(
        "80 kg x 1.6 g/kg = 128 g, 60 min after the workout",
        (LEG_DAY,),
        True,
        due=DUE,
        data={"protein_target_g": 128, "protein_remaining_g": 128, "protein_g_per_kg": 1.6},
        says=("Aim for about 128 g of protein today: 80 kg x 1.6 g/kg",),
    ),
    Case(
        "62 kg x 1.8 g/kg = 111.6, about 112 g",
        (LEG_DAY,),
        True,
        {"weight_kg": 62.0, "protein_g_per_kg": 1.8},
        data={"protein_target_g": 112},
        says=("62 kg x 1.8 g/kg",),
    ),
    Case(
        "bottom of the range: 70 kg x 1.2 = 84 g",
        (LEG_DAY,),
        True,
        {"weight_kg": 70.0, "protein_g_per_kg": 1.2},
        data={"protein_target_g": 84},
    ),
    Case(
        "top of the range: 70 kg x 2.0 = 140 g",
        (LEG_DAY,),
        True,
        {"weight_kg": 70.0, "protein_g_per_kg": 2.0},
        data={"protein_target_g": 140},
    ),
    Case(
        "no body weight: the range in g/kg, and a request for the weight",
        (LEG_DAY,),
        True,
        {"weight_kg": None},
        data={"protein_target_g": None, "range_g_per_kg": [1.2, 2.0]},
        says=("1.2 to 2.0 g of protein per kg", "weight_kg"),
    ),
    Case(
        "40 g logged before the workout: 88 g to go",
        (protein(t("2026-03-02T13:00"), 40), LEG_DAY),
        True,
        data={"protein_target_g": 128, "protein_remaining_g": 88},
        says=("logged 40 g", "about 88 g to go"),
    ),
    Case(
        "yesterday's protein does not count today",
        (protein(t("2026-03-01T13:00"), 100), LEG_DAY),
        True,
        data={"protein_remaining_g": 128},
    ),
    Case(
        "reminder delay set to 30 min",
        (LEG_DAY,),
        True,
        {"settings": {"protein_reminder_delay_minutes": 30}},
        due=EVENING + timedelta(minutes=30),
    ),
    Case("a mixed session is strength", (workout(EVENING, "mixed", "upper"),), True),
    Case("an upper-body strength day", (workout(EVENING, focus="upper"),), True),
    Case(
        "the next day's strength workout gets its own",
        (workout(t("2026-03-01T18:00"), event_id="sun"), LEG_DAY),
        True,
        due=DUE,
    ),
    Case("a run is not strength", (workout(EVENING, "cardio", None),), False),
    Case(
        "once a day: a second strength workout the same day",
        (workout(t("2026-03-02T08:00"), event_id="am"), LEG_DAY),
        False,
    ),
    Case("protein logged with no workout", (protein(EVENING, 30),), False),
]


@pytest.mark.parametrize("case", R8, ids=str)
def test_r8_protein(case: Case) -> None:
    """R8: strength workout (once a day) -> target in grams, what is left, 60 min later."""
    for n in check_case(case, "R8", "protein"):
        assert any("Thomas et al. 2016" in e for e in n.evidence)
        assert n.data_dict()["range_g_per_kg"] == [1.2, 2.0]


def test_r8_reworded_reminder_keeps_its_id() -> None:
    """A protein log before the reminder is due: the reminder, worded when it goes out, counts
    it (same nudge id, nothing new scheduled)."""
    r = run(profile(), [LEG_DAY])
    first = r.one("R8")
    r.feed(protein(t("2026-03-02T18:30"), 40))
    assert r.last == []
    sent = coach.deliver(first, r.profile, r.state, DUE)
    assert sent is not None
    assert sent.nudge_id == first.nudge_id
    assert sent.source_event_id == LEG_DAY.event_id
    assert sent.data_dict()["protein_remaining_g"] == 88
    assert "logged 40 g so far today: about 88 g to go" in sent.message


@pytest.mark.parametrize("grams", [130, 128, 127.6])  # 127.6 of 128 is "0 g to go": met
def test_r8_target_met_before_the_reminder_cancels_it(grams: float) -> None:
    r = run(profile(), [LEG_DAY])
    first = r.one("R8")
    r.feed(protein(t("2026-03-02T18:30"), grams))
    assert first.nudge_id in r.cancelled
    assert coach.deliver(first, r.profile, r.state, DUE) is None  # never "about 0 g to go"


# ------------------------------------------------------------------------ R11 soreness

R11_SAYS = (
    "Cardio won't speed up or slow down your recovery",
    "protein and sleep matter most",
    "massage works best",
    "foam roller",
    "lacrosse ball",
    "Compression",
)
R11 = [
    Case(
        "sore at 5/10",
        (soreness(t("2026-03-03T08:00"), 5),),
        True,
        due=t("2026-03-03T08:00"),
        says=R11_SAYS,
    ),
    Case("sore at 1/10", (soreness(t("2026-03-03T08:00"), 1),), True),
    Case("severe, 9/10", (soreness(t("2026-03-03T08:00"), 9),), True),
    Case("not sore (0/10)", (soreness(t("2026-03-03T08:00"), 0),), False),
    Case(
        "a second report the same day: told once",
        (soreness(t("2026-03-03T08:00"), 5), soreness(t("2026-03-03T12:00"), 6)),
        False,
    ),
    Case(
        "the next day: told again",
        (soreness(t("2026-03-03T08:00"), 5), soreness(t("2026-03-04T08:00"), 4)),
        True,
    ),
]


@pytest.mark.parametrize("case", R11, ids=str)
def test_r11_soreness(case: Case) -> None:
    """R11: soreness -> cardio neither speeds nor slows recovery; protein, sleep, massage."""
    for n in check_case(case, "R11", "recovery_advice"):
        assert {e.split(" ")[0] for e in n.evidence} >= {"Luke", "Dupuy"}


# ------------------------------------------------------------- R12 too much too fast


def sore_days(*levels: tuple[str, int]) -> tuple[Any, ...]:
    return tuple(soreness(t(when), level) for when, level in levels)


R12 = [
    Case(
        "8/10 on Monday and Tuesday",
        sore_days(("2026-03-02T08:00", 8), ("2026-03-03T08:00", 8)),
        True,
        due=t("2026-03-03T08:00"),
        data={"days_in_a_row": 2},
        says=("too much too fast", "avoid new exercises"),
    ),
    Case(
        "three severe days: told on the third with the count",
        sore_days(("2026-03-02T08:00", 9), ("2026-03-03T08:00", 10), ("2026-03-04T08:00", 8)),
        True,
        data={"days_in_a_row": 3},
    ),
    Case(
        "days in the user's zone: 23:30 Monday and 00:30 Tuesday in Berlin",
        sore_days(("2026-03-02T23:30", 8), ("2026-03-03T00:30", 8)),
        True,
    ),
    Case(
        "moderate on the second day (7/10)",
        sore_days(("2026-03-02T08:00", 8), ("2026-03-03T08:00", 7)),
        False,
    ),
    Case(
        "a day between the severe days",
        sore_days(("2026-03-02T08:00", 8), ("2026-03-04T08:00", 8)),
        False,
    ),
    Case(
        "twice on the same day is one day",
        sore_days(("2026-03-02T08:00", 8), ("2026-03-02T20:00", 9)),
        False,
    ),
    Case(
        "New York: 20:00 Monday and 08:00 Tuesday (both Tuesday in UTC) are two days",
        (
            soreness(t("2026-03-02T20:00", "-05:00"), 8),
            soreness(t("2026-03-03T08:00", "-05:00"), 8),
        ),
        True,
        {"timezone": "America/New_York"},
    ),
    Case("one severe day", sore_days(("2026-03-02T08:00", 10)), False),
    Case(
        "threshold set to 7",
        sore_days(("2026-03-02T08:00", 7), ("2026-03-03T08:00", 7)),
        True,
        {"settings": {"severe_soreness_level": 7}},
    ),
]


@pytest.mark.parametrize("case", R12, ids=str)
def test_r12_too_much_too_fast(case: Case) -> None:
    """R12: severe soreness (8/10 or more) on 2+ days in a row -> too much too fast."""
    for n in check_case(case, "R12", "recovery_advice"):
        assert any("novelty" in e for e in n.evidence)
