"""The core around the rules: placement in time, gym visits, ack/snooze, ids and wording."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from core_builders import profile, run, sentences, t, workout
from generated_weeks import replay, scenario
from hypothesis import HealthCheck, given, settings
from recovery_coach import coach
from recovery_coach.config import Config
from recovery_coach.models import GymCheckin, GymCheckout, NudgeAcked, NudgeSnoozed, nudge_id_for

P = profile()  # Berlin, wake 07:00, 8 h: the sleep window is 22:45 to 07:00
EVENING = t("2026-03-02T18:00")


def a_nudge(kind: str, due: str, expires_h: float | None = 2) -> object:
    """One real nudge of `kind` (from a leg day with a hard run planned), due at `due`."""
    r = run(P, [workout(EVENING, next_cardio=None)])
    base = next(n for n in r.nudges if n.kind == "cardio_advice")
    due_at = t(due)
    expires = due_at + timedelta(hours=expires_h) if expires_h is not None else None
    return replace(base, kind=kind, due_at=due_at, expires_at=expires)


# ------------------------------------------------------------------ coach.place

D2, D3 = "2026-03-02T", "2026-03-03T"
PLACE = [
    # (row, kind, due, now, placed due or None)
    ("advice by day stays", "cardio_advice", D2 + "20:00", D2 + "18:00", D2 + "20:00"),
    ("never in the past: due now", "protein", D2 + "17:00", D2 + "18:00", D2 + "18:00"),
    ("advice in the night waits", "cardio_advice", D2 + "23:30", D2 + "18:00", D3 + "07:00"),
    ("protein in the night waits", "protein", D3 + "03:00", D2 + "18:00", D3 + "07:00"),
    ("a warning in the night waits", "cardio_warning", D2 + "22:45", D2 + "18:00", D3 + "07:00"),
    ("soreness advice waits", "recovery_advice", D3 + "06:59", D2 + "18:00", D3 + "07:00"),
    ("a cooldown in the night drops", "cooldown_start", D2 + "23:30", D2 + "23:30", None),
    ("a cooldown-done in the night drops", "cooldown_done", D2 + "23:35", D2 + "23:30", None),
    ("a wind-down in the night drops", "bedtime_winddown", D2 + "23:00", D2 + "18:00", None),
    ("a bedtime nudge may be in it", "bedtime", D2 + "23:30", D2 + "23:30", D2 + "23:30"),
    ("at wake time the window is over", "cooldown_start", D3 + "07:00", D3 + "07:00", D3 + "07:00"),
]


@pytest.mark.parametrize(("row", "kind", "due", "now", "placed"), PLACE, ids=[p[0] for p in PLACE])
def test_place(row: str, kind: str, due: str, now: str, placed: str | None) -> None:
    """Never in the past; inside the sleep window, time-bound kinds drop, others wait."""
    nudge = a_nudge(kind, due)
    result, why = coach.place(nudge, P, t(now))  # type: ignore[arg-type]
    if placed is None:
        assert result is None
        assert "sleep window" in why
        return
    assert result is not None
    assert result.due_at == t(placed)
    assert result.expires_at is not None
    assert result.expires_at > result.due_at


def test_place_drops_what_expired_before_it_was_due() -> None:
    nudge = a_nudge("cardio_advice", "2026-03-02T18:00", expires_h=1)
    result, why = coach.place(nudge, P, t("2026-03-02T19:30"))  # type: ignore[arg-type]
    assert result is None
    assert "expired" in why


# ------------------------------------------------------------------ gym visits


def checkin(at: str, eid: str = "in") -> GymCheckin:
    return GymCheckin(eid, t(at))


def checkout(at: str, eid: str = "out") -> GymCheckout:
    return GymCheckout(eid, t(at))


@pytest.mark.parametrize(
    ("row", "plan", "day", "focus", "leg_day"),
    [
        ("Monday on the plan: legs", ((0, "legs"),), "2026-03-02", "legs", True),
        ("Wednesday on the plan: upper", ((2, "upper"),), "2026-03-04", "upper", False),
        ("no plan for the day: full", ((0, "legs"),), "2026-03-03", "full", True),
        (
            "a rest day on the plan, yet at the gym: full",
            ((1, "rest"),),
            "2026-03-03",
            "full",
            True,
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and " " in v else "",
)
def test_checkout_without_workout_becomes_one_from_the_plan(
    row: str, plan: tuple[tuple[int, str], ...], day: str, focus: str, leg_day: bool
) -> None:
    r = run(profile(weekly_plan=plan), [checkin(f"{day}T17:00"), checkout(f"{day}T18:15")])
    (w,) = r.state.workouts
    assert (w.kind, w.focus, w.from_gym_visit) == ("strength", focus, True)
    assert w.duration_min == 75
    assert w.ended_at == t(f"{day}T18:15")
    assert bool(r.of("R2")) is leg_day
    assert r.one("R1", "cooldown_start").source_event_id == "out:visit"


def test_cardio_day_on_the_plan_makes_a_cardio_visit() -> None:
    r = run(
        profile(weekly_plan=((0, "cardio"),)),
        [checkin("2026-03-02T17:00"), checkout("2026-03-02T18:00")],
    )
    assert r.state.workouts[0].kind == "cardio"
    assert r.of("R8") == []  # no strength, no protein reminder


def test_a_workout_event_during_the_visit_wins() -> None:
    r = run(P, [checkin("2026-03-02T17:00"), workout(t("2026-03-02T18:00"), focus="upper")])
    r.feed(checkout("2026-03-02T18:10"))
    assert r.last == []
    assert [w.event_id for w in r.state.workouts] == ["w1"]


def test_a_workout_synced_after_the_checkout_replaces_the_visit() -> None:
    """The watch syncs at 18:30 a workout that ended 18:10: the visit's nudges are cancelled."""
    r = run(
        profile(weekly_plan=((0, "legs"),)),
        [checkin("2026-03-02T17:00"), checkout("2026-03-02T18:15")],
    )
    visit_ids = {n.nudge_id for n in r.last}
    r.feed(workout(t("2026-03-02T18:10"), focus="upper", event_id="watch"), t("2026-03-02T18:30"))
    assert visit_ids <= set(r.cancelled)
    assert [w.event_id for w in r.state.workouts] == ["watch"]
    assert r.one("R8").source_event_id == "watch"  # the protein reminder follows the real one
    assert r.of("R2") == []  # upper body, after all


