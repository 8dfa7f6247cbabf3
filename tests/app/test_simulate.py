"""`recovery-coach simulate` end to end, on event files under tests/events/.

Each expectation is worked out from RULES.md: wake 07:00 and 8 h give bedtime 22:45
(wind-down 22:15); 80 kg x 1.6 g/kg = 128 g, 70 kg x 1.6 = 112 g; the protein reminder
comes 60 min after the workout, the cooldown-done nudge 5 min after it.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from recovery_coach.cli import main
from recovery_coach.contract.config import load_config
from recovery_coach.contract.discovery import NUDGE_KINDS
from recovery_coach.core.local_time import in_sleep_window

from tests.support.core_builders import sentences
from tests.support.replay_output import Output

HERE = Path(__file__).parents[1]  # tests/
EVENTS = HERE / "events"
CONFIGS = HERE / "configs"
CONTRACT_FIELDS = {
    "nudge_id", "user", "rule", "kind", "title", "message", "speech", "due_at", "expires_at",
    "source_event_id", "evidence", "data",
}  # fmt: skip


def simulate(capsys: pytest.CaptureFixture[str], config: str, events: str) -> Output:
    code = main(["simulate", "--config", str(CONFIGS / config), str(EVENTS / events)])
    out, err = capsys.readouterr()
    assert code == 0, err
    return Output(out, err)


def at(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


ALL = [
    ("goals.yaml", "leg-day-every-goal.jsonl"),
    ("goals.yaml", "upper-body-day.jsonl"),
    ("goals.yaml", "duplicate-delivery.jsonl"),
    ("goals.yaml", "bad-inputs.jsonl"),
    ("goals.yaml", "late-night-workout.jsonl"),
    ("dst.yaml", "dst-berlin-spring.jsonl"),
    ("dst.yaml", "dst-berlin-autumn.jsonl"),
    ("dst.yaml", "dst-newyork-spring.jsonl"),
    ("dst.yaml", "dst-newyork-autumn.jsonl"),
    ("plan.yaml", "checkout-weekly-plan.jsonl"),
]


# ------------------------------------------------------------------ every file


@pytest.mark.parametrize(("config", "events"), ALL, ids=[e for _, e in ALL])
def test_output_is_deterministic_ordered_and_follows_the_contract(
    capsys: pytest.CaptureFixture[str], config: str, events: str
) -> None:
    first = simulate(capsys, config, events)
    second = simulate(capsys, config, events)
    assert (first.out, first.err) == (second.out, second.err)  # byte-identical
    nudges = first.nudges
    assert nudges
    due = [at(n["due_at"]) for n in nudges]
    assert due == sorted(due)
    profiles = load_config(CONFIGS / config).profiles()
    for n in nudges:
        assert set(n) == CONTRACT_FIELDS
        assert n["kind"] in NUDGE_KINDS
        assert n["nudge_id"].startswith(f"{n['kind']}-")
        assert n["evidence"]
        assert at(n["due_at"]).tzinfo is not None
        assert n["expires_at"] is None or at(n["expires_at"]) > at(n["due_at"])
        assert len(n["speech"]) <= 120, n["speech"]
        assert 1 <= sentences(n["speech"]) <= 2, n["speech"]
        if n["kind"] != "bedtime":
            assert not in_sleep_window(profiles[n["user"]], at(n["due_at"])), n
    assert len({n["nudge_id"] for n in nudges}) == len(nudges)  # nothing sent twice


def test_never_in_the_past(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A workout reported 20 min late: its nudges are due when it arrives, not before."""
    late = tmp_path / "late-report.jsonl"
    line = {
        "topic": "recovery_coach/gen/workout/completed",
        "payload": {"event_id": "w", "ended_at": "2026-03-02T18:00:00+01:00", "kind": "strength"},
        "received_at": "2026-03-02T18:20:00+01:00",
    }
    late.write_text(json.dumps(line) + "\n")
    out = simulate(capsys, "goals.yaml", str(late))  # an absolute path stays as it is
    assert all(at(n["due_at"]) >= at("2026-03-02T18:20:00+01:00") for n in out.nudges)
    assert out.one("gen", "R1", "cooldown_start")["due_at"] == "2026-03-02T18:20:00+01:00"
    assert out.one("gen", "R8")["due_at"] == "2026-03-02T19:00:00+01:00"  # ended_at + 60 min


# ------------------------------------------------------------------ leg day per goal

EVERY_LEG_DAY = ["R1", "R2", "R8"]
PER_GOAL = [
    # (user, extra rules, what it must say). The run is planned for today, so R13 urges it
    # soon, except where R4, R5 or R6 (not advanced) advise keeping it apart (one voice).
    ("hyp", ["R3", "R13"], "does not compromise muscle size"),
    ("str", ["R3", "R13"], "does not compromise maximal strength"),
    ("end", ["R5"], "move it to 18:00 or later"),
    ("pow", ["R4"], "put the cardio on another day"),
    ("hyb_adv", ["R6", "R13"], "good race simulation"),
    ("hyb_beg", ["R6"], "rest between the lift and the run"),
    ("gen", ["R7", "R13"], "planned at 8/10, within 3 hours of leg day"),
]


