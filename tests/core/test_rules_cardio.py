"""R2-R7 and R13: cardio around a leg day, one table per rule, read against RULES.md.

The leg day ends at 12:00 on Monday 2 March 2026 in Berlin (UTC+1) unless a row says
otherwise, and the event arrives at once (now = ended_at).
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

import pytest
from recovery_coach.core.models import WorkoutCompleted

from tests.support.core_builders import Case, cardio, check_case, planned, t, workout

NOON = t("2026-03-02T12:00")
LEG_DAY = workout(NOON)


def legs(**kw: Any) -> WorkoutCompleted:
    return workout(NOON, **kw)


def after(minutes: float) -> datetime:
    return NOON + timedelta(minutes=minutes)


# --------------------------------------------------------------------- R2 cardio cap

R2_SAYS = ("6 or less out of 10", "talk but not sing", "HIIT", "injury")
R2 = [
    Case("leg day: strength, focus legs", (LEG_DAY,), True, says=R2_SAYS),
    Case("leg day: strength, focus lower", (workout(NOON, focus="lower"),), True),
    Case("leg day: strength, focus full body", (workout(NOON, focus="full"),), True),
    Case("leg day: a mixed session on legs", (workout(NOON, "mixed", "legs"),), True),
    *[
        Case(
            f"leg day: muscle group {m}",
            (workout(NOON, focus="core", muscle_groups=[m]),),
            True,
        )
        for m in (
            "quads",
            "hamstrings",
            "glutes",
            "calves",
            "adductors",
            "hip flexors",
            # the names people and apps use for them, in any case
            "quadriceps",
            "Quadriceps",
            "glute",
            "Glutes",
            "hamstring",
            "HAMSTRINGS",
            "calf",
            "hip-flexors",
            "Hip Flexor",
        )
    ],
    Case("not a leg day: upper body", (workout(NOON, focus="upper"),), False),
    Case(
        "not a leg day: chest and back only",
        (workout(NOON, focus=None, muscle_groups=["chest", "back"]),),
        False,
    ),
    Case("not a leg day: a run", (workout(NOON, "cardio", None),), False),
    Case("not a leg day: a class (not strength)", (workout(NOON, "class", "legs"),), False),
    Case("not a leg day: sport", (workout(NOON, "sport", "legs"),), False),
]


@pytest.mark.parametrize("case", R2, ids=str)
def test_r2_cardio_cap_after_leg_day(case: Case) -> None:
    """R2: leg day completed -> cardio is fine at 6/10 or less (CDC), talk test, no HIIT."""
    found = check_case(case, "R2", "cardio_advice")
    for n in found:
        assert n.due_at == NOON  # told at once, when the leg day ends
        assert n.data_dict()["rpe_cap"] == 6
        assert any("CDC" in e for e in n.evidence)


# --------------------------------------------------------------------- R3 gains myth

R3 = [
    Case(
        "hypertrophy, leg day",
        (LEG_DAY,),
        True,
        {"goal": "hypertrophy"},
        says=("does not compromise muscle size",),
    ),
    Case(
        "strength, leg day",
        (LEG_DAY,),
        True,
        {"goal": "strength"},
        says=("does not compromise maximal strength",),
    ),
    Case("hypertrophy, upper-body day", (legs(focus="upper"),), False, {"goal": "hypertrophy"}),
    *[
        Case(f"{goal}, leg day", (LEG_DAY,), False, {"goal": goal})
        for goal in ("endurance", "power", "hybrid", "general")
    ],
]


@pytest.mark.parametrize("case", R3, ids=str)
def test_r3_gains_myth(case: Case) -> None:
    """R3: leg day and goal hypertrophy/strength -> cardio doesn't cost size or strength."""
    for n in check_case(case, "R3", "cardio_advice"):
        assert any("Schumann" in e for e in n.evidence)


# --------------------------------------------------------------------- R4 power caveat

