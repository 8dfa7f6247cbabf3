"""The service's MQTT discovery messages, run through Home Assistant's real MQTT discovery."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import pytest
from homeassistant.components.mqtt import button as mqtt_button
from homeassistant.components.mqtt import event as mqtt_event
from homeassistant.components.mqtt import sensor as mqtt_sensor
from homeassistant.components.mqtt.abbreviations import (
    ABBREVIATIONS,
    DEVICE_ABBREVIATIONS,
    ORIGIN_ABBREVIATIONS,
)
from homeassistant.components.mqtt.schemas import DEVICE_DISCOVERY_SCHEMA, SHARED_OPTIONS
from homeassistant.const import STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import async_fire_mqtt_message
from pytest_homeassistant_custom_component.typing import MqttMockHAClientGenerator

from .conftest import nudge, user_state
from .mqtt_discovery import (
    BASE,
    EXPECTED_ENTITIES,
)
from .mqtt_discovery import (
    discover as _discover,
)
from .mqtt_discovery import (
    service_online_with_state as _service_online_with_state,
)

CONFIG_TOPIC = "homeassistant/device/recovery_coach_alex/config"

PLATFORM_SCHEMAS = {
    "sensor": mqtt_sensor.DISCOVERY_SCHEMA,
    "event": mqtt_event.DISCOVERY_SCHEMA,
    "button": mqtt_button.DISCOVERY_SCHEMA,
}


def _expand(payload: dict[str, Any], table: dict[str, str]) -> dict[str, Any]:
    return {table.get(key, key): value for key, value in payload.items()}


def _expanded_device_config(raw: str) -> dict[str, Any]:
    """Replace abbreviations the way HA's discovery does, using HA's own tables."""
    config = _expand(json.loads(raw), ABBREVIATIONS)
    config["device"] = _expand(config["device"], DEVICE_ABBREVIATIONS)
    config["origin"] = _expand(config["origin"], ORIGIN_ABBREVIATIONS)
    config["components"] = {
        key: _expand(component, ABBREVIATIONS) for key, component in config["components"].items()
    }
    return config


@pytest.fixture
def messages(service_discovery: ModuleType) -> list[tuple[str, str]]:
    """Discovery messages the service publishes for alex."""
    result: list[tuple[str, str]] = service_discovery.discovery_messages(
        BASE, "alex", "Alex", "0.1.0"
    )
    return result


async def test_payloads_validate_against_ha_schemas(
    hass: HomeAssistant, messages: list[tuple[str, str]]
) -> None:
    """Every key we send survives HA's own schemas (they silently drop unknown keys)."""
    assert [topic for topic, _ in messages] == [CONFIG_TOPIC]
    config = _expanded_device_config(messages[0][1])

    validated_device = DEVICE_DISCOVERY_SCHEMA(config)
    assert validated_device["origin"]["name"] == "Recovery Coach"
    assert validated_device["device"]["identifiers"] == ["recovery_coach_alex"]

    unique_ids = set()
    for key, component in config["components"].items():
        platform = component.pop("platform")
        merged = {
            **{opt: config[opt] for opt in SHARED_OPTIONS if opt in config},
            **component,
        }
        validated = PLATFORM_SCHEMAS[platform](merged)
        dropped = set(merged) - set(validated)
        assert not dropped, f"{key}: HA ignores {dropped}"
        assert validated["availability"][0]["topic"] == f"{BASE}/status"
        unique_ids.add(validated["unique_id"])
    assert unique_ids == set(EXPECTED_ENTITIES.values())


