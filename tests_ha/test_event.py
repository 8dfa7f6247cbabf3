"""The event entity per person: each nudge sent, acknowledged or snoozed, with its rule and
kind, for automations and the logbook."""

from __future__ import annotations

import json
from types import MappingProxyType

from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import ConfigSubentry
from homeassistant.const import STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_mqtt_message
from pytest_homeassistant_custom_component.typing import MqttMockHAClient

from .conftest import BASE, nudge

ENTITY = "event.alex_nudges"


async def _fire(hass: HomeAssistant, topic: str, payload: str) -> None:
    async_fire_mqtt_message(hass, f"{BASE}/{topic}", payload)
    await hass.async_block_till_done()


async def test_each_nudge_sent_acknowledged_and_snoozed_is_an_event(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    mqtt_mock: MqttMockHAClient,
    loaded_entry: MockConfigEntry,
) -> None:
    state = hass.states.get(ENTITY)
    assert state is not None
    assert state.state == STATE_UNKNOWN  # no nudge yet
    assert state.attributes["event_types"] == ["sent", "acknowledged", "snoozed"]

    await _fire(hass, "alex/nudge", json.dumps(nudge(nudge_id="n1", rule="R8", kind="protein")))
    state = hass.states.get(ENTITY)
    assert state is not None
    sent_at = state.state
    assert state.attributes["event_type"] == "sent"
    assert (state.attributes["rule"], state.attributes["kind"]) == ("R8", "protein")
    assert state.attributes["nudge_id"] == "n1"

    freezer.tick(1)
    await _fire(hass, "alex/nudge/n1/snooze", json.dumps({"minutes": 30}))
    state = hass.states.get(ENTITY)
    assert state is not None
    assert state.attributes["event_type"] == "snoozed"
    assert state.attributes["minutes"] == 30
    assert state.attributes["kind"] == "protein"  # the nudge it was about
    assert state.state != sent_at  # a new event, a new timestamp

    await _fire(hass, "alex/nudge/last/ack", "{}")  # `last`: the latest nudge, n1
    state = hass.states.get(ENTITY)
    assert state is not None
    assert state.attributes["event_type"] == "acknowledged"
    assert state.attributes["nudge_id"] == "n1"


async def test_another_persons_nudges_do_not_fire_it(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, loaded_entry: MockConfigEntry
) -> None:
    await _fire(hass, "sam/nudge", json.dumps(nudge(user="sam")))
    await _fire(hass, "sam/nudge/last/ack", "{}")
    state = hass.states.get(ENTITY)
    assert state is not None
    assert state.state == STATE_UNKNOWN


async def test_unavailable_while_the_service_is_offline(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, loaded_entry: MockConfigEntry
) -> None:
    await _fire(hass, "status", "offline")
    state = hass.states.get(ENTITY)
    assert state is not None
    assert state.state == STATE_UNAVAILABLE
    await _fire(hass, "status", "online")
    state = hass.states.get(ENTITY)
    assert state is not None
    assert state.state == STATE_UNKNOWN


async def test_a_person_added_later_gets_theirs_and_it_goes_with_them(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, loaded_entry: MockConfigEntry
) -> None:
    sub = ConfigSubentry(
        data=MappingProxyType({"user_id": "sam", "phones": ["mobile_app_pixel"]}),
        subentry_type="service_user",
        title="Sam",
        unique_id="sam",
    )
    hass.config_entries.async_add_subentry(loaded_entry, sub)
    await hass.async_block_till_done()
    registry = er.async_get(hass)
    entity_id = registry.async_get_entity_id("event", "recovery_coach", f"{sub.subentry_id}_nudges")
    assert entity_id is not None
    await _fire(hass, "sam/nudge", json.dumps(nudge(user="sam", nudge_id="s1")))
    state = hass.states.get(entity_id)
    assert state is not None
    assert state.attributes["event_type"] == "sent"

    hass.config_entries.async_remove_subentry(loaded_entry, sub.subentry_id)
    await hass.async_block_till_done()
    assert registry.async_get(entity_id) is None