POWER = {"goal": "power"}
R4 = [
    Case("power, a mixed session", (legs(kind="mixed"),), True, POWER, says=("another day",)),
    Case("power, a mixed upper session", (legs(kind="mixed", focus="upper"),), True, POWER),
    Case(
        "power, cardio planned 30 min after strength",
        (legs(next_cardio=cardio(after(30))),),
        True,
        POWER,
    ),
    Case(
        "power, cardio planned 60 min after strength (same session, the default)",
        (legs(next_cardio=cardio(after(60))),),
        True,
        POWER,
    ),
    Case(
        "power, a run logged 20 min after strength",
        (LEG_DAY, workout(after(50), "cardio", None, event_id="run", duration_min=30)),
        True,
        POWER,
    ),
    Case(
        "power, cardio planned 3 h after strength: another session",
        (legs(next_cardio=cardio(after(180))),),
        False,
        POWER,
    ),
    Case(
        "power, a run the next day",
        (LEG_DAY, workout(after(24 * 60), "cardio", None, event_id="run", duration_min=30)),
        False,
        POWER,
    ),
    Case(
        "power, a run just before strength, in the same session",
        (workout(after(-70), "cardio", None, event_id="pre", duration_min=20), LEG_DAY),
        True,
        POWER,
    ),
    Case(
        "power, the run synced after the strength it came before",
        (LEG_DAY, (workout(after(-70), "cardio", None, event_id="pre", duration_min=20), after(5))),
        True,
        POWER,
    ),
    Case("power, strength alone", (LEG_DAY,), False, POWER),
    Case("general, a mixed session", (legs(kind="mixed"),), False),
    Case(
        "hypertrophy, cardio 30 min after strength",
        (legs(next_cardio=cardio(after(30))),),
        False,
        {"goal": "hypertrophy"},
    ),
]


@pytest.mark.parametrize("case", R4, ids=str)
def test_r4_power_caveat(case: Case) -> None:
    """R4: goal power and cardio in the same session -> put cardio on another day."""
    for n in check_case(case, "R4", "cardio_advice"):
        assert any("Schumann" in e and "explosive" in e for e in n.evidence)


# --------------------------------------------------------------- R5 endurance separation

ENDURANCE = {"goal": "endurance"}
R5 = [
    Case(
        "key run 2 h after strength: earliest is 18:00 (12:00 + 6 h)",
        (legs(next_cardio=cardio(after(120), key=True)),),
        True,
        ENDURANCE,
        due=NOON,
        data={
            "earliest_key_cardio_at": t("2026-03-02T18:00"),
            "planned_at": t("2026-03-02T14:00"),
            "separation_hours": 6,
        },
        says=("18:00", "before strength or on a non-strength day"),
    ),
    Case(
        "key run planned separately, after the strength session",
        (LEG_DAY, (planned(after(180), cardio(after(240), key=True)), after(180))),
        True,
        ENDURANCE,
        due=after(180),
        data={"earliest_key_cardio_at": t("2026-03-02T18:00")},
        says=("18:00",),
    ),
    Case(
        "upper-body strength also counts (a strength session, not only legs)",
        (legs(focus="upper", next_cardio=cardio(after(120), key=True)),),
        True,
        ENDURANCE,
        data={"earliest_key_cardio_at": t("2026-03-02T18:00")},
    ),
    Case(
        "evening strength: 6 h later is past midnight, so another day",
        (workout(t("2026-03-02T18:00"), next_cardio=cardio(t("2026-03-02T20:00"), key=True)),),
        True,
        ENDURANCE,
        data={"earliest_key_cardio_at": t("2026-03-03T00:00")},
        says=("another day",),
    ),
    Case(
        "key run exactly 6 h after: separated enough",
        (legs(next_cardio=cardio(after(360), key=True)),),
        False,
        ENDURANCE,
    ),
    Case(
        "key run the next morning",
        (legs(next_cardio=cardio(after(20 * 60), key=True)),),
        False,
        ENDURANCE,
    ),
    Case(
        "an easy run (not key) 2 h after",
        (legs(next_cardio=cardio(after(120))),),
        False,
        ENDURANCE,
    ),
    Case(
        "a key run done before strength",
        (planned(t("2026-03-02T08:00"), cardio(t("2026-03-02T09:00"), key=True)), LEG_DAY),
        False,
        ENDURANCE,
    ),
    Case(
        "goal hybrid: not R5",
        (legs(next_cardio=cardio(after(120), key=True)),),
        False,
        {"goal": "hybrid"},
    ),
]


@pytest.mark.parametrize("case", R5, ids=str)
def test_r5_endurance_separation(case: Case) -> None:
    """R5: goal endurance, key cardio planned < 6 h after strength -> earliest clock time."""
    for n in check_case(case, "R5", "cardio_warning"):
        assert "earliest_key_cardio_at" in case.data  # every row states the clock time
        assert any("Robineau" in e for e in n.evidence)


# ------------------------------------------------------------------ R6 hybrid racer

