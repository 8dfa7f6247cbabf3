"""Workouts from the integrations people already have: each new activity of a followed
entity becomes one `workout/completed` event for its person, with no automation written.

One mapping table per source, from the source's own activity types:

- **Garmin Connect** (cyberjunky/home-assistant-garmin_connect, sensor_descriptions.py): the
  `last_activity` sensor's attributes are Garmin's activity (`activityId`, `activityName`,
  `activityType.typeKey`, `startTimeLocal` and `startTimeGMT` as `YYYY-MM-DD HH:MM:SS`,
  `duration` in seconds, `averageHR`, `maxHR`, ...); `last_activities` carries the last five
  in its `last_activities` attribute.

- **Strava** (craibo/ha_strava, coordinator.py `_sensor_activity` and const.py): the
  `ha_strava_activities_update` event carries `activities`, each with `id`,
  `activity_type` (Strava's sport type: `WeightTraining`, `Run`, `Ride`, ...), `date` (the
  local start, `start_date_local`), `elapsed_time` and `moving_time` in seconds,
  `average_heartrate`, `max_heartrate`. A person follows it when one of their sources is a
  sensor of the ha_strava integration.

- **Polar** (Aohzan/hass-polar, sensor.py): the "Last exercise" sensor's state is the
  exercise's `start_time` (Polar AccessLink's local start) and its attributes carry
  `sport` (AccessLink's: `RUNNING`, `STRENGTH_TRAINING`, ...), `duration` (ISO 8601,
  `PT1H2M3S`) and `heart_rate` (`average`, `maximum`). AccessLink gives the exercise no id
  there: its start time is the id.

The event id is `<source>:<activity id>`, so a re-poll, an HA restart or both sensors
showing the same activity never double it (the service drops a repeated id). Only
activities that ended after the source was added to the person, and within the last
36 hours, are sent: a first sync of history is not replayed as today's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any, Final

from homeassistant.core import State

from .const import WORKOUT_FOCUSES
from .people import WEEKDAYS

RECENT: Final = timedelta(hours=36)

# Garmin's activityType.typeKey -> the service's workout kind. Strength takes its focus from
# the weekly plan; walks, breathwork and the like are no workouts here; others are skipped.
GARMIN_KINDS: Final[dict[str, str]] = {
    "strength_training": "strength",
    **dict.fromkeys(
        (
            "running",
            "treadmill_running",
            "trail_running",
            "track_running",
            "indoor_running",
            "virtual_run",
            "cycling",
            "road_biking",
            "mountain_biking",
            "gravel_cycling",
            "indoor_cycling",
            "virtual_ride",
            "lap_swimming",
            "open_water_swimming",
            "swimming",
            "rowing",
            "indoor_rowing",
            "elliptical",
            "stair_climbing",
            "hiking",
            "cross_country_skiing_ws",
            "skate_skiing_ws",
        ),
        "cardio",
    ),
    **dict.fromkeys(
        ("hiit", "indoor_cardio", "yoga", "pilates", "boxing", "fitness_equipment"), "class"
    ),
    **dict.fromkeys(
        (
            "soccer",
            "football",
            "basketball",
            "tennis",
            "volleyball",
            "squash",
            "badminton",
            "padel",
            "pickleball",
            "rugby",
            "ice_hockey",
            "field_hockey",
            "team_sports",
            "racket_sports",
            "rock_climbing",
            "indoor_climbing",
            "bouldering",
        ),
        "sport",
    ),
}


# Strava's sport types -> the service's workout kind (walks and the like are skipped).
STRAVA_KINDS: Final[dict[str, str]] = {
    "WeightTraining": "strength",
    **dict.fromkeys(
        (
            "Run",
            "TrailRun",
            "VirtualRun",
            "Ride",
            "VirtualRide",
            "GravelRide",
            "MountainBikeRide",
            "Rowing",
            "VirtualRow",
            "Swim",
            "Elliptical",
            "StairStepper",
            "Hike",
            "NordicSki",
            "RollerSki",
            "InlineSkate",
            "Canoeing",
            "Kayaking",
        ),
        "cardio",
    ),
    **dict.fromkeys(
        ("HighIntensityIntervalTraining", "Crossfit", "Workout", "Yoga", "Pilates"), "class"
    ),
    **dict.fromkeys(
        (
            "Soccer",
            "Tennis",
            "Badminton",
            "Squash",
            "Pickleball",
            "Racquetball",
            "TableTennis",
            "RockClimbing",
        ),
        "sport",
    ),
}
# Polar AccessLink's sport names -> the service's workout kind.
POLAR_KINDS: Final[dict[str, str]] = {
    "STRENGTH_TRAINING": "strength",
    **dict.fromkeys(
        (
            "RUNNING",
            "JOGGING",
            "ROAD_RUNNING",
            "TREADMILL_RUNNING",
            "TRAIL_RUNNING",
            "CYCLING",
            "ROAD_BIKING",
            "INDOOR_CYCLING",
            "MOUNTAIN_BIKING",
            "SWIMMING",
            "POOL_SWIMMING",
            "OPEN_WATER_SWIMMING",
            "ROWING",
            "INDOOR_ROWING",
            "CROSS-TRAINER",
            "ELLIPTICAL",
            "HIKING",
            "CROSS-COUNTRY_SKIING",
        ),
        "cardio",
    ),
    **dict.fromkeys(
        ("CIRCUIT_TRAINING", "CORE", "CROSSFIT", "HIIT", "GROUP_EXERCISE", "YOGA", "PILATES"),
        "class",
    ),
    **dict.fromkeys(
        ("SOCCER", "FOOTBALL", "TENNIS", "BASKETBALL", "VOLLEYBALL", "BADMINTON", "SQUASH"),
        "sport",
    ),
}
KINDS: Final[dict[str, dict[str, str]]] = {
    "garmin": GARMIN_KINDS,
    "strava": STRAVA_KINDS,
    "polar": POLAR_KINDS,
}
_ISO_DURATION: Final = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?"
    r"(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
STRAVA_EVENT: Final = "ha_strava_activities_update"
STRAVA_PLATFORM: Final = "ha_strava"


@dataclass(frozen=True)
class Activity:
    """One activity as a source reports it, before mapping."""

    source: str
    activity_id: str
    type_key: str
    ended_at: datetime  # aware, in the activity's own zone
    duration_s: float | None
    average_hr: float | None


def _garmin_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:  # Garmin writes local and GMT times alike, without a zone: read as naive
        return datetime.strptime(value[:19], "%Y-%m-%d %H:%M:%S")  # noqa: DTZ007
    except ValueError:
        return None


def _garmin(raw: Mapping[str, Any]) -> Activity | None:
    activity_id = raw.get("activityId")
    kind = raw.get("activityType")
    type_key = kind.get("typeKey") if isinstance(kind, Mapping) else None
    gmt = _garmin_time(raw.get("startTimeGMT"))
    local = _garmin_time(raw.get("startTimeLocal"))
    duration = raw.get("duration")
    if activity_id is None or not isinstance(type_key, str) or gmt is None:
        return None
    if not isinstance(duration, int | float) or duration <= 0:
        return None
    # The activity's own zone: its local start time against its UTC start time.
    offset = (local - gmt) if local is not None else timedelta(0)
    zone = timezone(timedelta(minutes=round(offset.total_seconds() / 60)))
    ended = (gmt.replace(tzinfo=UTC) + timedelta(seconds=float(duration))).astimezone(zone)
    hr = raw.get("averageHR")
    return Activity(
        source="garmin",
        activity_id=str(activity_id),
        type_key=type_key,
        ended_at=ended,
        duration_s=float(duration),
        average_hr=float(hr) if isinstance(hr, int | float) else None,
    )


def iso_duration_s(value: Any) -> float | None:
    """Seconds of an ISO 8601 duration (`PT1H2M3S`), or of a plain number."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str) or not (m := _ISO_DURATION.match(value)):
        return None
    parts = {k: float(v) for k, v in m.groupdict().items() if v}
    if not parts:
        return None
    return (
        parts.get("d", 0) * 86400
        + parts.get("h", 0) * 3600
        + parts.get("m", 0) * 60
        + parts.get("s", 0)
    )


