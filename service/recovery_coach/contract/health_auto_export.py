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

from recovery_coach.core import vocabulary
from recovery_coach.core.models import Focus, Profile

# A first sync sends the whole history: only what ended this recently is today's news.
RECENT = timedelta(hours=36)
# An export with heart-rate series and routes is large; the workouts alone are small.
MAX_BYTES = 2 * 1024 * 1024
TOO_LARGE = (
    f"the export is over {MAX_BYTES // (1024 * 1024)} MiB: in the app's automation, leave "
    "out the heart rate and route data (the workouts alone are enough)"
)

# Apple's workout types as the app names them are read by the vocabulary (vocabulary.KINDS
# holds them beside the watches' words). Strength takes its focus from the weekly plan for
# the day, but core training is core; walking is no workout here (Apple records every walk).
CORE_TYPES = frozenset({"core training"})

# Apple records every walk: skipping one is no news to the person.
UNREPORTED_TYPES = frozenset({"walking", "outdoor walk", "indoor walk"})


@dataclass(frozen=True)
class Skipped:
    workout_id: str
    why: str
    # Said on the person's error topic: a workout they did that we could not read (its
    # dates, its id, a type we do not map), not one skipped on purpose (a walk, an old one).
    report: bool = False


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


def _unreadable_dates(w: dict[str, Any]) -> str:
    """Why a workout's time could not be read, with what it said."""
    said = {k: str(w[k])[:40] for k in ("start", "end", "duration") if k in w}
    if not said:
        return "it has no end, and no start and duration: set the export's dates"
    shown = ", ".join(f"{k} {v!r}" for k, v in said.items())
    return (
        f"its time cannot be read ({shown}): dates must be like 2026-03-02 18:30:00 +0100 "
        "(the app's format) or ISO 8601 with an offset"
    )


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
            skipped.append(Skipped("?", "a workout without an id", report=True))
            continue
        wid = w["id"][:100]
        name = str(w.get("name", "")).strip().lower()
        workout_kind = None if name in UNREPORTED_TYPES else vocabulary.read_kind(name)
        if workout_kind is None:
            why = f"workout type {str(w.get('name'))[:40]!r} is not one we map"
            skipped.append(Skipped(wid, why, report=name not in UNREPORTED_TYPES))
            continue
        try:
            end = (
                _time(w["end"])
                if "end" in w
                else _time(w["start"]) + timedelta(seconds=float(w["duration"]))
            )
        except (KeyError, TypeError, ValueError, OverflowError):
            skipped.append(Skipped(wid, _unreadable_dates(w), report=True))
            continue
        if end < received_at - RECENT:
            skipped.append(Skipped(wid, "it ended more than 36 hours ago"))
            continue
        focus: str | None = "core" if name in CORE_TYPES else None
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
