"""Apple Health workouts from Health Auto Export (iOS), on `<base>/<user>/workout/
health_auto_export` (CONTRACT.md addition): the app's JSON export, turned into one
`workout/completed` body per workout.

The shape is the app's documented "JSON Export Format", workouts version 2
(help.healthyapps.dev/en/health-auto-export/export-format/workouts): `{"data": {"workouts":
[{"id", "name", "start", "end", "duration", "intensity": {"qty", "units": "MET"},
"heartRate": {"avg": {"qty"}, ...}, ...}]}}`, times as `yyyy-MM-dd HH:mm:ss Z`. Pure: no
clock, no I/O; the worker hands each body to the same parser as any workout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, get_args

from .models import Focus, Profile

# A first sync sends the whole history: only what ended this recently is today's news.
RECENT = timedelta(hours=36)
# An export with heart-rate series and routes is large; the workouts alone are small.
MAX_BYTES = 2 * 1024 * 1024
TOO_LARGE = (
    f"the export is over {MAX_BYTES // (1024 * 1024)} MiB: in the app's automation, leave "
    "out the heart rate and route data (the workouts alone are enough)"
)

# Apple's workout types as the app names them, lower-cased: what each is to the rules.
# Strength takes its focus from the weekly plan for the day; walking is no workout here
# (Apple records every walk); an unknown type is skipped.
KINDS: dict[str, tuple[str, str | None]] = {
    "traditional strength training": ("strength", None),
    "functional strength training": ("strength", None),
    "strength training": ("strength", None),
    "core training": ("strength", "core"),
    "running": ("cardio", None),
    "outdoor run": ("cardio", None),
    "indoor run": ("cardio", None),
    "cycling": ("cardio", None),
    "outdoor cycle": ("cardio", None),
    "indoor cycle": ("cardio", None),
    "rowing": ("cardio", None),
    "indoor rowing": ("cardio", None),
    "swimming": ("cardio", None),
    "pool swim": ("cardio", None),
    "open water swim": ("cardio", None),
    "elliptical": ("cardio", None),
    "stair stepper": ("cardio", None),
    "stair climbing": ("cardio", None),
    "hiking": ("cardio", None),
    "high intensity interval training": ("class", None),
    "hiit": ("class", None),
    "cross training": ("class", None),
    "mixed cardio": ("class", None),
    "cardio dance": ("class", None),
    "kickboxing": ("class", None),
    "barre": ("class", None),
    "pilates": ("class", None),
    "yoga": ("class", None),
    "spinning": ("class", None),
    "soccer": ("sport", None),
    "basketball": ("sport", None),
    "tennis": ("sport", None),
    "volleyball": ("sport", None),
    "american football": ("sport", None),
    "rugby": ("sport", None),
    "hockey": ("sport", None),
    "squash": ("sport", None),
    "badminton": ("sport", None),
    "climbing": ("sport", None),
    "martial arts": ("sport", None),
    "boxing": ("sport", None),
}


@dataclass(frozen=True)
class Skipped:
    workout_id: str
    why: str


class FormatError(ValueError):
    """The message is not the app's export (said on the user's error topic)."""


def _time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError("not a time")
    try:  # the app's own format, yyyy-MM-dd HH:mm:ss Z
        return datetime.strptime(value, "%Y-%m-%d %H:%M:%S %z")
    except ValueError:
        pass
    t = datetime.fromisoformat(value)
    if t.tzinfo is None:
        raise ValueError("a time without its zone")
    return t


def _qty(obj: Any) -> float | None:
    if isinstance(obj, dict) and isinstance(obj.get("qty"), int | float):
        return float(obj["qty"])
    if isinstance(obj, int | float) and not isinstance(obj, bool):
        return float(obj)
    return None


def effort(workout: dict[str, Any], max_hr: int | None) -> tuple[float | None, int | None]:
    """(rpe, zone). Heart rate, when the person's maximum is known (their profile's
    `max_heart_rate`): the zone is the five-zone model of % of maximum (<60, 60-70, 70-80,
    80-90, >=90) and the RPE follows it; else the workout's MET (CDC: under 3 light, 3-6
    moderate, 6 and over vigorous) gives RPE 3, 5 or 7."""
    hr = workout.get("heartRate")
    avg = _qty(hr.get("avg")) if isinstance(hr, dict) else None
    if avg is None:
        avg = _qty(workout.get("avgHeartRate"))
    if avg is not None and max_hr:
        pct = avg / max_hr
        zone = 1 if pct < 0.6 else 2 if pct < 0.7 else 3 if pct < 0.8 else 4 if pct < 0.9 else 5
        return {1: 3.0, 2: 4.0, 3: 6.0, 4: 8.0, 5: 9.0}[zone], zone
    met = _qty(workout.get("intensity"))
    if met is not None:
        return (3.0 if met < 3 else 5.0 if met < 6 else 7.0), None
    return None, None


def workouts(
    body: bytes, profile: Profile, received_at: datetime
) -> tuple[list[dict[str, Any]], list[Skipped]]:
    """The `workout/completed` bodies in an export, and the workouts skipped with why.
    Raises FormatError when the message is not an export at all."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormatError(f"not Health Auto Export JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("data"), dict):
        data = data["data"]
    items = data.get("workouts") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise FormatError(
            'not a Health Auto Export workouts export: no "data": {"workouts": [...]}'
        )
    out: list[dict[str, Any]] = []
    skipped: list[Skipped] = []
    for w in items:
        if not isinstance(w, dict) or not isinstance(w.get("id"), str) or not w["id"]:
            skipped.append(Skipped("?", "a workout without an id"))
            continue
        wid = w["id"][:100]
        kind = KINDS.get(str(w.get("name", "")).strip().lower())
        if kind is None:
            skipped.append(
                Skipped(wid, f"workout type {str(w.get('name'))[:40]!r} is not one we map")
            )
            continue
        try:
            end = (
                _time(w["end"])
                if "end" in w
                else _time(w["start"]) + timedelta(seconds=float(w["duration"]))
            )
        except (KeyError, TypeError, ValueError):
            skipped.append(Skipped(wid, "no readable end (or start and duration)"))
            continue
        if end < received_at - RECENT:
            skipped.append(Skipped(wid, "it ended more than 36 hours ago"))
            continue
        workout_kind, focus = kind
        if workout_kind == "strength" and focus is None:
            planned = profile.plan_for(end.astimezone(profile.tz).weekday())
            focus = planned if planned in get_args(Focus) else None
        rpe, zone = effort(w, profile.max_heart_rate)
        event: dict[str, Any] = {
            "event_id": f"hae:{wid}",
            "ended_at": end.isoformat(),
            "kind": workout_kind,
        }
        if focus is not None:
            event["focus"] = focus
        duration = _qty(w.get("duration"))
        if duration is not None and 0 < duration <= 24 * 3600:
            event["duration_min"] = round(duration / 60, 1)
        if rpe is not None:
            event["rpe"] = rpe
        if zone is not None:
            event["zone"] = zone
        out.append(event)
    return out, skipped