def _polar(state: State, home_zone: tzinfo) -> Activity | None:
    attrs = state.attributes
    sport, duration = attrs.get("sport"), iso_duration_s(attrs.get("duration"))
    try:
        start = datetime.fromisoformat(state.state)
    except ValueError:
        return None
    if not isinstance(sport, str) or not duration or duration <= 0:
        return None
    local = start.replace(tzinfo=home_zone) if start.tzinfo is None else start
    hr = attrs.get("heart_rate")
    average = hr.get("average") if isinstance(hr, Mapping) else None
    return Activity(
        source="polar",
        activity_id=local.strftime("%Y%m%dT%H%M%S"),
        type_key=sport.upper(),
        ended_at=local + timedelta(seconds=duration),
        duration_s=duration,
        average_hr=float(average) if isinstance(average, int | float) else None,
    )


def activities_of(state: State | None, home_zone: tzinfo = UTC) -> list[Activity]:
    """Every activity an entity's state shows: Garmin's last_activity (its attributes are
    the activity) and last_activities (a list of them); Polar's last exercise (its state
    is the start, read in `home_zone` when it has no zone of its own)."""
    if state is None:
        return []
    attrs = state.attributes
    found: list[Activity] = []
    if "sport" in attrs and "duration" in attrs and (p := _polar(state, home_zone)):
        found.append(p)
    if "activityId" in attrs and (a := _garmin(attrs)) is not None:
        found.append(a)
    listed = attrs.get("last_activities")
    if isinstance(listed, list):
        found.extend(a for raw in listed if isinstance(raw, Mapping) and (a := _garmin(raw)))
    return found


