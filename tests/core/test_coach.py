"""The core around the rules: placement in time, gym visits, ack/snooze, ids and wording."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from recovery_coach.contract.config import Config
from recovery_coach.core import coach
from recovery_coach.core.models import (
    GymCheckin,
    GymCheckout,
    NudgeAcked,
    NudgeKind,
    NudgeSnoozed,
    UserState,
    nudge_id_for,
)
from recovery_coach.core.rules.context import Context, Draft

from tests.support.core_builders import profile, run, sentences, t, workout
from tests.support.generated_weeks import replay, scenario

P = profile()  # Berlin, wake 07:00, 8 h: the sleep window is 22:45 to 07:00
EVENING = t("2026-03-02T18:00")


def a_draft(kind: NudgeKind, due: str, expires_h: float | None = 2) -> Draft:
    due_at = t(due)
    expires = due_at + timedelta(hours=expires_h) if expires_h is not None else None
    return Draft(
        "R2", kind, "k", "w1", due_at, expires, ("evidence",),
        lambda _at, _p: ("title", "message.", "speech.", {}),
    )  # fmt: skip


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
def test_place(row: str, kind: NudgeKind, due: str, now: str, placed: str | None) -> None:
    """Never in the past; inside the sleep window, time-bound kinds drop, others wait."""
    ctx = Context(profile=P, state=UserState(), now=t(now))
    spot, why = coach.place(a_draft(kind, due, expires_h=12), ctx)
    if placed is None:
        assert spot is None
        assert "sleep window" in why
        return
    assert spot is not None
    assert spot[0] == t(placed)
    assert spot[1] is not None
    assert spot[1] > spot[0]


def test_deferral_never_stretches_a_nudge_past_its_moment() -> None:
    """Advice about the few hours after a workout does not survive a night by waiting."""
    ctx = Context(profile=P, state=UserState(), now=t(D2 + "18:00"))
    spot, why = coach.place(a_draft("cardio_advice", D2 + "23:30", expires_h=2), ctx)
    assert spot is None
    assert "moment passed" in why


def test_protein_after_a_late_workout_comes_in_the_morning() -> None:
    """Ends 22:30, reminder due 23:30 in the window: it waits for 07:00 (useful until 10:00)."""
    r = run(P, [workout(t(D2 + "22:30"))])
    protein = r.one("R8")
    assert (protein.due_at, protein.expires_at) == (t(D3 + "07:00"), t(D3 + "10:00"))


def test_a_workout_synced_days_late_gets_no_protein_reminder() -> None:
    r = run(P, [(workout(t(D2 + "18:00")), t("2026-03-04T18:00"))])
    assert r.of("R8") == []
    assert r.of("R13") == []


def test_an_early_workout_proves_the_person_is_up() -> None:
    """Ends 06:40 for a 07:00 riser: the cooldown goes out at once, not dropped."""
    r = run(P, [workout(t(D3 + "06:40"), duration_min=40)])
    assert r.one("R1", "cooldown_start").due_at == t(D3 + "06:40")
    assert r.one("R1", "cooldown_done").due_at == t(D3 + "06:45")
    assert not [n for n in r.last if "head to bed" in n.message]  # an early riser, not a late one


def test_an_overnight_sync_of_an_evening_workout_wakes_no_one() -> None:
    """Ended 19:00, synced at 02:10: no "past your bedtime", no cooldown; protein waits."""
    r = run(P, [(workout(t(D2 + "19:00")), t(D3 + "02:10"))])
    assert r.of("R9") == [] or all(n.due_at >= t(D3 + "22:00") for n in r.of("R9"))
    assert r.of("R1") == []
    assert r.one("R8").due_at == t(D3 + "07:00")
    for n in r.last:
        assert not (t(D2 + "22:45") <= n.due_at < t(D3 + "07:00")), n


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
            "a rest day on the plan has no session to borrow: no leg day",
            ((1, "rest"),),
            "2026-03-03",
            None,
            False,
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and " " in v else "",
)
def test_checkout_without_workout_becomes_one_from_the_plan(
    row: str, plan: tuple[tuple[int, str], ...], day: str, focus: str | None, leg_day: bool
) -> None:
    r = run(profile(weekly_plan=plan), [checkin(f"{day}T17:00"), checkout(f"{day}T18:15")])
    from recovery_coach.core.timeline import all_activities

    (w,) = all_activities(r.profile, r.state)[0]
    assert (w.kind, w.focus, w.from_gym_visit) == ("strength", focus, True)
    assert w.duration_min == 75
    assert w.ended_at == t(f"{day}T18:15")
    assert bool(r.of("R2")) is leg_day
    cooldown = r.one("R1", "cooldown_start")
    assert cooldown.source_event_id == "out:visit"
    assert cooldown.due_at == t(f"{day}T18:25")  # after the 10-minute rejoin window


def test_cardio_day_on_the_plan_makes_a_cardio_visit() -> None:
    r = run(
        profile(weekly_plan=((0, "cardio"),)),
        [checkin("2026-03-02T17:00"), checkout("2026-03-02T18:00")],
    )
    assert r.one("R1", "cooldown_start")
    assert r.of("R8") == []  # no strength, no protein reminder


def test_a_workout_event_during_the_visit_wins() -> None:
    r = run(P, [checkin("2026-03-02T17:00"), workout(t("2026-03-02T18:00"), focus="upper")])
    r.feed(checkout("2026-03-02T18:10"))
    assert r.last == []


def test_a_workout_synced_after_the_checkout_replaces_the_visit() -> None:
    """The watch syncs at 18:20 a workout that ended 18:10: the visit's pending nudges are
    cancelled, and the visit's session keeps its cooldown id, so no second cooldown."""
    r = run(
        profile(weekly_plan=((0, "legs"),)),
        [checkin("2026-03-02T17:00"), checkout("2026-03-02T18:15")],
    )
    visit = {n.kind: n for n in r.last}
    r.feed(workout(t("2026-03-02T18:10"), focus="upper", event_id="watch"), t("2026-03-02T18:20"))
    assert visit["cardio_advice"].nudge_id in r.cancelled  # R2: upper body, after all
    assert r.one("R8").source_event_id == "watch"  # the protein reminder follows the real one
    assert r.one("R1", "cooldown_start").nudge_id == visit["cooldown_start"].nudge_id


