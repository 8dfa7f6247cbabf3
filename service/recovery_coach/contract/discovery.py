"""Home Assistant MQTT discovery messages for each user's Recovery Coach device.

Pure and standard-library only: the service publishes what this returns, and the
integration's tests feed the same messages through Home Assistant's own MQTT discovery.
One device-based discovery message per user (`homeassistant/device/<device_id>/config`)
carries every entity, so one empty retained message removes them all again.
"""

from __future__ import annotations

import json
from typing import Any, Final, get_args

from recovery_coach.core.models import NudgeKind

HA_DISCOVERY_PREFIX: Final = "homeassistant"
HA_STATUS_TOPIC: Final = f"{HA_DISCOVERY_PREFIX}/status"

ORIGIN_NAME: Final = "Recovery Coach"
PROJECT_URL: Final = "https://github.com/recovery-coach/recovery-coach"

# The nine nudge kinds of the public contract (models.py, standard library only too); the
# `event` entity accepts only these.
NUDGE_KINDS: Final = get_args(NudgeKind)

_QOS: Final = 1


def device_id(user_id: str) -> str:
    """Return the device id of a user's coach device; it must never change."""
    return f"recovery_coach_{user_id}"


def _unique_id(user_id: str, key: str) -> str:
    return f"recovery_coach_{user_id}_{key}"


def _state_field(field: str) -> str:
    # A null or missing field renders as "None", which Home Assistant shows as unknown
    # instead of logging an invalid timestamp or number.
    return (
        f"{{{{ value_json.get('{field}') if value_json.get('{field}') is not none else 'None' }}}}"
    )


_LAST_WORKOUT_ENDED_AT: Final = (
    "{{ (value_json.get('last_workout') or {}).get('ended_at') or 'None' }}"
)
_LAST_WORKOUT_ATTRIBUTES: Final = (
    "{% set w = value_json.get('last_workout') or {} %}"
    "{{ {'kind': w.get('kind'), 'focus': w.get('focus'), 'rpe': w.get('rpe'),"
    " 'leg_day': w.get('leg_day'), 'event_id': w.get('event_id')} | tojson }}"
)
# Maps a contract nudge onto Home Assistant's event schema: `event_type` plus attributes.
_NUDGE_EVENT: Final = (
    "{{ {'event_type': value_json.kind, 'title': value_json.title,"
    " 'message': value_json.message, 'speech': value_json.speech,"
    " 'rule': value_json.rule, 'evidence': value_json.evidence,"
    " 'nudge_id': value_json.nudge_id, 'due_at': value_json.due_at} | tojson }}"
)


def _sensor(
    user_id: str, state_topic: str, key: str, name: str, template: str, **extra: Any
) -> dict[str, Any]:
    return {
        "p": "sensor",
        "name": name,
        "unique_id": _unique_id(user_id, key),
        "default_entity_id": f"sensor.{_unique_id(user_id, key)}",
        "state_topic": state_topic,
        "value_template": template,
        "qos": _QOS,
        **extra,
    }


