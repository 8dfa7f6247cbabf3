"""The words watches, gym apps and exercise databases use for muscles, foci and workouts.

Pure data and lookups, no I/O. Each table below is one source's own list, spelt as that
source writes it, mapped to the groups the rules read: RULES.md's six leg muscles (quads,
hamstrings, glutes, calves, adductors, hip flexors), `legs` and `full_body` (a region or a
whole-body session, which RULES.md counts as a leg day), and the groups that are not leg
muscles. README "What the world sends" says where each list comes from.

A name is read case-blind, with spaces, hyphens, underscores and camelCase alike, singular
or plural, Garmin's `left_`/`right_` dropped; then one slip of the keyboard (a letter
missing, extra, wrong or swapped, in a name of six letters or more) when it points at one
group only. A name still unknown is reported, and the workout is read without it.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Final, Literal

MuscleGroup = Literal[
    "quads", "hamstrings", "glutes", "calves", "adductors", "hip_flexors", "legs",
    "full_body", "chest", "back", "shoulders", "arms", "core", "neck", "feet", "cardio",
    "other",
]  # fmt: skip
# What makes a leg day (RULES.md: the six, or a focus on legs, lower or full body).
LEG_GROUPS: Final = frozenset(
    {"quads", "hamstrings", "glutes", "calves", "adductors", "hip_flexors", "legs", "full_body"}
)

# ---------------------------------------------------------------- muscle names, by source

# Garmin Connect's exercise library (connect.garmin.com/web-data/exercises/Exercises.json,
# primaryMuscles/secondaryMuscles) and its English display names (exercise_types.properties).
# Garmin shows HIPS as "Hip Flexors" and ABDUCTORS as "Hip Abductors" (gluteus medius and
# minimus: glutes). Its muscle picker groups: UPPER_BODY, ARMS, BACK, CORE, HIPS, LEGS.
GARMIN_CONNECT: Final[dict[str, MuscleGroup]] = {
    "QUADS": "quads", "HAMSTRINGS": "hamstrings", "GLUTES": "glutes", "CALVES": "calves",
    "ADDUCTORS": "adductors", "ABDUCTORS": "glutes", "HIPS": "hip_flexors",
    "LOWER_BACK": "back", "ABS": "core", "OBLIQUES": "core", "CHEST": "chest", "LATS": "back",
    "TRAPS": "back", "SHOULDERS": "shoulders", "BICEPS": "arms", "TRICEPS": "arms",
    "FOREARM": "arms",
    "Quads": "quads", "Hamstrings": "hamstrings", "Glutes": "glutes", "Calves": "calves",
    "Hip Adductors": "adductors", "Hip Abductors": "glutes", "Hip Flexors": "hip_flexors",
    "Lower Back": "back", "Abs": "core", "Obliques": "core", "Chest": "chest", "Lats": "back",
    "Traps": "back", "Shoulders": "shoulders", "Biceps": "arms", "Triceps": "arms",
    "Forearms": "arms",
    "UPPER_BODY": "other", "ARMS": "arms", "BACK": "back", "CORE": "core", "LEGS": "legs",
}  # fmt: skip

# The Garmin FIT profile (FIT SDK 21.218, Profile types) has no muscle type: its anatomical
# names are `body_location`'s (where a sensor sits), each also with a right_ twin, which
# some exporters pass on as the muscles of a set.
GARMIN_FIT_BODY_LOCATION: Final[dict[str, MuscleGroup]] = {
    "left_leg": "legs", "left_calf": "calves", "left_shin": "legs",
    "left_hamstring": "hamstrings", "left_quad": "quads", "left_glute": "glutes",
    "torso_back": "back", "left_lower_back": "back", "left_upper_back": "back",
    "torso_front": "core", "left_abdomen": "core", "left_chest": "chest", "left_arm": "arms",
    "left_shoulder": "shoulders", "left_bicep": "arms", "left_tricep": "arms",
    "left_brachioradialis": "arms", "left_forearm_extensors": "arms", "neck": "neck",
    "throat": "neck", "waist_mid_back": "back", "waist_front": "core", "waist_left": "core",
    "waist_right": "core",
}  # fmt: skip

# Hevy's public API, MuscleGroup (exercise templates' primary and secondary muscle groups).
HEVY: Final[dict[str, MuscleGroup]] = {
    "abdominals": "core", "shoulders": "shoulders", "biceps": "arms", "triceps": "arms",
    "forearms": "arms", "quadriceps": "quads", "hamstrings": "hamstrings", "calves": "calves",
    "glutes": "glutes", "abductors": "glutes", "adductors": "adductors", "lats": "back",
    "upper_back": "back", "traps": "back", "lower_back": "back", "chest": "chest",
    "cardio": "cardio", "neck": "neck", "full_body": "full_body", "other": "other",
}  # fmt: skip

# wger (wger/exercises/fixtures/muscles.json): each muscle's Latin `name` and English
# `name_en`; and its exercise categories (categories.json).
WGER: Final[dict[str, MuscleGroup]] = {
    "Biceps brachii": "arms", "Anterior deltoid": "shoulders", "Serratus anterior": "chest",
    "Pectoralis major": "chest", "Triceps brachii": "arms", "Rectus abdominis": "core",
    "Gastrocnemius": "calves", "Gluteus maximus": "glutes", "Trapezius": "back",
    "Quadriceps femoris": "quads", "Biceps femoris": "hamstrings",
    "Latissimus dorsi": "back", "Brachialis": "arms", "Obliquus externus abdominis": "core",
    "Soleus": "calves", "Erector spinae": "back",
    "Biceps": "arms", "Shoulders": "shoulders", "Chest": "chest", "Triceps": "arms",
    "Abs": "core", "Calves": "calves", "Glutes": "glutes", "Quads": "quads",
    "Hamstrings": "hamstrings", "Lats": "back", "Lower back": "back",
    "Arms": "arms", "Legs": "legs", "Back": "back", "Cardio": "cardio",
}  # fmt: skip

# free-exercise-db (schema.json, primaryMuscles/secondaryMuscles).
FREE_EXERCISE_DB: Final[dict[str, MuscleGroup]] = {
    "abdominals": "core", "abductors": "glutes", "adductors": "adductors", "biceps": "arms",
    "calves": "calves", "chest": "chest", "forearms": "arms", "glutes": "glutes",
    "hamstrings": "hamstrings", "lats": "back", "lower back": "back", "middle back": "back",
    "neck": "neck", "quadriceps": "quads", "shoulders": "shoulders", "traps": "back",
    "triceps": "arms",
}  # fmt: skip

# exercemus (exercises.json: muscles, and its muscle groups).
EXERCEMUS: Final[dict[str, MuscleGroup]] = {
    "forearms": "arms", "abductors": "glutes", "adductors": "adductors",
    "middle back": "back", "neck": "neck", "biceps": "arms", "shoulders": "shoulders",
    "serratus anterior": "chest", "chest": "chest", "triceps": "arms", "abs": "core",
    "calves": "calves", "glutes": "glutes", "traps": "back", "quads": "quads",
    "hamstrings": "hamstrings", "lats": "back", "brachialis": "arms", "obliques": "core",
    "soleus": "calves", "lower back": "back",
    "arms": "arms", "back": "back", "core": "core", "legs": "legs",
}  # fmt: skip

# ExerciseDB (exercisedb-api src/data/muscles.json and bodyparts.json).
EXERCISEDB: Final[dict[str, MuscleGroup]] = {
    "shins": "legs", "hands": "arms", "sternocleidomastoid": "neck", "soleus": "calves",
    "inner thighs": "adductors", "lower abs": "core", "grip muscles": "arms",
    "abdominals": "core", "wrist extensors": "arms", "wrist flexors": "arms",
    "latissimus dorsi": "back", "upper chest": "chest", "rotator cuff": "shoulders",
    "wrists": "arms", "groin": "adductors", "brachialis": "arms", "deltoids": "shoulders",
    "feet": "feet", "ankles": "feet", "trapezius": "back", "rear deltoids": "shoulders",
    "chest": "chest", "quadriceps": "quads", "back": "back", "core": "core",
    "shoulders": "shoulders", "ankle stabilizers": "feet", "rhomboids": "back",
    "obliques": "core", "lower back": "back", "hip flexors": "hip_flexors",
    "levator scapulae": "neck", "abductors": "glutes", "serratus anterior": "chest",
    "traps": "back", "forearms": "arms", "delts": "shoulders", "biceps": "arms",
    "upper back": "back", "spine": "back", "cardiovascular system": "cardio",
    "triceps": "arms", "adductors": "adductors", "hamstrings": "hamstrings",
    "glutes": "glutes", "pectorals": "chest", "calves": "calves", "lats": "back",
    "quads": "quads", "abs": "core",
    "neck": "neck", "lower arms": "arms", "cardio": "cardio", "upper arms": "arms",
    "lower legs": "legs", "upper legs": "legs", "waist": "core",
}  # fmt: skip

# RULES.md's own words, and the plain ones people write.
PLAIN: Final[dict[str, MuscleGroup]] = {
    "legs": "legs", "lower body": "legs", "full body": "full_body", "total body": "full_body",
    "hip flexors": "hip_flexors", "hips": "hip_flexors", "thighs": "legs", "pecs": "chest",
    "upper body": "other",
}  # fmt: skip

MUSCLE_SOURCES: Final[dict[str, dict[str, MuscleGroup]]] = {
    "Garmin Connect exercise library": GARMIN_CONNECT,
    "Garmin FIT profile (body_location)": GARMIN_FIT_BODY_LOCATION,
    "Hevy API (MuscleGroup)": HEVY,
    "wger (Latin and English)": WGER,
    "free-exercise-db": FREE_EXERCISE_DB,
    "exercemus": EXERCEMUS,
    "ExerciseDB": EXERCISEDB,
    "RULES.md and plain words": PLAIN,
}

# ---------------------------------------------------------------- reading a name

_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
_SEPARATORS = re.compile(r"[\s_\-./]+")
_SIDE = re.compile(r"^(left|right) ")


def normalize(name: str) -> str:
    """'Hip-Flexors', 'hip_flexors', 'hipFlexors', 'left_hip_flexors' -> 'hip flexors'."""
    words = _SEPARATORS.sub(" ", _CAMEL.sub(" ", name.strip())).strip().lower()
    return _SIDE.sub("", words)


def _forms(key: str) -> set[str]:
    """A name with its other number: 'calves'/'calf', 'quad'/'quads' ('soleus' stays)."""
    forms = {key}
    if key.endswith("ves"):
        forms.add(key[:-3] + "f")
    elif key.endswith("s") and not key.endswith(("us", "ss", "is")):
        forms.add(key[:-1])
    else:
        forms.add(key + "s")
    return forms


def _index() -> dict[str, MuscleGroup]:
    index: dict[str, MuscleGroup] = {}
    for table in MUSCLE_SOURCES.values():
        for name, group in table.items():
            key = normalize(name)
            index[key] = group  # the sources agree on every name they share (tested)
    for key, group in list(index.items()):
        for form in _forms(key):
            index.setdefault(form, group)
    return index


MUSCLES: Final[dict[str, MuscleGroup]] = _index()


@dataclass(frozen=True)
class Reading:
    """What a name was read as: `group` None when it could not be placed."""

    given: str
    group: MuscleGroup | None
    read_as: str | None = None  # the known name a slip was read as

    @property
    def leg(self) -> bool:
        return self.group in LEG_GROUPS


def _one_slip(a: str, b: str) -> bool:
    """Whether `a` and `b` differ by one edit: a letter missing, extra, wrong or two
    neighbours swapped (Damerau-Levenshtein distance 1)."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        i, j = diff[0], diff[-1]
        return len(diff) == 2 and j == i + 1 and a[i] == b[j] and a[j] == b[i]
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    i = next((k for k in range(len(short)) if short[k] != long_[k]), len(short))
    return short[i:] == long_[i + 1 :]