def test_a_geofence_flap_is_one_visit() -> None:
    """Out at 18:00 and back in at 18:02: still training, so no cooldown until the real end."""
    r = run(P, [checkin(D2 + "17:00", "in1"), checkout(D2 + "18:00", "out1")])
    flap = [n.nudge_id for n in r.last]
    assert flap  # planned for 18:10, after the rejoin window
    r.feed(checkin(D2 + "18:02", "in2"))
    assert set(flap) <= set(r.cancelled)
    r.feed(checkout(D2 + "19:00", "out2"))
    (cooldown,) = r.of("R1", "cooldown_start")
    assert cooldown.due_at == t(D2 + "19:10")
    assert len(r.of("R8", last=False)) == 2
    assert len(r.of("R8")) == 1


def test_a_visit_too_short_is_no_workout() -> None:
    r = run(P, [checkin(D2 + "17:00"), checkout(D2 + "17:10")])
    assert [n.rule for n in r.last if n.rule != "R9"] == []


def test_check_in_and_checkout_may_share_one_visit_id() -> None:
    """An NFC tag gives both the same event_id: the visit is kept whole."""
    r = run(P, [checkin(D2 + "17:00", "tag-42"), checkout(D2 + "18:15", "tag-42")])
    assert r.one("R1", "cooldown_start").source_event_id == "tag-42:visit"


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
    cooldown = r.one("R1", "cooldown_done")
    state = coach.published(r.state, cooldown)
    now = EVENING + timedelta(minutes=5)
    (again,) = coach.decide(NudgeSnoozed("z3", now, "last", 5), P, state, now).nudges
    data = again.data_dict()
    assert data["cooldown_ends_at"] == cooldown.data_dict()["cooldown_ends_at"]
    assert data["snoozed_from"] == cooldown.nudge_id


def test_a_bedtime_snoozed_past_the_night_is_dropped() -> None:
    r = run(P, [workout(EVENING)])
    placed = coach.derive(P, r.state, t(D2 + "22:45"))[0]
    (bed,) = [n for n in placed if n.nudge.kind == "bedtime" and n.nudge.due_at == t(D2 + "22:45")]
    state = coach.published(r.state, bed.nudge)
    now = t(D2 + "22:46")
    d = coach.decide(NudgeSnoozed("z4", now, "last", 240), P, state, now)
    assert d.nudges == ()
    assert d.dropped
    (again,) = coach.decide(NudgeSnoozed("z5", now, "last", 15), P, state, now).nudges
    assert "past your 22:45 bedtime" in again.message  # worded for 23:01, not "It's 22:45"


