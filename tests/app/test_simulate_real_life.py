"""`simulate` on real-life data: late syncs, out-of-order facts, flapping geofences, two
sessions a day, a start before the wake time (tests/events/real-life, configs/real-life.yaml).

Berlin, waking at 07:00 (bedtime 22:45), except `owl`, waking at 09:30 (bedtime 01:15).
One test per class of what went wrong when the core read one message at a time.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from recovery_coach.cli import main

from tests.support.replay_output import Output

HERE = Path(__file__).parents[1]  # tests/
CONFIG = HERE / "configs" / "real-life.yaml"
EVENTS = HERE / "events" / "real-life"


def replay(capsys: pytest.CaptureFixture[str], events: str) -> Output:
    code = main(["simulate", "--config", str(CONFIG), str(EVENTS / events)])
    out, err = capsys.readouterr()
    assert code == 0, err
    return Output(out, err)


def kinds(out: Output, user: str) -> list[tuple[str, str, str]]:
    return [(n["rule"], n["kind"], n["due_at"][11:16]) for n in out.of(user)]


# 1. the event's own time, not the receipt time


def test_an_evening_workout_synced_overnight_wakes_no_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Ended 19:00, synced 02:10: no "past your bedtime", no cooldown three hours late;
    the protein reminder waits for 07:00."""
    out = replay(capsys, "sync-overnight.jsonl")
    sent = [n for n in out.of("gen") if n["source_event_id"] == "eve"]
    assert [(n["rule"], n["due_at"]) for n in sent] == [("R8", "2026-03-03T07:00:00+01:00")]
    assert not [n for n in out.of("gen") if "past your" in n["message"]]


def test_an_early_workout_before_the_wake_time_gets_its_cooldown(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = replay(capsys, "early-riser.jsonl")
    assert kinds(out, "gen")[:2] == [
        ("R1", "cooldown_start", "06:42"),
        ("R1", "cooldown_done", "06:47"),
    ]
    assert not [n for n in out.of("gen") if "head to bed" in n["message"]]


# 2. the day, not one message


def test_r5_counts_from_the_latest_strength_session(capsys: pytest.CaptureFixture[str]) -> None:
    """Strength at 09:00 and 12:00, a key run at 15:00: the earliest time is 18:00, not 15:00."""
    r5 = replay(capsys, "two-strength-sessions.jsonl").one("end", "R5")
    assert r5["data"]["earliest_key_cardio_at"] == "2026-03-02T18:00:00+01:00"
    assert "only 3 h after strength" in r5["message"]


def test_r7_in_either_order_for_a_hard_class_and_zone_5_intervals(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """gen: a spin class at 9/10, then the leg day before it syncs late. hyp: zone-5
    intervals with no rpe just before squats in the same session (quadriceps, glute)."""
    out = replay(capsys, "hard-cardio-either-order.jsonl")
    assert "That class at 9/10" in out.one("gen", "R7")["message"]
    assert "zone 5" in out.one("hyp", "R7")["message"]
    assert out.one("hyp", "R3")  # squats on quadriceps and glutes are a leg day
    # the leg day synced after the class joins the class's session: one cooldown, not two
    assert len(out.of("gen", "R1", "cooldown_start")) == 1


def test_r6_reads_hours_across_midnight_not_calendar_days(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """owl: a run 25 min after a lift that ended 23:40 is warned about; hyb_adv: a run 13 h
    after an evening lift, the next morning, is not."""
    out = replay(capsys, "across-midnight.jsonl")
    assert "rest between the lift and the run" in out.one("owl", "R6")["message"]
    assert out.of("hyb_adv", "R6") == []


# 3. one voice: covered by test_simulate.test_leg_day_for_each_goal (R4, R5, R6 silence R13)


# 4. words at delivery


def test_a_deferred_nudge_is_worded_for_the_morning_it_arrives(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Leg day at 22:00 synced at 23:10, run planned for 07:30: at 07:00 the run is today's
    and the leg day yesterday's, and protein counts breakfast, not last night's dinner."""
    out = replay(capsys, "words-at-delivery.jsonl")
    r13 = out.one("gen", "R13")
    assert r13["due_at"] == "2026-03-03T07:00:00+01:00"
    assert "planned for 07:30" in r13["message"]
    assert "tomorrow" not in r13["message"]
    assert "yesterday's leg day" in r13["message"]
    protein = out.one("gen", "R8")
    assert "You've logged 25 g so far today" in protein["message"]
    assert protein["data"]["protein_remaining_g"] == 103


# 5. dedupe per kind of message


def test_a_visit_id_shared_by_check_in_and_checkout_keeps_the_visit(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An NFC tag sends the same id on arrival and departure; a protein log reuses it too.
    Only the checkout sent twice is a redelivery."""
    out = replay(capsys, "shared-ids.jsonl")
    assert out.err == ""
    assert len(out.of("gen", "R1", "cooldown_start")) == 1
    assert out.one("gen", "R1", "cooldown_start")["source_event_id"] == "tag-7:visit"
    assert out.one("gen", "R8")["data"]["protein_remaining_g"] == 88  # the 40 g counted


# 6. gym visits


def test_a_geofence_flap_is_one_visit_and_a_drive_by_is_none(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Out at 17:40 and back in at 17:42: one visit to 18:30, one cooldown, after the
    10-minute rejoin window. A 6-minute visit (hyp) is no workout."""
    out = replay(capsys, "geofence-flap.jsonl")
    (cooldown,) = out.of("gen", "R1", "cooldown_start")
    assert cooldown["due_at"] == "2026-03-02T18:40:00+01:00"
    assert [n for n in out.of("hyp") if n["rule"] != "R9"] == []


# 7. day starts


def test_a_start_before_the_wake_time_plans_the_coming_night(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The replay starts at 05:00: that day's wind-down and bedtime still go out, and the
    soreness advice waits for 07:00."""
    out = replay(capsys, "start-before-wake.jsonl")
    assert out.one("gen", "R11")["due_at"] == "2026-03-03T07:00:00+01:00"
    nights = [(n["kind"], n["due_at"]) for n in out.of("gen", "R9")]
    assert ("bedtime_winddown", "2026-03-03T22:15:00+01:00") in nights
    assert ("bedtime", "2026-03-03T22:45:00+01:00") in nights