@functools.lru_cache(maxsize=4096)
def read_muscle(name: str) -> Reading:
    """A muscle or muscle-group name as some device or app wrote it."""
    key = normalize(name)
    if key in MUSCLES:
        return Reading(name, MUSCLES[key])
    if len(key) >= 6:
        near = {k: g for k, g in MUSCLES.items() if len(k) >= 5 and _one_slip(key, k)}
        if near and len(set(near.values())) == 1:
            read_as = min(near)
            return Reading(name, near[read_as], read_as)
    return Reading(name, None)


def is_leg_muscle(name: str) -> bool:
    return read_muscle(name).leg


# ---------------------------------------------------------------- focus and kind

Focus = Literal["legs", "lower", "upper", "push", "pull", "full", "core"]

FOCI: Final[dict[str, Focus]] = {
    "legs": "legs", "leg": "legs", "leg day": "legs", "lower": "lower", "lower body": "lower",
    "upper": "upper", "upper body": "upper", "push": "push", "pull": "pull", "full": "full",
    "full body": "full", "total body": "full", "whole body": "full", "core": "core",
    "abs": "core",
}  # fmt: skip


def read_focus(name: str) -> Focus | None:
    """A session's focus as people and apps write it; None when it is no focus we know."""
    return FOCI.get(normalize(name))


