"""Sequences real people produce, replayed through `simulate` (the live worker and store on
a virtual clock), each with numbers hypothesis draws: the class, not one example.

Berlin in March (UTC+1). A person waking at 07:00 with 8 h of sleep has bedtime 22:45
(RULES.md R9: wake - 8 h - 15 min) and the wind-down at 22:15; "a few hours" is 3.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from recovery_coach.contract.config import parse_config
from recovery_coach.runtime.simulate import simulate

CHECK = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DAY = datetime.fromisoformat("2026-03-02T00:00:00+01:00")  # a Monday
BASE = "recovery_coach"


def at(hours: float) -> datetime:
    return DAY + timedelta(hours=hours)


@dataclass
class Replayed:
    nudges: list[dict[str, Any]]
    errors: list[dict[str, Any]]

    def of(self, rule: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        return [n for n in self.nudges if rule in (None, n["rule"]) and kind in (None, n["kind"])]


def replay(messages: list[tuple[datetime, str, Any]], **user: Any) -> Replayed:
    """Each message (arrival, topic under <base>/alex/, payload) at its own time."""
    cfg = parse_config({"timezone": "Europe/Berlin", "users": {"alex": {"weight_kg": 80, **user}}})
    lines = [
        json.dumps(
            {"topic": f"{BASE}/alex/{topic}", "payload": body, "received_at": when.isoformat()}
        )
        for when, topic, body in messages
    ]
    out, err = io.StringIO(), io.StringIO()
    simulate(cfg, lines, 36, out, err)
    return Replayed(
        [json.loads(x) for x in out.getvalue().splitlines()],
        [json.loads(x) for x in err.getvalue().splitlines()],
    )


def workout(ended: datetime, event_id: str, **fields: Any) -> tuple[datetime, str, Any]:
    body = {"event_id": event_id, "ended_at": ended.isoformat(), "kind": "strength"}
    body.update(fields)
    return ended, "workout/completed", body


def plan(sent: datetime, planned: datetime, **fields: Any) -> tuple[datetime, str, Any]:
    return sent, "cardio/planned", {"planned_at": planned.isoformat(), "kind": "run", **fields}


def due(n: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(n["due_at"])


# ------------------------------------------------------------------ a plan that is changed

leg_end = st.integers(8 * 60, 16 * 60).map(lambda m: at(m / 60))
minutes_after = st.integers(20, 170)  # a run within R7's few hours (3 h) of the leg work
easy = st.integers(1, 6)
hard = st.integers(7, 10)


@CHECK
@given(leg_end, minutes_after, easy, hard, st.integers(5, 60))
def test_a_run_replanned_from_easy_to_hard_after_leg_day_gets_r7(
    legs: datetime, after: int, easy_rpe: int, hard_rpe: int, later: int
) -> None:
    """The newest plan for the slot stands: planned easy, no warning; re-planned hard for the
    same time, R7's warning, naming the new effort."""
    run_at = legs + timedelta(minutes=after)
    first = legs - timedelta(hours=2)
    out = replay(
        [
            plan(first, run_at, rpe=easy_rpe),
            workout(legs, "legs", focus="legs"),
            plan(legs + timedelta(minutes=min(later, after - 10)), run_at, rpe=hard_rpe),
        ]
    )
    (warning,) = out.of("R7", "cardio_warning")
    assert f"{hard_rpe}/10" in warning["message"]
    assert warning["data"]["rpe"] == hard_rpe


@CHECK
@given(leg_end, minutes_after, hard, easy)
def test_a_run_replanned_from_hard_to_easy_before_the_leg_day_gets_no_r7(
    legs: datetime, after: int, hard_rpe: int, easy_rpe: int
) -> None:
    run_at = legs + timedelta(minutes=after)
    out = replay(
        [
            plan(legs - timedelta(hours=3), run_at, rpe=hard_rpe),
            plan(legs - timedelta(hours=1), run_at, rpe=easy_rpe),
            workout(legs, "legs", focus="legs"),
        ]
    )
    assert out.of("R7") == []


@CHECK
@given(leg_end, st.integers(60, 300), st.booleans())
def test_the_newest_plan_says_whether_it_is_the_key_session(
    legs: datetime, after: int, becomes_key: bool
) -> None:
    """Endurance: a run planned before the lift, then planned again for the same slot as
    the key session (R5: keep it 6 h from strength), or no longer as one (no R5)."""
    run_at = legs + timedelta(minutes=after)
    out = replay(
        [
            plan(legs - timedelta(hours=3), run_at, rpe=5, key_session=not becomes_key),
            plan(legs - timedelta(hours=1), run_at, rpe=5, key_session=becomes_key),
            workout(legs, "legs", focus="legs"),
        ],
        goal="endurance",
    )
    r5 = out.of("R5")
    assert [n["data"]["planned_at"] for n in r5] == ([run_at.isoformat()] if becomes_key else [])


