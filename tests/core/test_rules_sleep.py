"""R9 (bedtime) and R10 (zone-2 budget), one table per rule, from RULES.md.

R9: bedtime = next wake time - sleep need - 15 min to fall asleep, in real elapsed time;
wind-down 30 min before. With wake at 07:00 and 8 h that is 22:45, wind-down 22:15.
R10: 2-3 h of zone-2 a week (default target 120 min), effort 3-6/10 counts, ISO weeks in
the user's zone; the mid-week check is on Thursday at wake time.
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

import pytest
from recovery_coach.core.rules.zone2 import week_minutes
from recovery_coach.core.timeline import all_activities

from tests.support.core_builders import day_started, hours_between, profile, run, t, workout

# ------------------------------------------------------------------------- R9 bedtime

MON_WAKE = t("2026-03-02T07:00")
R9 = [
    # (row, profile overrides, day starts at, wind-down, bedtime, wake)
    (
        "defaults: wake 07:00, 8 h",
        {},
        MON_WAKE,
        t("2026-03-02T22:15"),
        t("2026-03-02T22:45"),
        t("2026-03-03T07:00"),
    ),
    (
        "9 h of sleep asked for",
        {"sleep_hours": 9.0},
        MON_WAKE,
        t("2026-03-02T21:15"),
        t("2026-03-02T21:45"),
        t("2026-03-03T07:00"),
    ),
    (
        "New York, wake 06:00, 8.5 h",
        {"timezone": "America/New_York", "sleep_hours": 8.5, "wake": time(6, 0)},
        t("2026-03-02T06:00", "-05:00"),
        t("2026-03-02T20:45", "-05:00"),
        t("2026-03-02T21:15", "-05:00"),
        t("2026-03-03T06:00", "-05:00"),
    ),
    (
        "tomorrow's wake time counts: Tuesday 06:00",
        {"wake": [time(7), time(6), time(7), time(7), time(7), time(7), time(7)]},
        MON_WAKE,
        t("2026-03-02T21:15"),
        t("2026-03-02T21:45"),
        t("2026-03-03T06:00"),
    ),
    (
        "no time to fall asleep, 45 min wind-down",
        {"settings": {"sleep_latency_minutes": 0, "winddown_minutes": 45}},
        MON_WAKE,
        t("2026-03-02T22:15"),
        t("2026-03-02T23:00"),
        t("2026-03-03T07:00"),
    ),
    (
        "Berlin, clocks go forward (29 Mar 2026): bed an hour earlier on the wall clock",
        {},
        t("2026-03-28T07:00"),
        t("2026-03-28T21:15"),
        t("2026-03-28T21:45"),
        t("2026-03-29T07:00", "+02:00"),
    ),
    (
        "Berlin, clocks go back (25 Oct 2026): bed an hour later on the wall clock",
        {},
        t("2026-10-24T07:00", "+02:00"),
        t("2026-10-24T23:15", "+02:00"),
        t("2026-10-24T23:45", "+02:00"),
        t("2026-10-25T07:00"),
    ),
    (
        "New York, clocks go forward (8 Mar 2026)",
        {"timezone": "America/New_York"},
        t("2026-03-07T07:00", "-05:00"),
        t("2026-03-07T21:15", "-05:00"),
        t("2026-03-07T21:45", "-05:00"),
        t("2026-03-08T07:00", "-04:00"),
    ),
    (
        "New York, clocks go back (1 Nov 2026)",
        {"timezone": "America/New_York"},
        t("2026-10-31T07:00", "-04:00"),
        t("2026-10-31T23:15", "-04:00"),
        t("2026-10-31T23:45", "-04:00"),
        t("2026-11-01T07:00", "-05:00"),
    ),
]


@pytest.mark.parametrize(
    ("row", "prof", "starts", "winddown", "bedtime", "wake"), R9, ids=[r[0] for r in R9]
)
def test_r9_bedtime(
    row: str,
    prof: dict[str, Any],
    starts: datetime,
    winddown: datetime,
    bedtime: datetime,
    wake: datetime,
) -> None:
    """R9: at least 8 real hours of sleep before the next wake, whatever the clocks do."""
    p = profile(**prof)
    r = run(p, [day_started(starts)])
    wd = r.one("R9", "bedtime_winddown")
    bed = r.one("R9", "bedtime")
    assert (wd.due_at, bed.due_at) == (winddown, bedtime)
    assert bed.data_dict()["wake_at"] == wake
    # real elapsed time: the sleep need plus the time to fall asleep, never less than 8 h
    latency = p.settings.sleep_latency_minutes / 60
    assert hours_between(bedtime, wake) == pytest.approx(p.sleep_hours + latency)
    assert hours_between(bedtime, wake) >= 8
    assert bedtime.strftime("%H:%M") in wd.message
    assert f"{p.sleep_hours:g} hours of sleep" in bed.message
    assert any("ACSM" in e and "eight hours" in e for e in bed.evidence)


def test_r9_bedtime_ids_come_from_the_night() -> None:
    """Planned once a night: the same night planned twice gives the same ids."""
    first = run(profile(), [day_started(MON_WAKE)]).one("R9", "bedtime")
    again = run(profile(), [(day_started(MON_WAKE), t("2026-03-02T12:00"))]).one("R9", "bedtime")
    assert first.nudge_id == again.nudge_id
    assert first.source_event_id == "night:2026-03-03"


def test_r9_no_bedtime_on_a_day_without_a_workout_when_so_set() -> None:
    p = profile(settings={"bedtime_every_day": False})
    assert run(p, [day_started(t("2026-03-02T07:00"))]).of("R9") == []


def test_r9_a_workout_does_not_plan_the_night_twice() -> None:
    r = run(profile(), [day_started(MON_WAKE), workout(t("2026-03-02T18:00"))])
    assert r.of("R9") == []


@pytest.mark.parametrize(
    ("row", "start", "bedtime"),
    [
        ("at wake time: tonight", "2026-03-02T07:00", "2026-03-02T22:45"),
        ("at 05:00, before wake: tonight too", "2026-03-02T05:00", "2026-03-02T22:45"),
        ("at 00:30, after midnight: tonight (Monday's)", "2026-03-02T00:30", "2026-03-02T22:45"),
        ("at 23:00, after bedtime: tomorrow's", "2026-03-02T23:00", "2026-03-03T22:45"),
        ("at 22:30, before bedtime: tonight", "2026-03-02T22:30", "2026-03-02T22:45"),
    ],
    ids=lambda v: v if isinstance(v, str) and " " in v else "",
)
def test_r9_a_start_at_any_hour_plans_the_coming_night(row: str, start: str, bedtime: str) -> None:
    r = run(profile(), [day_started(t(start))])
    beds = [n.due_at for n in r.of("R9", "bedtime")]
    assert t(bedtime) in beds
    assert all(not (t("2026-03-02T22:45") < b < t("2026-03-03T07:00")) for b in beds)


def test_r9_a_start_at_05_00_and_the_07_00_tick_plan_the_night_once() -> None:
    r = run(profile(), [day_started(t("2026-03-02T05:00")), day_started(MON_WAKE)])
    assert r.of("R9") == []  # the same night, already planned
    assert len(r.of("R9", "bedtime", last=False)) == 1


def test_r9_workout_days_only_plans_on_the_workout() -> None:
    r = run(profile(settings={"bedtime_every_day": False}), [workout(t("2026-03-02T18:00"))])
    assert r.one("R9", "bedtime").due_at == t("2026-03-02T22:45")


def test_r9_late_workout_gets_a_bedtime_nudge_at_once() -> None:
    """A workout ending inside the sleep window (after 22:45): go to bed now."""
    r = run(profile(), [workout(t("2026-03-02T23:30"))])
    (bed,) = [n for n in r.of("R9", "bedtime") if n.due_at == t("2026-03-02T23:30")]
    assert "past your 22:45 bedtime" in bed.message
    assert "Cool down" in bed.message
    assert r.of("R1") == []  # one nudge, not a cooldown as well


def test_r9_a_late_workout_synced_next_morning_says_nothing_of_bedtime() -> None:
    r = run(profile(), [(workout(t("2026-03-02T23:30")), t("2026-03-03T07:30"))])
    assert [n for n in r.of("R9") if n.due_at < t("2026-03-03T22:00")] == []


# ------------------------------------------------------------------- R10 zone-2 budget

THU_WAKE = t("2026-03-05T07:00")


def run_min(ended: str, minutes: float, **kw: Any) -> Any:
    kw.setdefault("rpe", 5)
    return workout(t(ended), "cardio", None, event_id=f"run-{ended}", duration_min=minutes, **kw)


R10_CHECK = [
    # (row, profile overrides, events before Thursday's wake, nudge?, minutes so far)
    ("nothing yet this week", {}, [], True, 0),
    ("30 min at 5/10 by Thursday: behind pace", {}, [run_min("2026-03-03T18:00", 30)], True, 30),
    (
        "60 min by Thursday 07:00: ahead of pace (120 x 79/168 = 56)",
        {},
        [run_min("2026-03-03T18:00", 60)],
        False,
        60,
    ),
    ("zone 2 given explicitly", {}, [run_min("2026-03-03T18:00", 70, zone=2)], False, 70),
    ("zone 4, unrated, is hard", {}, [run_min("2026-03-03T18:00", 70, zone=4, rpe=None)], True, 0),
    (
        "zone 3, unrated, is moderate",
        {},
        [run_min("2026-03-03T18:00", 70, zone=3, rpe=None)],
        False,
        70,
    ),
    ("zone 1, unrated, is light", {}, [run_min("2026-03-03T18:00", 70, zone=1, rpe=None)], True, 0),
    # Rated, the rule book's 0-10 scale decides (R10: 3-6 is moderate), whatever the zone.
    ("zone 3 at 5/10 is moderate", {}, [run_min("2026-03-03T18:00", 70, zone=3)], False, 70),
    ("zone 4 at 5/10 is moderate", {}, [run_min("2026-03-03T18:00", 70, zone=4)], False, 70),
    ("zone 2 at 8/10 is hard", {}, [run_min("2026-03-03T18:00", 70, zone=2, rpe=8)], True, 0),
    ("effort 8/10 is not moderate", {}, [run_min("2026-03-03T18:00", 70, rpe=8)], True, 0),
    ("effort 3/10 counts", {}, [run_min("2026-03-03T18:00", 70, rpe=3)], False, 70),
    ("effort 2/10 does not", {}, [run_min("2026-03-03T18:00", 70, rpe=2)], True, 0),
    (
        "strength is not zone-2 cardio",
        {},
        [workout(t("2026-03-03T18:00"), rpe=5, duration_min=90)],
        True,
        0,
    ),
    (
        "last week's minutes do not count (Sunday 1 March)",
        {},
        [run_min("2026-03-01T10:00", 200)],
        True,
        0,
    ),
    (
        "target set to 150",
        {"settings": {"zone2_target_minutes_week": 150}},
        [run_min("2026-03-03T18:00", 60)],
        True,
        60,
    ),
]


@pytest.mark.parametrize(
    ("row", "prof", "events", "nudge", "minutes"), R10_CHECK, ids=[r[0] for r in R10_CHECK]
)
def test_r10_midweek_check(
    row: str, prof: dict[str, Any], events: list[Any], nudge: bool, minutes: int
) -> None:
    """R10: on Thursday morning, nudge when the week is behind pace (2-3 h a week)."""
    p = profile(**prof)
    r = run(p, [*events, day_started(THU_WAKE)])
    found = r.of("R10", "zone2_progress")
    if not nudge:
        assert found == []
        return
    (n,) = found
    target = p.settings.zone2_target_minutes_week
    data = n.data_dict()
    assert (data["zone2_minutes_week"], data["zone2_target_minutes_week"]) == (minutes, target)
    assert f"{minutes} of {target} minutes" in n.message
    assert f"{target - minutes} to go" in n.message
    assert n.due_at == THU_WAKE
    assert any("two to three hours" in e for e in n.evidence)


def test_r10_no_check_on_other_days() -> None:
    for day in ("2026-03-02", "2026-03-03", "2026-03-04", "2026-03-06", "2026-03-08"):
        assert run(profile(), [day_started(t(f"{day}T07:00"))]).of("R10") == []


def test_r10_target_reached() -> None:
    r = run(profile(), [run_min("2026-03-03T18:00", 60), run_min("2026-03-04T18:00", 60)])
    n = r.one("R10", "zone2_progress")
    assert n.data_dict()["zone2_minutes_week"] == 120
    assert "target is done" in n.message
    r.feed(run_min("2026-03-05T18:00", 30))
    assert r.of("R10") == []  # told once a week


@pytest.mark.parametrize(
    ("row", "ended", "week", "reached"),
    [
        # Sunday 21:30 in Berlin is Sunday 20:30 UTC: this week
        ("Sunday 21:30 in Berlin closes the week", "2026-03-08T21:30", (2026, 10), True),
        # Monday 00:30 in Berlin is still Sunday (23:30) in UTC: the user's new week
        ("Monday 00:30 in Berlin opens a new one", "2026-03-09T00:30", (2026, 11), False),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) > 20 else "",
)
def test_r10_iso_week_in_the_users_zone(
    row: str, ended: str, week: tuple[int, int], reached: bool
) -> None:
    r = run(profile(), [run_min("2026-03-03T18:00", 100), run_min(ended, 30)])
    acts = all_activities(r.profile, r.state)[0]
    assert week_minutes(r.profile, acts, week, t(ended))[0] == (130 if reached else 30)
    assert bool(r.of("R10")) is reached


def test_r10_a_target_reached_too_late_to_tell_this_week_is_not_told_next_week() -> None:
    """Sunday 23:30 counts for the week, but the nudge would wait for Monday 07:00: by then
    "this week" is another week, so it is not sent."""
    r = run(profile(), [run_min("2026-03-03T18:00", 100), run_min("2026-03-08T23:30", 30)])
    acts = all_activities(r.profile, r.state)[0]
    assert week_minutes(r.profile, acts, (2026, 10), t("2026-03-08T23:59"))[0] == 130
    assert r.of("R10") == []