@pytest.mark.parametrize(("user", "extra", "says"), PER_GOAL, ids=[p[0] for p in PER_GOAL])
def test_leg_day_for_each_goal(
    capsys: pytest.CaptureFixture[str], user: str, extra: list[str], says: str
) -> None:
    """Leg day ends 12:00, a run is planned 12:30 (key, 5/10; 8/10 for gen)."""
    out = simulate(capsys, "goals.yaml", "leg-day-every-goal.jsonl")
    assert out.rules(user, f"{user}-legs") == sorted(
        EVERY_LEG_DAY + extra, key=lambda r: int(r[1:])
    )
    text = " ".join(n["message"] for n in out.of(user))
    assert says in text
    assert out.one(user, "R1", "cooldown_start")["due_at"] == "2026-03-02T12:00:00+01:00"
    assert out.one(user, "R1", "cooldown_done")["due_at"] == "2026-03-02T12:05:00+01:00"
    protein = out.one(user, "R8")
    assert protein["due_at"] == "2026-03-02T13:00:00+01:00"
    assert protein["data"]["protein_target_g"] == 128
    assert "Aim for about 128 g of protein today: 80 kg x 1.6 g/kg" in protein["message"]
    assert out.one(user, "R2")["data"]["rpe_cap"] == 6
    bedtimes = [n["due_at"] for n in out.of(user, "R9", "bedtime")]
    assert bedtimes[0] == "2026-03-02T22:45:00+01:00"


def test_endurance_gets_the_earliest_clock_time(capsys: pytest.CaptureFixture[str]) -> None:
    r5 = simulate(capsys, "goals.yaml", "leg-day-every-goal.jsonl").one("end", "R5")
    assert r5["data"]["earliest_key_cardio_at"] == "2026-03-02T18:00:00+01:00"  # 12:00 + 6 h
    assert r5["kind"] == "cardio_warning"


def test_upper_body_day(capsys: pytest.CaptureFixture[str]) -> None:
    """No leg day: cooldown, protein and bedtime only; nothing about cardio after legs."""
    out = simulate(capsys, "goals.yaml", "upper-body-day.jsonl")
    assert out.rules("gen", "gen-upper") == ["R1", "R8"]
    assert out.one("gen", "R8")["due_at"] == "2026-03-02T19:00:00+01:00"
    assert {n["rule"] for n in out.of("gen")} == {"R1", "R8", "R9"}


def test_duplicate_delivery_adds_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    """The same workout twice and the same protein log twice: each counted once, no error."""
    out = simulate(capsys, "goals.yaml", "duplicate-delivery.jsonl")
    assert out.err == ""
    assert len(out.of("gen", "R1", "cooldown_start")) == 1
    assert len(out.of("gen", "R2")) == 1
    protein = out.one("gen", "R8")
    assert protein["data"]["protein_remaining_g"] == 88  # 128 - 40, not 128 - 80
    assert "You've logged 40 g so far today: about 88 g to go" in protein["message"]


def test_bad_inputs_go_to_stderr_one_error_object_a_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = simulate(capsys, "goals.yaml", "bad-inputs.jsonl")
    errors = out.errors
    assert all(set(e) == {"topic", "reason", "event_id"} for e in errors)
    assert all(e["reason"] for e in errors)
    reasons = [e["reason"] for e in errors]
    expected = [
        "line 1: not valid JSON",
        "line 2: colour is not a known key",
        "'bob' is not a configured user",
        "ended_at must include a time-zone offset",
        "the message is not valid JSON",
        "the limit is 65536 (64 KiB)",
        "the payload names user 'hyp' but was sent on gen's topic",
        "grams must be at most 500",
        "there is no recent nudge with id 'nope'",
    ]
    assert len(reasons) == len(expected)
    for reason, words in zip(reasons, expected, strict=True):
        assert words in reason
    ids = {e["event_id"] for e in errors} - {None}
    assert ids == {"naive", "s-mismatch", "too-much", "snooze-nothing"}
    # the one good line still gets its nudges; nothing refused reached the rules
    assert {n["source_event_id"] for n in out.nudges} - {"ok"} <= {
        f"night:2026-03-0{d}" for d in (3, 4)
    }
    assert out.of("gen", "R11") == []  # the refused soreness report gave no advice


def test_unreadable_config_or_file_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "none.jsonl"
    assert main(["simulate", "--config", str(CONFIGS / "goals.yaml"), str(missing)]) == 2
    assert "cannot read" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("users: {Bad: {}}\n")
    events = str(EVENTS / "upper-body-day.jsonl")
    assert main(["simulate", "--config", str(bad), events]) == 2
    assert "users.Bad" in capsys.readouterr().err