def test_one_decision_never_holds_the_same_nudge_id_twice() -> None:
    legs = [workout(EVENING - timedelta(hours=2), event_id="l1"), workout(EVENING, event_id="l2")]
    hard_run = workout(
        EVENING + timedelta(minutes=40), "cardio", None, event_id="run1", rpe=8, duration_min=30
    )
    r = run(P, [*legs, hard_run])
    assert [n.rule for n in r.nudges].count("R7") == 1
    ids = [n.nudge_id for n in r.last]
    assert len(ids) == len(set(ids))


def test_snooze_into_the_night_waits_or_drops_like_any_nudge() -> None:
    r = run(P, [workout(t("2026-03-02T22:00"))])
    cooldown = r.one("R1", "cooldown_start")
    state = coach.published(r.state, cooldown)
    now = t("2026-03-02T22:10")
    d = coach.decide(NudgeSnoozed("z2", now, cooldown.nudge_id, 60), P, state, now)
    assert d.nudges == ()
    assert "sleep window" in d.dropped[0]


def test_ack_marks_the_nudge_and_unknown_ids_are_refused() -> None:
    r = run(P, [workout(EVENING)])
    state = coach.published(r.state, r.one("R2"))
    d = coach.decide(NudgeAcked("a1", EVENING, "last"), P, state, EVENING)
    assert d.state.recent_nudges[-1].acknowledged
    with pytest.raises(coach.RefusalError, match="no recent nudge with id 'nope'"):
        coach.decide(NudgeAcked("a2", EVENING, "nope"), P, state, EVENING)


# ------------------------------------------------------------------ ids and wording


def test_nudge_ids_are_stable_for_the_same_facts() -> None:
    first = run(P, [workout(EVENING)]).nudges
    again = run(P, [workout(EVENING)]).nudges
    assert [n.nudge_id for n in first] == [n.nudge_id for n in again]
    sam = run(profile(user_id="sam"), [workout(EVENING)]).nudges
    assert not {n.nudge_id for n in first} & {n.nudge_id for n in sam}


def test_a_re_decision_that_yields_the_same_nudge_adds_nothing() -> None:
    r = run(P, [workout(EVENING)])
    r.feed(workout(EVENING - timedelta(days=3), event_id="old", focus="upper"), EVENING)
    assert [n for n in r.last if n.rule != "R9"] == []
    assert r.cancelled == []


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
        assert n["nudge_id"].startswith(f"{n['kind']}-")


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
    own = profile(sleep_hours=9.5)
    assert coach.state_view(own, r.state, t("2026-03-02T18:01"))["sleep_hours"] == 9.5
    assert view["rpe_cap"] == 6  # RULES.md's moderate cap, the default


def test_day_ticks_have_their_own_ids() -> None:
    """A start at 05:00 and the 07:00 tick that day are two ticks, not a redelivery."""
    assert coach.day_event_id(P, t(D2 + "05:00")) != coach.day_event_id(P, t(D2 + "07:00"))


def test_a_flood_of_facts_keeps_the_newest_few_hundred_of_each_kind() -> None:
    """A device looping on its topic cannot grow a state without bound: each kind of fact
    keeps its newest MAX_FACTS, far more than a person logs in the 21 days the rules read."""
    state = UserState()
    for i in range(coach.MAX_FACTS + 50):
        at = EVENING + timedelta(seconds=10 * i)
        state = coach.record(GymCheckin(f"g{i}", at), state, at)
        state = coach.record(workout(at, "cardio", None, event_id=f"w{i}"), state, at)
    last = coach.MAX_FACTS + 49
    # Pruned before each fact is added: at most MAX_FACTS old ones and the new one.
    assert [len(state.gym), len(state.activities)] == [coach.MAX_FACTS, coach.MAX_FACTS + 1]
    assert [state.gym[0].event_id, state.gym[-1].event_id] == ["g50", f"g{last}"]
    assert [state.activities[0].event_id, state.activities[-1].event_id] == ["w49", f"w{last}"]