R6 = [
    Case(
        "advanced runner, run after leg day",
        (legs(next_cardio=cardio(after(15))),),
        True,
        {"goal": "hybrid", "running_experience": "advanced"},
        data={"running_experience": "advanced"},
        says=("race simulation", "don't overdo it"),
    ),
    *[
        Case(
            f"{level} runner, run after leg day",
            (legs(next_cardio=cardio(after(15))),),
            True,
            {"goal": "hybrid", "running_experience": level},
            says=("rest between the lift and the run",),
        )
        for level in ("beginner", "intermediate")
    ],
    Case(
        "advanced runner, a run logged after leg day",
        (LEG_DAY, workout(after(45), "cardio", None, event_id="run", duration_min=30)),
        True,
        {"goal": "hybrid", "running_experience": "advanced"},
    ),
    Case(
        "beginner, a run 25 min after a lift that ended 23:40 (across midnight)",
        (
            workout(t("2026-03-02T23:40"), event_id="late"),
            workout(t("2026-03-03T00:35"), "cardio", None, event_id="run", duration_min=30),
        ),
        True,
        {"goal": "hybrid", "running_experience": "beginner", "wake": time(9, 30)},
    ),
    Case(
        "advanced runner, a run 13 h later, the next morning",
        (
            LEG_DAY,
            workout(after(13 * 60 + 30), "cardio", None, event_id="run", duration_min=30),
        ),
        False,
        {"goal": "hybrid", "running_experience": "advanced"},
    ),
    Case(
        "advanced runner, run after an upper-body day",
        (legs(focus="upper", next_cardio=cardio(after(15))),),
        False,
        {"goal": "hybrid", "running_experience": "advanced"},
    ),
    Case("leg day with no cardio after it", (LEG_DAY,), False, {"goal": "hybrid"}),
    Case(
        "run the next day: not lift-then-run",
        (legs(next_cardio=cardio(after(22 * 60))),),
        False,
        {"goal": "hybrid", "running_experience": "advanced"},
    ),
    Case("goal general", (legs(next_cardio=cardio(after(15))),), False),
]


@pytest.mark.parametrize("case", R6, ids=str)
def test_r6_hybrid_racer(case: Case) -> None:
    """R6: goal hybrid, cardio after leg day -> advice by running experience."""
    for n in check_case(case, "R6", "cardio_advice"):
        assert any("Churchill" in e for e in n.evidence)


# ------------------------------------------------------------- R7 hard cardio warning

R7 = [
    Case(
        "run at 7/10 planned 2 h after leg day",
        (legs(next_cardio=cardio(after(120), rpe=7)),),
        True,
        due=NOON,
        data={"rpe": 7, "rpe_cap": 6, "cardio_at": after(120)},
        says=("7/10", "injury", "6/10 or less"),
    ),
    Case(
        "run at 8/10 exactly 3 h after (a few hours, the default)",
        (legs(next_cardio=cardio(after(180), rpe=8)),),
        True,
    ),
    Case(
        "hard run planned separately after leg day",
        (LEG_DAY, (planned(after(30), cardio(after(60), rpe=9)), after(30))),
        True,
        due=after(30),
        says=("9/10",),
    ),
    Case(
        "hard run logged 30 min after leg day",
        (LEG_DAY, workout(after(60), "cardio", None, event_id="run", rpe=8, duration_min=30)),
        True,
        says=("8/10", "next time"),
    ),
    Case(
        "mixed leg session with hard cardio planned in it",
        (legs(kind="mixed", next_cardio=cardio(after(0), rpe=8)),),
        True,
    ),
    *[
        Case(
            f"hard run logged, starting {start} min after leg day",
            (
                LEG_DAY,
                workout(after(start + 30), "cardio", None, event_id="run", rpe=8, duration_min=30),
            ),
            start <= 180,
        )
        for start in (0, 177, 180, 181, 240)
    ],
    Case(
        "a hard spin class (kind class, 9/10) after leg day",
        (LEG_DAY, workout(after(90), "class", None, event_id="spin", rpe=9, duration_min=45)),
        True,
        says=("class at 9/10",),
    ),
    Case(
        "zone-5 intervals with no rpe after leg day",
        (LEG_DAY, workout(after(60), "cardio", None, event_id="int", zone=5, duration_min=20)),
        True,
        says=("zone 5",),
    ),
    Case(
        "zone-3 run with no rpe: moderate",
        (LEG_DAY, workout(after(60), "cardio", None, event_id="z3", zone=3, duration_min=20)),
        False,
    ),
    Case(
        "hard run just before the lift, same session, logged first",
        (
            workout(after(-60), "cardio", None, event_id="pre", rpe=8, duration_min=20),
            LEG_DAY,
        ),
        True,
    ),
    Case(
        "the leg day syncs after the hard run it came before",
        (
            workout(after(60), "cardio", None, event_id="run", rpe=8, duration_min=30),
            (LEG_DAY, after(61)),
        ),
        True,
    ),
    Case("run at 6/10: moderate", (legs(next_cardio=cardio(after(120), rpe=6)),), False),
    Case("run with no effort given", (legs(next_cardio=cardio(after(120))),), False),
    Case("hard run 3.5 h after leg day", (legs(next_cardio=cardio(after(210), rpe=8)),), False),
    Case(
        "hard run after an upper-body day",
        (legs(focus="upper", next_cardio=cardio(after(60), rpe=9)),),
        False,
    ),
]