def strava_activities(data: Mapping[str, Any], home_zone: tzinfo) -> list[Activity]:
    """The activities of an `ha_strava_activities_update` event. Strava's local start has
    no zone (ha_strava parses `start_date_local` as naive): it is read in HA's zone."""
    found: list[Activity] = []
    listed = data.get("activities")
    for raw in listed if isinstance(listed, list) else []:
        if not isinstance(raw, Mapping):
            continue
        activity_id, sport = raw.get("id"), raw.get("activity_type")
        start = raw.get("date")
        if isinstance(start, str):
            try:
                start = datetime.fromisoformat(start.removesuffix("Z"))
            except ValueError:
                continue
        elapsed = raw.get("elapsed_time") or raw.get("moving_time")
        if activity_id is None or not isinstance(sport, str) or not isinstance(start, datetime):
            continue
        if not isinstance(elapsed, int | float) or elapsed <= 0:
            continue
        local = start.replace(tzinfo=home_zone) if start.tzinfo is None else start
        hr = raw.get("average_heartrate")
        found.append(
            Activity(
                source="strava",
                activity_id=str(activity_id),
                type_key=sport,
                ended_at=local + timedelta(seconds=float(elapsed)),
                duration_s=float(raw.get("moving_time") or elapsed),
                average_hr=float(hr) if isinstance(hr, int | float) else None,
            )
        )
    return found


def zone_and_rpe(average_hr: float | None, max_hr: float | None) -> tuple[int | None, float | None]:
    """The five-zone model of % of the person's maximum heart rate (<60, 60-70, 70-80,
    80-90, >=90), and the effort it means on the service's 0-10 scale."""
    if average_hr is None or not max_hr:
        return None, None
    pct = average_hr / max_hr
    zone = 1 if pct < 0.6 else 2 if pct < 0.7 else 3 if pct < 0.8 else 4 if pct < 0.9 else 5
    return zone, {1: 3.0, 2: 4.0, 3: 6.0, 4: 8.0, 5: 9.0}[zone]


def workout_event(
    activity: Activity,
    *,
    plan: Mapping[str, str],
    max_hr: float | None,
    since: datetime,
    now: datetime,
) -> dict[str, Any] | None:
    """The `workout/completed` body for an activity, or None when it is not sent (a type
    we do not map, or it ended before the source was added or over 36 hours ago)."""
    kind = KINDS[activity.source].get(activity.type_key)
    if kind is None:
        return None
    if activity.ended_at < since or activity.ended_at < now - RECENT:
        return None
    event: dict[str, Any] = {
        "event_id": f"{activity.source}:{activity.activity_id}",
        "ended_at": activity.ended_at.isoformat(),
        "kind": kind,
    }
    if kind == "strength":
        planned = plan.get(WEEKDAYS[activity.ended_at.weekday()])
        if planned in WORKOUT_FOCUSES:
            event["focus"] = planned
    if activity.duration_s:
        event["duration_min"] = round(activity.duration_s / 60, 1)
    zone, rpe = zone_and_rpe(activity.average_hr, max_hr)
    if zone is not None:
        event["zone"] = zone
        event["rpe"] = rpe
    return event
