"""Set-up, unload, diagnostics redaction and gym check-in by zone."""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any

import pytest
from custom_components.recovery_coach.diagnostics import async_get_config_entry_diagnostics
from homeassistant.components.diagnostics import REDACTED
from homeassistant.config_entries import ConfigEntryState, ConfigSubentry
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_mqtt_message,
    async_mock_service,
)
from pytest_homeassistant_custom_component.typing import MqttMockHAClient

from .conftest import BASE, nudge, user_state


async def test_entry_keeps_status_and_latest_state(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, loaded_entry: MockConfigEntry
) -> None:
    """The hub tracks `<base>/status` and each user's retained state."""
    hub = loaded_entry.runtime_data.hub
    assert loaded_entry.state is ConfigEntryState.LOADED
    async_fire_mqtt_message(hass, f"{BASE}/status", "online", retain=True)
    async_fire_mqtt_message(hass, f"{BASE}/alex/state", json.dumps(user_state()), retain=True)
    await hass.async_block_till_done()
    assert hub.online
    assert hub.states["alex"]["protein_remaining_g"] == 88
    assert hub.display_name("alex") == "Alex"

    async_fire_mqtt_message(hass, f"{BASE}/status", "offline")
    async_fire_mqtt_message(
        hass, f"{BASE}/alex/state", json.dumps(user_state(protein_remaining_g=50))
    )
    async_fire_mqtt_message(hass, f"{BASE}/alex/state", "garbage")
    await hass.async_block_till_done()
    assert not hub.online
    assert hub.states["alex"]["protein_remaining_g"] == 50


async def test_unload_stops_everything(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, loaded_entry: MockConfigEntry
) -> None:
    """After unload no nudge notifies and no phone button publishes."""
    pixel = async_mock_service(hass, "notify", "mobile_app_pixel")
    assert await hass.config_entries.async_unload(loaded_entry.entry_id)
    await hass.async_block_till_done()
    assert loaded_entry.state is ConfigEntryState.NOT_LOADED

    mqtt_mock.async_publish.reset_mock()
    async_fire_mqtt_message(hass, f"{BASE}/alex/nudge", json.dumps(nudge()))
    hass.bus.async_fire("mobile_app_notification_action", {"action": "RC_DONE|alex|n_1"})
    await hass.async_block_till_done(wait_background_tasks=True)
    assert pixel == []
    mqtt_mock.async_publish.assert_not_called()

    # And it comes back.
    assert await hass.config_entries.async_setup(loaded_entry.entry_id)
    await hass.async_block_till_done()
    async_fire_mqtt_message(hass, f"{BASE}/alex/nudge", json.dumps(nudge()))
    await hass.async_block_till_done(wait_background_tasks=True)
    assert len(pixel) == 1


def _leaves(value: Any) -> list[Any]:
    """Every number and text in a JSON-like value."""
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


async def test_diagnostics_redact_health_figures(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, loaded_entry: MockConfigEntry
) -> None:
    """Weight, sleep, soreness, effort, protein and what nudges say are redacted wherever
    they appear (the service's state, the last nudge, the people's settings); structure,
    status and ids remain."""
    hass.config_entries.async_add_subentry(
        loaded_entry,
        ConfigSubentry(
            data=MappingProxyType(
                {
                    "user_id": "robin",
                    "person": "person.robin",
                    "weight_kg": 81.7,
                    "sleep_hours": 9.5,
                    "wake_time": "06:10:00",
                    "max_heart_rate": 187,
                    "phones": ["mobile_app_pixel"],
                }
            ),
            subentry_type="person",
            title="Robin",
            unique_id="robin",
        ),
    )
    async_fire_mqtt_message(hass, f"{BASE}/status", "online", retain=True)
    state = user_state(sleep_hours=9.5, next_wake="2025-03-05T06:10:00+01:00")
    async_fire_mqtt_message(hass, f"{BASE}/alex/state", json.dumps(state), retain=True)
    async_fire_mqtt_message(
        hass,
        f"{BASE}/alex/nudge",
        json.dumps(nudge(kind="protein", message="Eat 88 g more", data={"grams": 88})),
    )
    await hass.async_block_till_done()

    diagnostics = await async_get_config_entry_diagnostics(hass, loaded_entry)
    dump = json.dumps(diagnostics)
    assert diagnostics["service_status"] == "online"
    assert diagnostics["followed_users"] == ["alex", "robin"]
    assert diagnostics["last_nudges"]["alex"]["kind"] == "protein"
    assert diagnostics["last_nudges"]["alex"]["rule"] == "R2"
    robin = next(p for p in diagnostics["people"].values() if p["type"] == "person")
    assert robin["settings"]["user_id"] == "robin"
    assert robin["settings"]["phones"] == ["mobile_app_pixel"]
    # the figures, in every form they were given: as values, and inside times
    leaves = _leaves(diagnostics)
    for number in (81.7, 9.5, 187, 128, 88, 40):
        assert number not in leaves, number
    for clock in ("06:10", "22:15", "21:45", "06:30"):
        assert clock not in dump, clock
    for key in ("weight_kg", "sleep_hours", "max_heart_rate", "wake_time"):
        assert robin["settings"][key] == REDACTED, key
    assert diagnostics["states"]["alex"]["last_workout"] == REDACTED


@pytest.fixture
def gym_options() -> dict[str, Any]:
    """Alex checks in at the gym zone through person.alex."""
    return {"users": {"alex": {"tracker": "person.alex", "gym_zone": "zone.gym"}}}


async def test_gym_zone_checkin_and_checkout(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, gym_options: dict[str, Any]
) -> None:
    """Entering the zone publishes gym/checkin, leaving it gym/checkout; glitches nothing."""
    hass.states.async_set("zone.gym", "0", {"friendly_name": "Gym"})
    hass.states.async_set("person.alex", "home")
    entry = MockConfigEntry(
        domain="recovery_coach", unique_id=BASE, data={"base_topic": BASE}, options=gym_options
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()

    def published() -> list[str]:
        return [
            call.args[0]
            for call in mqtt_mock.async_publish.call_args_list
            if call.args[0].startswith(f"{BASE}/")
        ]

    mqtt_mock.async_publish.reset_mock()
    for state in ("not_home", "Gym", "unavailable", "Gym", "not_home", "Office"):
        hass.states.async_set("person.alex", state)
        await hass.async_block_till_done()
    assert published() == [f"{BASE}/alex/gym/checkin", f"{BASE}/alex/gym/checkout"]
    payload = json.loads(mqtt_mock.async_publish.call_args_list[0].args[1])
    assert set(payload) == {"at", "event_id"}