async def test_entities_created_with_states_from_retained_state(
    hass: HomeAssistant,
    mqtt_mock_entry: MqttMockHAClientGenerator,
    messages: list[tuple[str, str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Discovery creates one device with every entity; retained state fills them."""
    await mqtt_mock_entry()
    await _discover(hass, messages)

    entity_registry = er.async_get(hass)
    for entity_id, unique_id in EXPECTED_ENTITIES.items():
        entry = entity_registry.async_get(entity_id)
        assert entry is not None, entity_id
        assert entry.unique_id == unique_id
        # Nothing is known until the service says it is online.
        assert hass.states.get(entity_id).state == STATE_UNAVAILABLE, entity_id

    device = dr.async_get(hass).async_get_device(identifiers={("mqtt", "recovery_coach_alex")})
    assert device is not None
    assert device.name == "Recovery Coach Alex"
    assert device.sw_version == "0.1.0"

    await _service_online_with_state(hass, user_state())

    def state(entity_id: str) -> str:
        return hass.states.get(entity_id).state

    assert state("sensor.recovery_coach_alex_next_bedtime") == "2025-03-04T21:15:00+00:00"
    assert state("sensor.recovery_coach_alex_next_wake") == "2025-03-05T05:30:00+00:00"
    assert state("sensor.recovery_coach_alex_cooldown_ends") == STATE_UNKNOWN
    assert state("sensor.recovery_coach_alex_protein_target") == "128"
    assert state("sensor.recovery_coach_alex_protein_remaining") == "88"
    assert state("sensor.recovery_coach_alex_zone2_minutes_week") == "75"
    assert state("sensor.recovery_coach_alex_zone2_progress") == "50"
    workout = hass.states.get("sensor.recovery_coach_alex_last_workout")
    assert workout.state == "2025-03-04T17:00:00+00:00"
    assert workout.attributes["kind"] == "strength"
    assert workout.attributes["focus"] == "legs"
    assert workout.attributes["rpe"] == 8
    assert workout.attributes["device_class"] == "timestamp"
    zone2 = hass.states.get("sensor.recovery_coach_alex_zone2_minutes_week")
    assert zone2.attributes["state_class"] == "total_increasing"
    assert zone2.attributes["unit_of_measurement"] == "min"
    assert (
        hass.states.get("sensor.recovery_coach_alex_protein_target").attributes[
            "unit_of_measurement"
        ]
        == "g"
    )
    assert state("event.recovery_coach_alex_last_nudge") == STATE_UNKNOWN
    assert state("button.recovery_coach_alex_ack_last_nudge") == STATE_UNKNOWN
    assert "Invalid state message" not in caplog.text
    assert "Template variable error" not in caplog.text


async def test_null_fields_render_unknown_not_errors(
    hass: HomeAssistant,
    mqtt_mock_entry: MqttMockHAClientGenerator,
    messages: list[tuple[str, str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A user with no plan yet: every nullable field is unknown, nothing is logged as bad."""
    await mqtt_mock_entry()
    await _discover(hass, messages)
    empty = user_state(
        next_bedtime=None,
        next_winddown=None,
        next_wake=None,
        protein_target_g=None,
        protein_remaining_g=None,
        last_workout=None,
        zone2_minutes_week=0,
        zone2_progress_pct=0,
    )
    await _service_online_with_state(hass, empty)

    for entity_id in (
        "sensor.recovery_coach_alex_next_bedtime",
        "sensor.recovery_coach_alex_next_winddown",
        "sensor.recovery_coach_alex_next_wake",
        "sensor.recovery_coach_alex_cooldown_ends",
        "sensor.recovery_coach_alex_protein_target",
        "sensor.recovery_coach_alex_protein_remaining",
        "sensor.recovery_coach_alex_last_workout",
    ):
        assert hass.states.get(entity_id).state == STATE_UNKNOWN, entity_id
    assert hass.states.get("sensor.recovery_coach_alex_zone2_minutes_week").state == "0"
    assert "Invalid state message" not in caplog.text
    assert "Template variable error" not in caplog.text
    assert "Exception" not in caplog.text


async def test_nudge_event_and_buttons(
    hass: HomeAssistant,
    mqtt_mock_entry: MqttMockHAClientGenerator,
    messages: list[tuple[str, str]],
) -> None:
    """A nudge fires the event entity; the buttons publish the last-nudge commands."""
    mqtt_mock = await mqtt_mock_entry()
    await _discover(hass, messages)
    await _service_online_with_state(hass, user_state())

    async_fire_mqtt_message(hass, f"{BASE}/alex/nudge", json.dumps(nudge()), qos=1)
    await hass.async_block_till_done()
    event = hass.states.get("event.recovery_coach_alex_last_nudge")
    assert event.state not in (STATE_UNKNOWN, STATE_UNAVAILABLE)
    assert event.attributes["event_type"] == "cardio_advice"
    assert event.attributes["rule"] == "R2"
    assert event.attributes["speech"] == "Cardio is fine today, keep it easy."
    assert event.attributes["evidence"] == ["CDC effort scale", "talk test"]
    assert set(event.attributes["event_types"]) == {
        "cooldown_start",
        "cooldown_done",
        "cardio_advice",
        "cardio_warning",
        "protein",
        "bedtime_winddown",
        "bedtime",
        "zone2_progress",
        "recovery_advice",
    }

    mqtt_mock.async_publish.reset_mock()
    await hass.services.async_call(
        "button",
        "press",
        {"entity_id": "button.recovery_coach_alex_ack_last_nudge"},
        blocking=True,
    )
    mqtt_mock.async_publish.assert_called_once_with(f"{BASE}/alex/nudge/last/ack", "{}", 1, False)
    mqtt_mock.async_publish.reset_mock()
    await hass.services.async_call(
        "button",
        "press",
        {"entity_id": "button.recovery_coach_alex_snooze_last_nudge"},
        blocking=True,
    )
    mqtt_mock.async_publish.assert_called_once_with(
        f"{BASE}/alex/nudge/last/snooze", '{"minutes": 15}', 1, False
    )


async def test_offline_then_restart_keeps_entities_available(
    hass: HomeAssistant,
    mqtt_mock_entry: MqttMockHAClientGenerator,
    messages: list[tuple[str, str]],
) -> None:
    """Offline makes entities unavailable; after an MQTT restart retained messages restore all."""
    await mqtt_mock_entry()
    await _discover(hass, messages, retained=True)
    await _service_online_with_state(hass, user_state(), retained=True)
    bedtime = "sensor.recovery_coach_alex_next_bedtime"
    assert hass.states.get(bedtime).state == "2025-03-04T21:15:00+00:00"

    async_fire_mqtt_message(hass, f"{BASE}/status", "offline", qos=1)
    await hass.async_block_till_done()
    assert hass.states.get(bedtime).state == STATE_UNAVAILABLE
    async_fire_mqtt_message(hass, f"{BASE}/status", "online", qos=1)
    await hass.async_block_till_done()
    assert hass.states.get(bedtime).state == "2025-03-04T21:15:00+00:00"

    # A restart of HA's MQTT side: every subscription is new, so the broker hands over
    # the retained discovery, status and state again; HA announces itself online and the
    # service answers with the same discovery.
    mqtt_entry = hass.config_entries.async_entries("mqtt")[0]
    assert await hass.config_entries.async_reload(mqtt_entry.entry_id)
    await hass.async_block_till_done()
    await _discover(hass, messages, retained=True)
    await _service_online_with_state(hass, user_state(), retained=True)
    async_fire_mqtt_message(hass, "homeassistant/status", "online", qos=1)
    await _discover(hass, messages)
    for entity_id in EXPECTED_ENTITIES:
        assert hass.states.get(entity_id).state != STATE_UNAVAILABLE, entity_id
    assert hass.states.get(bedtime).state == "2025-03-04T21:15:00+00:00"
    assert hass.states.get("sensor.recovery_coach_alex_protein_remaining").state == "88"


async def test_removal_payload_removes_device_and_entities(
    hass: HomeAssistant,
    mqtt_mock_entry: MqttMockHAClientGenerator,
    messages: list[tuple[str, str]],
    service_discovery: ModuleType,
) -> None:
    """The removal message leaves no ghost entities and no device."""
    await mqtt_mock_entry()
    await _discover(hass, messages)
    entity_registry = er.async_get(hass)
    assert entity_registry.async_get("sensor.recovery_coach_alex_next_bedtime") is not None

    removal = service_discovery.removal_messages("alex")
    assert removal == [(CONFIG_TOPIC, "")]
    await _discover(hass, removal)
    await hass.async_block_till_done()

    for entity_id in EXPECTED_ENTITIES:
        assert entity_registry.async_get(entity_id) is None, entity_id
        assert hass.states.get(entity_id) is None, entity_id
    device = dr.async_get(hass).async_get_device(identifiers={("mqtt", "recovery_coach_alex")})
    assert device is None


def test_device_id_is_stable(service_discovery: ModuleType) -> None:
    """The device id is part of every unique id and topic: it must never change."""
    assert service_discovery.device_id("alex") == "recovery_coach_alex"
    assert service_discovery.HA_STATUS_TOPIC == "homeassistant/status"