def _components(base_topic: str, user_id: str) -> dict[str, dict[str, Any]]:
    state = f"{base_topic}/{user_id}/state"
    return {
        "next_bedtime": _sensor(
            user_id,
            state,
            "next_bedtime",
            "Next bedtime",
            _state_field("next_bedtime"),
            device_class="timestamp",
            icon="mdi:bed-clock",
        ),
        "next_winddown": _sensor(
            user_id,
            state,
            "next_winddown",
            "Next wind-down",
            _state_field("next_winddown"),
            device_class="timestamp",
            icon="mdi:weather-night",
        ),
        "next_wake": _sensor(
            user_id,
            state,
            "next_wake",
            "Next wake-up",
            _state_field("next_wake"),
            device_class="timestamp",
            icon="mdi:alarm",
        ),
        "cooldown_ends": _sensor(
            user_id,
            state,
            "cooldown_ends",
            "Cooldown ends",
            _state_field("cooldown_ends_at"),
            device_class="timestamp",
            icon="mdi:timer-sand",
        ),
        "protein_target": _sensor(
            user_id,
            state,
            "protein_target",
            "Protein target today",
            _state_field("protein_target_g"),
            unit_of_measurement="g",
            state_class="measurement",
            icon="mdi:food-drumstick",
        ),
        "protein_remaining": _sensor(
            user_id,
            state,
            "protein_remaining",
            "Protein still to eat today",
            _state_field("protein_remaining_g"),
            unit_of_measurement="g",
            state_class="measurement",
            icon="mdi:food-drumstick-outline",
        ),
        # A weekly running total that drops back to 0 each week: total_increasing tells
        # long-term statistics that a drop is a reset, not a negative amount of cardio.
        "zone2_minutes_week": _sensor(
            user_id,
            state,
            "zone2_minutes_week",
            "Zone 2 minutes this week",
            _state_field("zone2_minutes_week"),
            device_class="duration",
            unit_of_measurement="min",
            state_class="total_increasing",
            icon="mdi:run",
        ),
        "zone2_progress": _sensor(
            user_id,
            state,
            "zone2_progress",
            "Zone 2 share of weekly target",
            _state_field("zone2_progress_pct"),
            unit_of_measurement="%",
            state_class="measurement",
            icon="mdi:heart-pulse",
        ),
        "last_workout": _sensor(
            user_id,
            state,
            "last_workout",
            "Last workout",
            _LAST_WORKOUT_ENDED_AT,
            device_class="timestamp",
            icon="mdi:dumbbell",
            json_attributes_topic=state,
            json_attributes_template=_LAST_WORKOUT_ATTRIBUTES,
        ),
        "last_nudge": {
            "p": "event",
            "name": "Last nudge",
            "unique_id": _unique_id(user_id, "last_nudge"),
            "default_entity_id": f"event.{_unique_id(user_id, 'last_nudge')}",
            "state_topic": f"{base_topic}/{user_id}/nudge",
            "event_types": list(NUDGE_KINDS),
            "value_template": _NUDGE_EVENT,
            "qos": _QOS,
            "icon": "mdi:message-badge",
        },
        "ack_last_nudge": {
            "p": "button",
            "name": "Acknowledge last nudge",
            "unique_id": _unique_id(user_id, "ack_last_nudge"),
            "default_entity_id": f"button.{_unique_id(user_id, 'ack_last_nudge')}",
            "command_topic": f"{base_topic}/{user_id}/nudge/last/ack",
            "payload_press": "{}",
            "qos": _QOS,
            "icon": "mdi:check",
        },
        "snooze_last_nudge": {
            "p": "button",
            "name": "Snooze last nudge 15 min",
            "unique_id": _unique_id(user_id, "snooze_last_nudge"),
            "default_entity_id": f"button.{_unique_id(user_id, 'snooze_last_nudge')}",
            "command_topic": f"{base_topic}/{user_id}/nudge/last/snooze",
            "payload_press": json.dumps({"minutes": 15}),
            "qos": _QOS,
            "icon": "mdi:alarm-snooze",
        },
    }


def discovery_config(
    base_topic: str,
    user_id: str,
    display_name: str,
    sw_version: str,
    availability: str | None = None,
) -> dict[str, Any]:
    """Return the device-based discovery document for one user. `availability`: the status
    topic the user's entities follow (`<base>/status`, or sharded their shard's)."""
    return {
        "dev": {
            "ids": [device_id(user_id)],
            "name": f"Recovery Coach {display_name}",
            "mf": "Recovery Coach",
            "mdl": "Recovery coach",
            "sw": sw_version,
        },
        "o": {"name": ORIGIN_NAME, "sw": sw_version, "url": PROJECT_URL},
        "cmps": _components(base_topic, user_id),
        # Shared by every component: all go unavailable when the service is offline.
        "availability": [
            {
                "topic": availability or f"{base_topic}/status",
                "payload_available": "online",
                "payload_not_available": "offline",
            }
        ],
        "qos": _QOS,
    }


def _config_topic(user_id: str) -> str:
    return f"{HA_DISCOVERY_PREFIX}/device/{device_id(user_id)}/config"


def discovery_messages(
    base_topic: str,
    user_id: str,
    display_name: str,
    sw_version: str,
    availability: str | None = None,
) -> list[tuple[str, str]]:
    """Return (topic, payload) pairs to publish retained at QoS 1 for one user."""
    payload = discovery_config(base_topic, user_id, display_name, sw_version, availability)
    return [(_config_topic(user_id), json.dumps(payload, separators=(",", ":")))]


def removal_messages(user_id: str) -> list[tuple[str, str]]:
    """Return the empty retained payloads that remove a user's device and all its entities."""
    return [(_config_topic(user_id), "")]