@CHECK
@given(leg_end, minutes_after, hard)
def test_a_plan_that_changes_kind_is_named_by_its_new_kind(
    legs: datetime, after: int, hard_rpe: int
) -> None:
    run_at = legs + timedelta(minutes=after)
    out = replay(
        [
            plan(legs - timedelta(hours=2), run_at, rpe=hard_rpe),
            plan(legs - timedelta(hours=1), run_at, rpe=hard_rpe, kind="ride"),
            workout(legs, "legs", focus="legs"),
        ]
    )
    (warning,) = out.of("R7")
    assert "ride" in warning["message"]
    assert "run" not in warning["message"].replace("runn", "")


# ------------------------------------------------------------------ zone and effort


@CHECK
@given(st.integers(0, 10), st.integers(1, 5), st.integers(130, 170))
def test_a_rated_session_counts_by_its_rating_whatever_its_zone(
    rpe: int, zone: int, minutes: int
) -> None:
    """R10 (the rule book's reading of effort): 3-6/10 is moderate, above 6 is hard. The
    Thursday pace check is silent once the moderate minutes meet the 120-minute target."""
    out = replay(
        [
            workout(at(24 + 18), "run", kind="cardio", rpe=rpe, zone=zone, duration_min=minutes),
        ]
    )
    reached = out.of("R10", "zone2_progress")
    moderate = 3 <= rpe <= 6
    if moderate:
        assert [n["data"]["zone2_minutes_week"] for n in reached] == [minutes]
    else:
        assert all(n["data"]["zone2_minutes_week"] == 0 for n in reached)
        if rpe > 6:
            assert all(n["data"]["high_intensity_minutes_week"] == minutes for n in reached)


# ------------------------------------------------------------------ a gym visit on a rest day


@CHECK
@given(st.sampled_from(["mon", "tue", "wed"]), st.integers(8 * 60, 18 * 60), st.integers(30, 90))
def test_a_gym_visit_on_a_rest_day_is_no_leg_day(day: str, start: int, length: int) -> None:
    offset = ["mon", "tue", "wed"].index(day) * 24
    checkin = at(offset + start / 60)
    checkout = checkin + timedelta(minutes=length)
    out = replay(
        [
            (checkin, "gym/checkin", {"at": checkin.isoformat(), "event_id": "in"}),
            (checkout, "gym/checkout", {"at": checkout.isoformat(), "event_id": "out"}),
        ],
        weekly_plan={day: "rest"},
    )
    sources = {n["rule"] for n in out.nudges if n["source_event_id"] == "out:visit"}
    assert "R1" in sources  # they were there: a cooldown
    assert not sources & {"R2", "R3", "R6", "R7", "R13"}  # but no leg-day advice


# ------------------------------------------------------------------ protein once a day


@CHECK
@given(st.integers(21 * 60 + 50, 22 * 60 + 40), st.integers(10, 180))
def test_a_reminder_deferred_to_the_morning_and_that_mornings_own_are_one(
    evening_end: int, morning_after_wake: int
) -> None:
    """An evening session whose reminder falls in the night waits for 07:00; a session that
    next morning would remind again: one reminder that day."""
    evening = at(evening_end / 60)
    morning = at(24 + 7) + timedelta(minutes=morning_after_wake)
    out = replay([workout(evening, "eve", focus="upper"), workout(morning, "morn", focus="upper")])
    tuesday = [n for n in out.of("R8") if due(n).date() == morning.date()]
    assert len(tuesday) == 1


# ------------------------------------------------------------------ snooze and ack


def protein_day(*extra: tuple[datetime, str, Any]) -> Replayed:
    return replay([workout(at(12), "lift", focus="upper"), *extra])


@CHECK
@given(st.integers(5, 90), st.integers(1, 4))
def test_an_acknowledged_nudge_sends_no_snoozed_copy(snooze: int, ack_after: int) -> None:
    """The protein reminder (13:00) is snoozed, then acknowledged before the copy is due."""
    reminder = at(13)
    out = protein_day(
        (reminder + timedelta(minutes=1), "nudge/last/snooze", {"minutes": snooze}),
        (reminder + timedelta(minutes=1 + min(ack_after, snooze - 1)), "nudge/last/ack", {}),
    )
    assert [n for n in out.of("R8") if "snoozed_from" in n["data"]] == []


@CHECK
@given(st.integers(5, 60), st.integers(5, 60), st.integers(1, 4))
def test_a_second_snooze_replaces_the_first(first: int, second: int, gap: int) -> None:
    reminder = at(13)
    snoozed = reminder + timedelta(minutes=1)
    again = snoozed + timedelta(minutes=min(gap, first - 1))
    out = protein_day(
        (snoozed, "nudge/last/snooze", {"minutes": first}),
        (again, "nudge/protein-x/snooze", {"minutes": second}),  # unknown id: refused
        (again, "nudge/last/snooze", {"minutes": second}),
    )
    copies = [n for n in out.of("R8") if "snoozed_from" in n["data"]]
    assert [due(n) for n in copies] == [again + timedelta(minutes=second)]


# ------------------------------------------------------------------ words true when read


