"""Constants for the Recovery Coach integration."""

from __future__ import annotations

import logging
from typing import Final

DOMAIN: Final = "recovery_coach"
LOGGER = logging.getLogger(__package__)

CONF_BASE_TOPIC: Final = "base_topic"
DEFAULT_BASE_TOPIC: Final = "recovery_coach"

# Options: one dict per followed user id.
CONF_USERS: Final = "users"
CONF_PHONES: Final = "phones"  # notify service names, e.g. "mobile_app_pixel_8"
CONF_ANNOUNCE_ENTITY: Final = "announce_entity"  # media_player.* or assist_satellite.*
CONF_TRACKER: Final = "tracker"  # person.* or device_tracker.*
CONF_GYM_ZONE: Final = "gym_zone"  # zone.*
CONF_TTS_ENGINE: Final = "tts_engine"  # tts.*, used for media players

# How long the config flow listens for the service's retained messages.
PROBE_TIMEOUT_S: Final = 5.0
# After `<base>/status` arrives, retained user states follow within milliseconds.
PROBE_SETTLE_S: Final = 0.5

STATUS_ONLINE: Final = "online"
STATUS_OFFLINE: Final = "offline"

SNOOZE_MINUTES: Final = 15

NUDGE_KINDS: Final = (
    "cooldown_start",
    "cooldown_done",
    "cardio_advice",
    "cardio_warning",
    "protein",
    "bedtime_winddown",
    "bedtime",
    "zone2_progress",
    "recovery_advice",
)
COOLDOWN_KINDS: Final = frozenset({"cooldown_start"})

# Phone notification action ids: "<prefix>|<user>|<nudge_id>". User ids never contain "|",
# so splitting at most twice keeps any nudge id intact.
ACTION_DONE: Final = "RC_DONE"
ACTION_SNOOZE: Final = "RC_SNOOZE"
ACTION_SEPARATOR: Final = "|"

WORKOUT_KINDS: Final = ("strength", "cardio", "mixed", "class", "sport")
WORKOUT_FOCUSES: Final = ("legs", "lower", "upper", "push", "pull", "full", "core")