# ------------------------------------------------------------------ DST nights

DST = [
    # (file, user, bedtime that night, wind-down, the next night's bedtime)
    (
        "dst-berlin-spring.jsonl",
        "berlin",
        "2026-03-28T21:45:00+01:00",
        "2026-03-28T21:15:00+01:00",
        "2026-03-29T22:45:00+02:00",
    ),
    (
        "dst-berlin-autumn.jsonl",
        "berlin",
        "2026-10-24T23:45:00+02:00",
        "2026-10-24T23:15:00+02:00",
        "2026-10-25T22:45:00+01:00",
    ),
    (
        "dst-newyork-spring.jsonl",
        "nyc",
        "2026-03-07T21:45:00-05:00",
        "2026-03-07T21:15:00-05:00",
        "2026-03-08T22:45:00-04:00",
    ),
    (
        "dst-newyork-autumn.jsonl",
        "nyc",
        "2026-10-31T23:45:00-04:00",
        "2026-10-31T23:15:00-04:00",
        "2026-11-01T22:45:00-05:00",
    ),
]


@pytest.mark.parametrize(
    ("events", "user", "bed", "winddown", "next_bed"), DST, ids=[d[0] for d in DST]
)
def test_dst_nights_still_get_8_real_hours(
    capsys: pytest.CaptureFixture[str],
    events: str,
    user: str,
    bed: str,
    winddown: str,
    next_bed: str,
) -> None:
    """The night the clocks change, bedtime moves on the wall clock, not in real time."""
    out = simulate(capsys, "dst.yaml", events)
    beds = out.of(user, "R9", "bedtime")
    assert [b["due_at"] for b in beds[:2]] == [bed, next_bed]
    assert out.of(user, "R9", "bedtime_winddown")[0]["due_at"] == winddown
    first = beds[0]["data"]
    assert first["bedtime"] == bed
    assert at(first["wake_at"]) - at(bed) == timedelta(hours=8, minutes=15)
    assert at(first["wake_at"]).strftime("%H:%M") == "07:00"
    assert out.one(user, "R8")["data"]["protein_target_g"] == 112  # 70 kg x 1.6


# ------------------------------------------------------------------ late-night workout


def test_late_night_workout(capsys: pytest.CaptureFixture[str]) -> None:
    """Ends 23:30, inside the window (bedtime 22:45): a bedtime nudge at once, the rest waits.

    The cooldown is tied to the moment, so it is dropped (the one late nudge says to cool
    down, then sleep); protein is deferred to the 07:00 wake time.
    """
    out = simulate(capsys, "goals.yaml", "late-night-workout.jsonl")
    first = out.nudges[0]
    assert (first["rule"], first["kind"], first["due_at"]) == (
        "R9",
        "bedtime",
        "2026-03-02T23:30:00+01:00",
    )
    assert "past your 22:45 bedtime" in first["message"]
    assert "Cool down" in first["message"]
    assert out.of("gen", "R1") == []
    # R2 is about cardio in the few hours after the leg day: those pass in the night
    assert out.of("gen", "R2") == []
    assert out.one("gen", "R8")["due_at"] == "2026-03-03T07:00:00+01:00"
    assert next(n["due_at"] for n in out.of("gen", "R9", "bedtime")) == first["due_at"]


# ------------------------------------------------------------------ gym visits


def test_checkout_becomes_a_workout_from_the_weekly_plan(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Plan: Monday legs, Wednesday upper, Thursday nothing (-> full); Friday has a real workout."""
    out = simulate(capsys, "plan.yaml", "checkout-weekly-plan.jsonl")
    # Monday: legs from the plan -> a leg day; its nudges wait the 10-minute rejoin window
    assert out.rules("alex", "mon-out:visit") == ["R1", "R2", "R8"]
    assert out.of("alex", "R2")[0]["due_at"] == "2026-03-02T18:25:00+01:00"
    # Wednesday: upper -> no leg-day advice
    assert out.rules("alex", "wed-out:visit") == ["R1", "R8"]
    # Thursday: no plan -> full body, which is a leg day
    assert out.rules("alex", "thu-out:visit") == ["R1", "R2", "R8"]
    # Friday: the workout event during the visit wins; the checkout adds nothing
    assert out.rules("alex", "fri-out") == []
    assert out.rules("alex", "fri-upper") == ["R1", "R8"]


def test_the_readme_example_replays(capsys: pytest.CaptureFixture[str]) -> None:
    """config/example-events.jsonl: the README's walk-through stays as it describes."""
    root = HERE.parent / "config"
    assert (
        main(
            ["simulate", "--config", str(root / "example.yaml"), str(root / "example-events.jsonl")]
        )
        == 0
    )
    out = Output(*capsys.readouterr())
    # R5 says to move the key run, so R13 does not urge it soon (one voice)
    assert out.rules("alex", "w-2026-03-02-legs") == ["R1", "R2", "R5", "R7", "R8"]
    assert len(out.errors) == 2
