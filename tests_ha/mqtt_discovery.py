"""What the service's discovery creates for user alex, and feeding it to HA's MQTT.

Shared by the tests that need the discovered entities (not a test module itself).
"""

from __future__ import annotations

import json
from typing import Any

from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import async_fire_mqtt_message

BASE = "recovery_coach"

EXPECTED_ENTITIES = {
    "sensor.recovery_coach_alex_next_bedtime": "recovery_coach_alex_next_bedtime",
    "sensor.recovery_coach_alex_next_winddown": "recovery_coach_alex_next_winddown",
    "sensor.recovery_coach_alex_next_wake": "recovery_coach_alex_next_wake",
    "sensor.recovery_coach_alex_cooldown_ends": "recovery_coach_alex_cooldown_ends",
    "sensor.recovery_coach_alex_protein_target": "recovery_coach_alex_protein_target",
    "sensor.recovery_coach_alex_protein_remaining": "recovery_coach_alex_protein_remaining",
    "sensor.recovery_coach_alex_zone2_minutes_week": "recovery_coach_alex_zone2_minutes_week",
    "sensor.recovery_coach_alex_zone2_progress": "recovery_coach_alex_zone2_progress",
    "sensor.recovery_coach_alex_last_workout": "recovery_coach_alex_last_workout",
    "event.recovery_coach_alex_last_nudge": "recovery_coach_alex_last_nudge",
    "button.recovery_coach_alex_ack_last_nudge": "recovery_coach_alex_ack_last_nudge",
    "button.recovery_coach_alex_snooze_last_nudge": "recovery_coach_alex_snooze_last_nudge",
}


# A broker sets the retain flag only when it hands a new subscriber the stored message;
# a live publish reaches existing subscribers without it (and HA's client drops a second
# retained copy of a topic on one subscription). The helpers follow the same rules.


async def discover(
    hass: HomeAssistant, messages: list[tuple[str, str]], *, retained: bool = False
) -> None:
    for topic, payload in messages:
        async_fire_mqtt_message(hass, topic, payload, qos=1, retain=retained)
    await hass.async_block_till_done()


async def service_online_with_state(
    hass: HomeAssistant, state: dict[str, Any], *, retained: bool = False
) -> None:
    async_fire_mqtt_message(hass, f"{BASE}/status", "online", qos=1, retain=retained)
    async_fire_mqtt_message(hass, f"{BASE}/alex/state", json.dumps(state), qos=1, retain=retained)
    await hass.async_block_till_done()
