"""Muscle, focus and workout-kind names as real sources write them (vocabulary.py).

The expectations come from the sources' own groupings, not from our tables: exercemus files
its muscles under legs, calves, arms, back, chest, core and shoulders; ExerciseDB files each
target muscle under a body part (upper legs, lower legs, ...); Garmin Connect shows each of
its muscle ids under an English name; wger gives each muscle a Latin and an English name.
Every spelling those sources use must land on the same side of RULES.md's leg-day line as
the source puts it. The typos are Garmin's own (`ADDDUCTORS` in its Pilates library).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from recovery_coach.contract.inbound import Accepted, parse
from recovery_coach.core import vocabulary
from recovery_coach.core.models import WorkoutCompleted
from recovery_coach.core.vocabulary import LEG_GROUPS, read_focus, read_kind, read_muscle

from tests.support.core_builders import profile, run, t

# exercemus/exercises, exercises.json "muscle_groups" (its own grouping of its muscles).
EXERCEMUS_GROUPS = {
    "arms": ["forearms", "biceps", "triceps", "brachialis"],
    "back": ["neck", "traps", "lats", "lower back", "middle back"],
    "calves": ["calves", "soleus"],
    "chest": ["chest", "serratus anterior"],
    "core": ["abs", "obliques"],
    "legs": ["abductors", "adductors", "quads", "hamstrings", "glutes"],
    "shoulders": ["shoulders"],
}
EXERCEMUS_LEG_GROUPS = {"legs", "calves"}

# ExerciseDB exercisedb-api, src/data/exercises.json: every (target muscle, body part) pair.
EXERCISEDB_TARGETS = [
    ("abductors", "upper legs"), ("abs", "waist"), ("adductors", "upper legs"),
    ("biceps", "upper arms"), ("calves", "lower legs"), ("delts", "shoulders"),
    ("forearms", "lower arms"), ("glutes", "upper legs"), ("hamstrings", "upper legs"),
    ("lats", "back"), ("levator scapulae", "neck"), ("pectorals", "chest"),
    ("quads", "upper legs"), ("serratus anterior", "chest"), ("spine", "back"),
    ("traps", "back"), ("traps", "neck"), ("triceps", "upper arms"), ("upper back", "back"),
]  # fmt: skip
EXERCISEDB_LEG_PARTS = {"upper legs", "lower legs"}

# Garmin Connect: the muscle ids of its exercise library and their English display names
# (exercise_types.properties, muscle_type_*): both spellings are sent.
GARMIN_DISPLAY = {
    "QUADS": "Quads", "HAMSTRINGS": "Hamstrings", "GLUTES": "Glutes", "CALVES": "Calves",
    "ADDUCTORS": "Hip Adductors", "ABDUCTORS": "Hip Abductors", "HIPS": "Hip Flexors",
    "LOWER_BACK": "Lower Back", "ABS": "Abs", "OBLIQUES": "Obliques", "CHEST": "Chest",
    "LATS": "Lats", "TRAPS": "Traps", "SHOULDERS": "Shoulders", "BICEPS": "Biceps",
    "TRICEPS": "Triceps", "FOREARM": "Forearms",
}  # fmt: skip

# wger muscles.json: (Latin name, English name) where wger gives both.
WGER_PAIRS = [
    ("Biceps brachii", "Biceps"), ("Anterior deltoid", "Shoulders"),
    ("Pectoralis major", "Chest"), ("Triceps brachii", "Triceps"),
    ("Rectus abdominis", "Abs"), ("Gastrocnemius", "Calves"), ("Gluteus maximus", "Glutes"),
    ("Quadriceps femoris", "Quads"), ("Biceps femoris", "Hamstrings"),
    ("Latissimus dorsi", "Lats"), ("Erector spinae", "Lower back"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "group"),
    [(m, g) for g, ms in EXERCEMUS_GROUPS.items() for m in ms],
    ids=lambda v: str(v),
)
def test_exercemus_groups_land_on_the_same_side_of_leg_day(name: str, group: str) -> None:
    assert read_muscle(name).leg == (group in EXERCEMUS_LEG_GROUPS)


@pytest.mark.parametrize(("name", "part"), EXERCISEDB_TARGETS, ids=lambda v: str(v))
def test_exercisedb_targets_land_on_the_side_of_their_body_part(name: str, part: str) -> None:
    assert read_muscle(name).leg == (part in EXERCISEDB_LEG_PARTS)
    assert read_muscle(part).leg == (part in EXERCISEDB_LEG_PARTS)


@pytest.mark.parametrize(("muscle_id", "shown"), GARMIN_DISPLAY.items())
def test_garmin_ids_and_their_display_names_read_alike(muscle_id: str, shown: str) -> None:
    by_id, by_name = read_muscle(muscle_id), read_muscle(shown)
    assert by_id.group is not None
    assert by_id.group == by_name.group


@pytest.mark.parametrize(("latin", "english"), WGER_PAIRS)
def test_wger_latin_and_english_names_read_alike(latin: str, english: str) -> None:
    assert read_muscle(latin).group is not None
    assert read_muscle(latin).group == read_muscle(english).group


@pytest.mark.parametrize(
    ("name", "group"),
    [
        # RULES.md's six, as each source spells them
        ("QUADS", "quads"), ("quadriceps", "quads"), ("Quadriceps femoris", "quads"),
        ("left_quad", "quads"), ("rightQuad", "quads"), ("Biceps femoris", "hamstrings"),
        ("Gluteus maximus", "glutes"), ("Hip Abductors", "glutes"), ("Soleus", "calves"),
        ("Gastrocnemius", "calves"), ("calf", "calves"), ("inner thighs", "adductors"),
        ("groin", "adductors"), ("Hip Flexors", "hip_flexors"), ("HIPS", "hip_flexors"),
        ("hip-flexor", "hip_flexors"),
        # plain words and regions (RULES.md: legs, lower body, full body)
        ("legs", "legs"), ("Legs", "legs"), ("LEGS", "legs"), ("leg", "legs"),
        ("lower body", "legs"), ("upper legs", "legs"), ("lower legs", "legs"),
        ("full_body", "full_body"), ("Full Body", "full_body"),
        # not leg muscles; "biceps" alone is the arm's
        ("biceps", "arms"), ("Biceps brachii", "arms"), ("lower_back", "back"),
        ("Lower Back", "back"), ("Erector spinae", "back"), ("FOREARM", "arms"),
        ("abdominals", "core"), ("pectorals", "chest"), ("cardio", "cardio"),
        ("feet", "feet"), ("other", "other"),
    ],
)  # fmt: skip
def test_names_as_sources_write_them(name: str, group: str) -> None:
    assert read_muscle(name).group == group


def test_garmins_own_typo_is_read_and_said_as_what_it_was_read_as() -> None:
    reading = read_muscle("ADDDUCTORS")  # Garmin Connect Pilates.json, POSE/BOWED_HALF_MOON
    assert (reading.group, reading.read_as) == ("adductors", "adductors")


@pytest.mark.parametrize("name", ["kwads", "lgs", "xyz", "hammys", "abductorz x"])
def test_names_no_source_uses_are_not_guessed(name: str) -> None:
    assert read_muscle(name).group is None


# A slip of the keyboard in a known name never lands it in another group.
known = sorted(k for k in vocabulary.MUSCLES if len(k) >= 6)


@st.composite
def slipped(draw: st.DrawFn) -> tuple[str, str]:
    name = draw(st.sampled_from(known))
    i = draw(st.integers(0, len(name) - 1))
    letter = draw(st.sampled_from("abcdefghijklmnopqrstuvwxyz"))
    how = draw(st.sampled_from(["drop", "add", "swap", "replace"]))
    if how == "drop":
        out = name[:i] + name[i + 1 :]
    elif how == "add":
        out = name[:i] + letter + name[i:]
    elif how == "swap" and i < len(name) - 1:
        out = name[:i] + name[i + 1] + name[i] + name[i + 2 :]
    else:
        out = name[:i] + letter + name[i + 1 :]
    return name, out


@given(slipped())
def test_one_slip_reads_as_the_name_or_not_at_all(case: tuple[str, str]) -> None:
    name, typed = case
    reading = read_muscle(typed)
    if vocabulary.normalize(typed) in vocabulary.MUSCLES:
        return  # the slip made another real name: that name it is
    assert reading.group in (None, vocabulary.MUSCLES[name])


def test_every_source_agrees_on_the_names_they_share() -> None:
    seen: dict[str, tuple[str, str]] = {}
    for source, table in vocabulary.MUSCLE_SOURCES.items():
        for name, group in table.items():
            key = vocabulary.normalize(name)
            if key in seen:
                assert seen[key][1] == group, (key, seen[key][0], source)
            seen[key] = (source, group)


# ------------------------------------------------------------------ focus and kind


@pytest.mark.parametrize(
    ("name", "focus"),
    [("legs", "legs"), ("Leg", "legs"), ("Lower Body", "lower"), ("upper_body", "upper"),
     ("FULL BODY", "full"), ("total-body", "full"), ("Core", "core"), ("chest", None)],
)  # fmt: skip
def test_focus_words(name: str, focus: str | None) -> None:
    assert read_focus(name) == focus


# Garmin FIT profile (FIT SDK 21.218) sports that are no workout for this service.
NOT_WORKOUTS = {
    "generic", "transition", "fitness_equipment", "training", "flying", "motorcycling",
    "boating", "driving", "hang_gliding", "horseback_riding", "hunting", "fishing",
    "sailing", "sky_diving", "snowmobiling", "wakeboarding", "water_skiing", "rafting",
    "windsurfing", "kitesurfing", "tactical", "jumpmaster", "diving", "shooting",
    "meditation", "video_gaming", "motor_sports", "geocaching", "grinding", "archery",
    "snorkeling", "wakesurfing", "water_tubing", "pool_apnea", "para_sport", "all",
}  # fmt: skip


def test_every_fit_sport_is_a_kind_or_no_workout() -> None:
    """Every sport of the FIT profile (read from Garmin's own SDK) is either read as a kind
    of workout or deliberately not one: a new sport in the profile fails here."""
    from garmin_fit_sdk.profile import Profile as FitProfile

    sports = set(FitProfile["types"]["sport"].values())
    unread = sorted(s for s in sports - NOT_WORKOUTS if read_kind(s) is None)
    assert unread == []


@pytest.mark.parametrize(
    ("name", "kind"),
    [("Strength", "strength"), ("strength_training", "strength"), ("RUNNING", "cardio"),
     ("indoor_cycling", "cardio"), ("Traditional Strength Training", "strength"),
     ("HIIT", "class"), ("yoga", "class"), ("soccer", "sport"), ("mixed", "mixed")],
)  # fmt: skip
def test_kind_words(name: str, kind: str) -> None:
    assert read_kind(name) == kind


# ------------------------------------------------------------------ at the edge

NOW = t("2026-03-02T18:05")


def parse_workout(**fields: Any) -> Accepted:
    body = {"event_id": "w1", "ended_at": "2026-03-02T18:00:00+01:00", "kind": "strength"}
    body.update(fields)
    parsed = parse(
        "recovery_coach/alex/workout/completed",
        json.dumps(body),
        base="recovery_coach",
        users={"alex"},
        received_at=NOW,
    )
    assert isinstance(parsed, Accepted), parsed
    return parsed


def leg_day_advice(parsed: Accepted) -> bool:
    """Whether the workout, as parsed, gets R2's leg-day advice."""
    assert isinstance(parsed.event, WorkoutCompleted)
    return "R2" in run(profile(), [(parsed.event, NOW)]).rules()


@pytest.mark.parametrize(
    ("muscles", "leg_day"),
    [
        (["legs"], True),
        (["QUADS", "GLUTES"], True),
        (["Quadriceps femoris"], True),
        (["hamstrigns"], True),  # one slip
        (["chest", "triceps"], False),
        (["Biceps brachii"], False),
    ],
)
def test_real_names_make_or_do_not_make_a_leg_day(muscles: list[str], leg_day: bool) -> None:
    parsed = parse_workout(muscle_groups=muscles)
    assert parsed.warnings == ()
    assert leg_day_advice(parsed) == leg_day


def test_an_unknown_name_is_a_warning_naming_it_and_the_workout_stands() -> None:
    parsed = parse_workout(muscle_groups=["quads", "zygomaticus x"], focus=None)
    (warning,) = parsed.warned()
    assert warning.level == "warning"
    assert "'zygomaticus x'" in warning.reason
    assert warning.payload()["level"] == "warning"
    assert warning.event_id == "w1"
    assert leg_day_advice(parsed)  # the quads still make it a leg day


def test_only_unknown_names_leave_a_workout_that_is_not_a_leg_day() -> None:
    parsed = parse_workout(muscle_groups=["blorp"], focus=None)
    assert len(parsed.warnings) == 1
    assert not leg_day_advice(parsed)
    assert isinstance(parsed.event, WorkoutCompleted)
    assert parsed.event.workout.muscle_groups == ()


def test_an_unknown_kind_or_focus_is_read_past_with_a_warning() -> None:
    parsed = parse_workout(kind="underwater rugby", focus="eyebrows")
    assert isinstance(parsed.event, WorkoutCompleted)
    assert (parsed.event.workout.kind, parsed.event.workout.focus) == ("sport", None)
    reasons = " ".join(parsed.warnings)
    assert "'underwater rugby'" in reasons
    assert "'eyebrows'" in reasons


def test_a_workout_named_in_the_words_of_an_app_gets_its_cooldown() -> None:
    """The whole workout stands: cooldown and sleep advice too (the rules run on it)."""
    parsed = parse_workout(kind="Strength Training", focus="Lower Body", muscle_groups=["xx"])
    assert isinstance(parsed.event, WorkoutCompleted)
    r = run(profile(), [(parsed.event, NOW)])
    assert {"R1", "R2", "R9"} <= r.rules()


def test_same_words_for_the_same_workout_in_any_case() -> None:
    a = parse_workout(muscle_groups=["Hip Flexors", "QUADS"]).event
    b = parse_workout(muscle_groups=["hip_flexors", "quads"]).event
    assert isinstance(a, WorkoutCompleted)
    assert isinstance(b, WorkoutCompleted)
    assert a.workout.muscle_groups == b.workout.muscle_groups == ("hip_flexors", "quads")
    assert set(a.workout.muscle_groups) <= LEG_GROUPS