@pytest.mark.parametrize("case", R7, ids=str)
def test_r7_hard_cardio_warning(case: Case) -> None:
    """R7: cardio above 6/10 within a few hours of a leg day -> injury warning."""
    for n in check_case(case, "R7", "cardio_warning"):
        assert any("Carlson" in e and "injury" in e for e in n.evidence)


# ------------------------------------------------------------ R13 walk while you can

R13 = [
    Case(
        "run planned for this evening",
        (legs(next_cardio=cardio(t("2026-03-02T19:00"))),),
        True,
        due=NOON + timedelta(minutes=2),  # waits 2 minutes for the rest of the sync
        says=("19:00", "while you can still walk"),
    ),
    Case(
        "run planned (earlier) for tomorrow morning",
        (planned(t("2026-03-02T08:00"), cardio(t("2026-03-03T08:00"))), LEG_DAY),
        True,
        says=("tomorrow at 08:00",),
    ),
    Case(
        "tomorrow is a cardio day on the weekly plan (Tuesday)",
        (LEG_DAY,),
        True,
        {"weekly_plan": ((1, "cardio"),)},
        says=("cardio day on your plan",),
    ),
    Case(
        "today (Monday) is also a cardio day on the weekly plan, not done yet",
        (LEG_DAY,),
        True,
        {"weekly_plan": ((0, "cardio"),)},
        says=("Today is also a cardio day on your plan",),
    ),
    Case(
        "today's planned cardio already done this morning",
        (workout(t("2026-03-02T08:00"), "cardio", None, event_id="am-run"), LEG_DAY),
        False,
        {"weekly_plan": ((0, "cardio"),)},
    ),
    Case(
        "run planned in two days",
        (planned(t("2026-03-02T08:00"), cardio(t("2026-03-04T08:00"))), LEG_DAY),
        False,
    ),
    Case(
        "run done this morning, before the leg day",
        (planned(t("2026-03-02T07:00"), cardio(t("2026-03-02T08:00"))), LEG_DAY),
        False,
    ),
    Case("no cardio coming up", (LEG_DAY,), False),
    Case(
        "cardio on the plan the day after tomorrow (Wednesday)",
        (LEG_DAY,),
        False,
        {"weekly_plan": ((2, "cardio"),)},
    ),
    Case(
        "upper-body day with a run tonight",
        (legs(focus="upper", next_cardio=cardio(t("2026-03-02T19:00"))),),
        False,
    ),
]


@pytest.mark.parametrize("case", R13, ids=str)
def test_r13_walk_while_you_can(case: Case) -> None:
    """R13: leg day and cardio due today or tomorrow -> get it done while you can walk."""
    check_case(case, "R13", "cardio_advice")


def test_r13_stays_silent_after_separation_advice_was_sent_even_once_its_draft_is_gone() -> None:
    """Found by the order-independence property: a beginner was told to keep a key run 6 h
    from the leg day (R5); the run's time passed, so R5's draft was gone, and a gym visit
    an hour later brought R13's "get the cardio done soon" for a run planned that night."""
    from recovery_coach.core import coach
    from recovery_coach.core.models import GymCheckin, GymCheckout

    from tests.support.core_builders import profile, run

    p = profile(goal="endurance", running_experience="beginner")
    legs = workout(t("2026-03-06T12:00"), next_cardio=cardio(t("2026-03-06T12:01"), key=True))
    r = run(p, [legs])
    r5 = r.one("R5", "cardio_warning")
    r.state = coach.published(r.state, r5)
    r.feed(planned(t("2026-03-06T12:05"), cardio(t("2026-03-06T15:04"))))
    r.feed(GymCheckin("visit", t("2026-03-06T12:31")))
    r.feed(GymCheckout("visit", t("2026-03-06T12:51")), t("2026-03-06T12:53"))
    assert r.of("R2", last=False)  # the visit is a leg day too
    assert not r.of("R13", last=False)