# ------------------------------------------------------------------ ack and snooze


def test_snooze_sends_the_nudge_again_later_with_its_numbers() -> None:
    r = run(P, [workout(EVENING)])
    protein = r.one("R8")
    state = coach.published(r.state, protein)
    now = t("2026-03-02T19:00")
    d = coach.decide(NudgeSnoozed("z1", now, "last", 30), P, state, now)
    (again,) = d.nudges
    assert (again.rule, again.kind) == ("R8", "protein")
    assert again.due_at == now + timedelta(minutes=30)
    assert again.nudge_id == nudge_id_for("alex", "z1", "R8", "protein") != protein.nudge_id
    data = again.data_dict()
    assert data["snoozed_from"] == protein.nudge_id
    assert (data["protein_target_g"], data["protein_remaining_g"]) == (128, 128)


def test_a_snoozed_nudge_keeps_its_own_numbers() -> None:
    r = run(P, [workout(EVENING)])
    cooldown = r.one("R1", "cooldown_start")
    state = coach.published(r.state, cooldown)
    now = EVENING + timedelta(minutes=1)
    (again,) = coach.decide(NudgeSnoozed("z3", now, "last", 10), P, state, now).nudges
    data = again.data_dict()
    assert data["cooldown_ends_at"] == cooldown.data_dict()["cooldown_ends_at"]
    assert data["snoozed_from"] == cooldown.nudge_id


def test_one_decision_never_holds_the_same_nudge_id_twice() -> None:
    # A hard run logged after two leg sessions: R7 pairs it with both, one warning goes out.
    legs = [workout(EVENING - timedelta(hours=2), event_id="l1"), workout(EVENING, event_id="l2")]
    hard_run = workout(
        EVENING + timedelta(minutes=40), "cardio", None, event_id="run1", rpe=8, duration_min=30
    )
    r = run(P, [*legs, hard_run])
    assert [n.rule for n in r.last].count("R7") == 1
    ids = [n.nudge_id for n in r.last]
    assert len(ids) == len(set(ids))


def test_snooze_into_the_night_waits_or_drops_like_any_nudge() -> None:
    r = run(P, [workout(t("2026-03-02T22:00"))])
    cooldown = r.one("R1", "cooldown_start")
    state = coach.published(r.state, cooldown)
    now = t("2026-03-02T22:10")
    d = coach.decide(NudgeSnoozed("z2", now, cooldown.nudge_id, 60), P, state, now)
    assert d.nudges == ()
    assert "sleep window" in d.dropped[0][1]


def test_ack_marks_the_nudge_and_unknown_ids_are_refused() -> None:
    r = run(P, [workout(EVENING)])
    state = coach.published(r.state, r.one("R2"))
    d = coach.decide(NudgeAcked("a1", EVENING, "last"), P, state, EVENING)
    assert d.state.recent_nudges[-1].acknowledged
    with pytest.raises(coach.RefusalError, match="no recent nudge with id 'nope'"):
        coach.decide(NudgeAcked("a2", EVENING, "nope"), P, state, EVENING)


# ------------------------------------------------------------------ ids and wording


def test_nudge_ids_are_stable_per_user_event_rule_and_kind() -> None:
    first = run(P, [workout(EVENING)]).nudges
    again = run(P, [workout(EVENING)]).nudges
    assert [n.nudge_id for n in first] == [n.nudge_id for n in again]
    for n in first:
        assert n.nudge_id == nudge_id_for(n.user, n.source_event_id, n.rule, n.kind)
    sam = run(profile(user_id="sam"), [workout(EVENING)]).nudges
    assert not {n.nudge_id for n in first} & {n.nudge_id for n in sam}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario())
def test_every_nudge_is_short_enough_to_speak(case: tuple[Config, list[str]]) -> None:
    """`speech` is one or two short sentences (at most 120 characters) for a voice assistant."""
    for n in replay(*case).nudges:
        assert n["speech"].strip()
        assert len(n["speech"]) <= 120, n["speech"]
        assert 1 <= sentences(n["speech"]) <= 2, n["speech"]
        assert n["title"]
        assert n["evidence"]
        if "snoozed_from" not in n["data"]:  # a snooze is its own event, with its own id
            assert n["nudge_id"] == nudge_id_for(
                n["user"], n["source_event_id"], n["rule"], n["kind"]
            )


def test_state_view_has_the_contract_fields() -> None:
    r = run(P, [workout(EVENING)])
    view = coach.state_view(P, r.state, t("2026-03-02T18:01"))
    for key in (
        "next_bedtime", "cooldown_ends_at", "protein_target_g", "protein_remaining_g",
        "zone2_minutes_week", "last_workout", "last_nudge",
    ):  # fmt: skip
        assert key in view
    assert view["next_bedtime"] == "2026-03-02T22:45:00+01:00"
    assert view["cooldown_ends_at"] == "2026-03-02T18:05:00+01:00"
    assert view["protein_target_g"] == 128
    assert view["last_workout"]["leg_day"] is True