WorkoutKind = Literal["strength", "cardio", "mixed", "class", "sport"]

# Workout types: the contract's own words; the Garmin FIT profile's `sport` and `sub_sport`
# names (FIT SDK 21.218) that are workouts; Apple Health's workout types as Health Auto
# Export names them (its documented export format); and common plain words. A sport the
# rules do not read as strength or cardio is `sport` (a cooldown and sleep still apply).
KINDS: Final[dict[str, WorkoutKind]] = {
    # the contract
    "strength": "strength", "cardio": "cardio", "mixed": "mixed", "class": "class",
    "sport": "sport",
    # FIT sport
    "running": "cardio", "cycling": "cardio", "swimming": "cardio", "rowing": "cardio",
    "walking": "cardio", "hiking": "cardio", "cross country skiing": "cardio",
    "e biking": "cardio", "floor climbing": "cardio", "inline skating": "cardio",
    "ice skating": "cardio", "jump rope": "cardio", "kayaking": "cardio",
    "canoeing": "cardio", "paddling": "cardio", "stand up paddleboarding": "cardio",
    "snowshoeing": "cardio", "mountaineering": "cardio", "wheelchair push run": "cardio",
    "wheelchair push walk": "cardio", "hiit": "class", "dance": "class", "mobility": "class",
    "boxing": "sport", "mixed martial arts": "sport", "soccer": "sport",
    "basketball": "sport", "tennis": "sport", "volleyball": "sport",
    "american football": "sport", "rugby": "sport", "hockey": "sport", "lacrosse": "sport",
    "cricket": "sport", "baseball": "sport", "racket": "sport", "team sport": "sport",
    "rock climbing": "sport", "alpine skiing": "sport", "snowboarding": "sport",
    "surfing": "sport", "golf": "sport", "disc golf": "sport", "water sport": "sport",
    "winter sport": "sport", "multisport": "mixed",
    # FIT sub_sport
    "strength training": "strength", "cardio training": "cardio", "indoor running": "cardio",
    "treadmill": "cardio", "trail": "cardio", "indoor cycling": "cardio", "spin": "class",
    "road": "cardio", "gravel cycling": "cardio", "indoor rowing": "cardio",
    "elliptical": "cardio", "stair climbing": "cardio", "lap swimming": "cardio",
    "open water": "cardio", "speed walking": "cardio", "indoor walking": "cardio",
    "rucking": "cardio", "yoga": "class", "pilates": "class", "flexibility training": "class",
    "tabata": "class", "emom": "class", "amrap": "class", "obstacle": "mixed",
    "bouldering": "sport", "indoor climbing": "sport", "padel": "sport",
    "pickleball": "sport", "squash": "sport", "badminton": "sport", "table tennis": "sport",
    # Apple Health (Health Auto Export)
    "traditional strength training": "strength", "functional strength training": "strength",
    "core training": "strength", "outdoor run": "cardio", "indoor run": "cardio",
    "outdoor cycle": "cardio", "indoor cycle": "cardio", "pool swim": "cardio",
    "open water swim": "cardio", "stair stepper": "cardio",
    "high intensity interval training": "class", "cross training": "class",
    "mixed cardio": "class", "cardio dance": "class", "kickboxing": "class",
    "barre": "class", "spinning": "class", "climbing": "sport", "martial arts": "sport",
    # plain words
    "run": "cardio", "ride": "cardio", "bike": "cardio", "swim": "cardio", "row": "cardio",
    "walk": "cardio", "hike": "cardio", "weights": "strength", "weight training": "strength",
    "weightlifting": "strength", "lifting": "strength", "powerlifting": "strength",
    "olympic weightlifting": "strength", "calisthenics": "strength", "crossfit": "mixed",
    "circuit": "mixed", "hybrid": "mixed",
}  # fmt: skip


def read_kind(name: str) -> WorkoutKind | None:
    """A workout's kind as the contract, a watch or an app names it; None when unknown."""
    return KINDS.get(normalize(name))