@CHECK
@given(leg_end, st.integers(30, 150), hard, st.integers(1, 25))
def test_a_warning_read_after_the_session_began_no_longer_calls_it_planned(
    legs: datetime, after: int, hard_rpe: int, late: int
) -> None:
    """A hard run logged as a plan only once it has begun (or a warning read then): R7 is
    worded for the moment, not as a plan to move."""
    run_at = legs + timedelta(minutes=after)
    out = replay(
        [
            workout(legs, "legs", focus="legs"),
            plan(run_at + timedelta(minutes=late), run_at, rpe=hard_rpe),
        ]
    )
    (warning,) = out.of("R7")
    assert due(warning) >= run_at
    assert "planned" not in warning["message"]
    assert "move" not in warning["message"]
    assert f"{hard_rpe}/10" in warning["message"]


@CHECK
@given(leg_end, st.integers(60, 150), st.integers(10, 40), st.integers(1, 9))
def test_a_snoozed_walk_while_you_can_read_after_the_run_began_calls_nothing_planned(
    legs: datetime, after: int, snooze: int, early: int
) -> None:
    """R13 ("get the cardio done while you can still walk") is snoozed; meanwhile an earlier
    run is planned, and has begun when the copy is read: it names no plan then, only the
    cardio if it is still to do."""
    run_at = legs + timedelta(minutes=after)
    first = replay([workout(legs, "legs", focus="legs"), plan(legs, run_at)]).of("R13")
    assert first, "R13 is due after a leg day with a run planned"
    snoozed_at = due(first[0]) + timedelta(minutes=1)  # R13 is the last nudge then
    read_at = snoozed_at + timedelta(minutes=snooze)
    earlier = read_at - timedelta(minutes=early)  # begun by the time the copy is read
    out = replay(
        [
            workout(legs, "legs", focus="legs"),
            plan(legs, run_at),
            (snoozed_at, "nudge/last/snooze", {"minutes": snooze}),
            plan(snoozed_at + timedelta(seconds=30), earlier),
        ]
    )
    (late,) = [n for n in out.of("R13") if due(n) == read_at]
    assert "planned" not in late["message"], late["message"]
    assert "still to do" in late["message"], late["message"]


# ------------------------------------------------------------------ wake time moved later


@CHECK
@given(st.integers(1, 6).map(lambda q: q * 15), st.integers(1, 12))
def test_a_later_bedtime_brings_a_new_winddown_even_after_the_old_one(
    later: int, minutes_after_winddown: int
) -> None:
    """The wind-down for 22:45 went out at 22:15; the wake time then moves `later` minutes
    (the profile, from Home Assistant): a wind-down 30 min before the new bedtime."""
    profile = {"timezone": "Europe/Berlin", "weight_kg": 80, "wake_time": "07:00"}
    moved = f"{7 + later // 60:02d}:{later % 60:02d}"
    change = at(22.25) + timedelta(minutes=minutes_after_winddown)
    cfg = parse_config({"timezone": "Europe/Berlin", "users": {}})
    lines = [
        {"topic": f"{BASE}/sam/profile", "payload": profile, "received_at": at(9).isoformat()},
        {
            "topic": f"{BASE}/sam/profile",
            "payload": {**profile, "wake_time": moved},
            "received_at": change.isoformat(),
        },
    ]
    out, err = io.StringIO(), io.StringIO()
    simulate(cfg, [json.dumps(x) for x in lines], 12, out, err)
    nudges = [json.loads(x) for x in out.getvalue().splitlines()]
    tonight = at(30)  # this night's, not tomorrow's
    winddowns = [due(n) for n in nudges if n["kind"] == "bedtime_winddown" and due(n) < tonight]
    bedtimes = [due(n) for n in nudges if n["kind"] == "bedtime" and due(n) < tonight]
    new_bedtime = at(22.75) + timedelta(minutes=later)
    assert winddowns[0] == at(22.25)
    assert winddowns[-1] == max(change, new_bedtime - timedelta(minutes=30))
    assert bedtimes == [new_bedtime]


# ------------------------------------------------------------------ leftovers


@CHECK
@given(st.integers(1, 4))
def test_a_cooldown_that_runs_into_bedtime_is_finished_and_said(before_bed: int) -> None:
    """A workout ends minutes before 22:45: the person is up, cooling down."""
    ended = at(22.75) - timedelta(minutes=before_bed)
    out = replay([workout(ended, "late", focus="upper")])
    done = out.of("R1", "cooldown_done")
    assert [due(n) for n in done] == [ended + timedelta(minutes=5)]


def test_an_export_whose_dates_cannot_be_read_is_refused_with_the_reason() -> None:
    body = {
        "data": {
            "workouts": [
                {"id": "a1", "name": "Outdoor Run", "start": "02/03/2026 17:00", "end": "?"},
            ]
        }
    }
    out = replay([(at(18), "workout/health_auto_export", body)])
    (error,) = out.errors
    assert "a1" in error["reason"]
    assert "'02/03/2026 17:00'" in error["reason"]
    assert out.nudges == [] or all(n["rule"] == "R9" for n in out.nudges)
