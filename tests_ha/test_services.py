"""Actions publish contract payloads on the user's inbound topics."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import voluptuous as vol
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ServiceValidationError
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.typing import MqttMockHAClient

from .conftest import BASE

ISO_WITH_OFFSET = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?[+-]\d\d:\d\d$")
EVENT_ID = re.compile(r"^[0-9a-f]{32}$")


async def _call(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, service: str, data: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    mqtt_mock.async_publish.reset_mock()
    await hass.services.async_call("recovery_coach", service, data, blocking=True)
    mqtt_mock.async_publish.assert_called_once()
    topic, payload, qos, retain = mqtt_mock.async_publish.call_args.args
    assert (qos, retain) == (1, False)
    return topic, json.loads(payload)


async def test_log_workout(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, loaded_entry: MockConfigEntry
) -> None:
    """All given fields are sent; a fresh uuid4 hex event id and an aware time are added."""
    topic, payload = await _call(
        hass,
        mqtt_mock,
        "log_workout",
        {"user": "alex", "kind": "strength", "focus": "legs", "rpe": 8, "duration_min": 60},
    )
    assert topic == f"{BASE}/alex/workout/completed"
    assert EVENT_ID.match(payload.pop("event_id"))
    assert ISO_WITH_OFFSET.match(payload.pop("ended_at"))
    assert payload == {"kind": "strength", "focus": "legs", "rpe": 8, "duration_min": 60}

    _, second = await _call(
        hass,
        mqtt_mock,
        "log_workout",
        {"user": "alex", "kind": "cardio", "zone": 2, "ended_at": "2025-03-04 18:00:00+01:00"},
    )
    assert second["ended_at"] == "2025-03-04T18:00:00+01:00"
    assert second["zone"] == 2
    assert "focus" not in second


@pytest.mark.parametrize(
    ("service", "data", "topic", "expected"),
    [
        ("log_protein", {"grams": 30}, "protein/logged", {"grams": 30}),
        ("log_protein", {"grams": 22.5}, "protein/logged", {"grams": 22.5}),
        ("log_soreness", {"level": 7}, "soreness", {"level": 7}),
    ],
)
async def test_log_protein_and_soreness(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    loaded_entry: MockConfigEntry,
    service: str,
    data: dict[str, Any],
    topic: str,
    expected: dict[str, Any],
) -> None:
    """Protein and soreness carry their figure and the time it happened."""
    sent_topic, payload = await _call(hass, mqtt_mock, service, {"user": "alex", **data})
    assert sent_topic == f"{BASE}/alex/{topic}"
    assert ISO_WITH_OFFSET.match(payload.pop("at"))
    assert payload == expected


@pytest.mark.parametrize("service", ["gym_checkin", "gym_checkout"])
async def test_gym_visits(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, loaded_entry: MockConfigEntry, service: str
) -> None:
    """Check-in and check-out send `at` and a new event id."""
    topic, payload = await _call(hass, mqtt_mock, service, {"user": "alex"})
    assert topic == f"{BASE}/alex/gym/{service.removeprefix('gym_')}"
    assert set(payload) == {"at", "event_id"}
    assert EVENT_ID.match(payload["event_id"])


@pytest.mark.parametrize(
    ("service", "data"),
    [
        ("log_protein", {"user": "alex", "grams": 0}),
        ("log_protein", {"user": "alex", "grams": 501}),
        ("log_soreness", {"user": "alex", "level": 11}),
        ("log_workout", {"user": "alex", "kind": "yoga"}),
        ("log_workout", {"user": "alex", "kind": "cardio", "zone": 6}),
        ("gym_checkin", {"user": "Alex!"}),
    ],
)
async def test_invalid_input_is_refused(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    loaded_entry: MockConfigEntry,
    service: str,
    data: dict[str, Any],
) -> None:
    """Out-of-contract values never reach the broker."""
    mqtt_mock.async_publish.reset_mock()
    with pytest.raises(vol.Invalid):
        await hass.services.async_call("recovery_coach", service, data, blocking=True)
    mqtt_mock.async_publish.assert_not_called()


async def test_unknown_user_is_explained(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, loaded_entry: MockConfigEntry
) -> None:
    """A user no entry follows gets a translated validation error."""
    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(
            "recovery_coach", "gym_checkin", {"user": "sam"}, blocking=True
        )
    assert err.value.translation_key == "unknown_user"
    assert err.value.translation_placeholders == {"user": "sam"}
