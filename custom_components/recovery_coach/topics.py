"""MQTT topics of the Recovery Coach contract, built in one place."""

from __future__ import annotations

import re
from typing import Final

USER_ID_RE: Final = re.compile(r"^[a-z0-9_]{1,32}$")
# A base topic is one or more plain topic levels: no wildcards, no empty levels.
BASE_TOPIC_RE: Final = re.compile(r"^[^#+/\s]+(/[^#+/\s]+)*$")


def is_valid_user_id(user_id: str) -> bool:
    """Tell whether a string is a user id the service accepts."""
    return USER_ID_RE.fullmatch(user_id) is not None


def is_valid_base_topic(base_topic: str) -> bool:
    """Tell whether a string can be used as the service's base topic."""
    return BASE_TOPIC_RE.fullmatch(base_topic) is not None


def is_valid_topic_level(level: str) -> bool:
    """Tell whether a string can stand as one topic level (e.g. a nudge id)."""
    return bool(level) and not any(char in level for char in "#+/\x00")


def status_topic(base: str) -> str:
    """Topic of the service's retained online/offline status."""
    return f"{base}/status"


def state_topic(base: str, user_id: str) -> str:
    """Topic of a user's retained state (user_id may be the `+` wildcard)."""
    return f"{base}/{user_id}/state"


def nudge_topic(base: str, user_id: str) -> str:
    """Topic of a user's nudges (user_id may be the `+` wildcard)."""
    return f"{base}/{user_id}/nudge"


def user_from_topic(base: str, topic: str) -> str | None:
    """Return the user id of a `<base>/<user>/...` topic, or None if it is not one."""
    prefix = f"{base}/"
    if not topic.startswith(prefix):
        return None
    user_id = topic[len(prefix) :].split("/", 1)[0]
    return user_id if is_valid_user_id(user_id) else None


def nudge_action_topic(base: str, user_id: str, nudge_id: str, action: str) -> str:
    """Topic acting on one nudge: action is `ack` or `snooze`."""
    return f"{base}/{user_id}/nudge/{nudge_id}/{action}"


def event_topic(base: str, user_id: str, event: str) -> str:
    """Topic of an inbound event, e.g. `workout/completed` or `gym/checkin`."""
    return f"{base}/{user_id}/{event}"


def profile_topic(base: str, user_id: str) -> str:
    """Topic of a person's retained profile, published by Home Assistant (user_id may be `+`)."""
    return f"{base}/{user_id}/profile"


def error_topic(base: str, user_id: str) -> str:
    """Topic where the service refuses a user's message (user_id may be `+`)."""
    return f"{base}/{user_id}/error"
