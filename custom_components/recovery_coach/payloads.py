"""Contract payloads the integration publishes, and parsing of the ones it receives."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import uuid4

from homeassistant.util import dt as dt_util

from .topics import is_valid_topic_level


def new_event_id() -> str:
    """Return a fresh event id (the service drops redelivered ids)."""
    return uuid4().hex


def iso_time(value: datetime | None = None) -> str:
    """Return a timezone-aware ISO 8601 time; naive times are taken as HA's local time."""
    if value is None:
        return dt_util.now().isoformat()
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt_util.get_default_time_zone())
    return value.isoformat()


def gym_visit(at: datetime | None = None) -> dict[str, Any]:
    """Payload of `gym/checkin` and `gym/checkout`."""
    return {"at": iso_time(at), "event_id": new_event_id()}


def workout_completed(
    kind: str,
    ended_at: datetime | None = None,
    *,
    focus: str | None = None,
    muscle_groups: list[str] | None = None,
    rpe: float | None = None,
    duration_min: int | None = None,
    zone: int | None = None,
) -> dict[str, Any]:
    """Payload of `workout/completed`; optional fields are left out when not given."""
    payload: dict[str, Any] = {
        "event_id": new_event_id(),
        "ended_at": iso_time(ended_at),
        "kind": kind,
    }
    optional = {
        "focus": focus,
        "muscle_groups": muscle_groups,
        "rpe": rpe,
        "duration_min": duration_min,
        "zone": zone,
    }
    payload.update({key: value for key, value in optional.items() if value is not None})
    return payload


def protein_logged(grams: float, at: datetime | None = None) -> dict[str, Any]:
    """Payload of `protein/logged`."""
    return {"grams": grams, "at": iso_time(at)}


def soreness(level: int, at: datetime | None = None) -> dict[str, Any]:
    """Payload of `soreness`."""
    return {"level": level, "at": iso_time(at)}


def snooze(minutes: int) -> dict[str, Any]:
    """Payload of `nudge/<id>/snooze`."""
    return {"minutes": minutes}


def parse_json_object(payload: str | bytes | bytearray) -> dict[str, Any] | None:
    """Return a JSON object payload as a dict, or None if it is anything else."""
    try:
        value = json.loads(payload)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def is_valid_nudge(nudge: dict[str, Any]) -> bool:
    """Tell whether a nudge has what a notification needs (the rest is optional here)."""
    nudge_id = nudge.get("nudge_id")
    return (
        isinstance(nudge_id, str)
        and is_valid_topic_level(nudge_id)
        and isinstance(nudge.get("title"), str)
        and isinstance(nudge.get("message"), str)
    )
