"""The coach's tools for Assist with an LLM: a person's recovery today, their next nudges and
why the last one was sent, read-only, for the person asking unless another is named.

On this harness's Home Assistant (no `llm` platform for integrations yet) the tools come as
the "Recovery Coach" API; on 2026.x the same tools join the Assist API through llm.py's
`async_get_tools`, which scripts/check-ha-source type-checks against that release."""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any

import pytest
from custom_components.recovery_coach.llm import API_ID
from homeassistant.config_entries import ConfigSubentry
from homeassistant.core import Context, HomeAssistant
from homeassistant.helpers import llm
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_mqtt_message
from pytest_homeassistant_custom_component.typing import MqttMockHAClient

from .conftest import BASE, nudge, user_state

ROBIN_HA_USER = "ha-user-robin"


@pytest.fixture
async def robin(hass: HomeAssistant, loaded_entry: MockConfigEntry) -> None:
    """Robin is a person set up here, whose person entity is the HA user ROBIN_HA_USER."""
    hass.states.async_set("person.robin", "home", {"user_id": ROBIN_HA_USER})
    hass.config_entries.async_add_subentry(
        loaded_entry,
        ConfigSubentry(
            data=MappingProxyType({"user_id": "robin", "person": "person.robin", "phones": ["p"]}),
            subentry_type="person",
            title="Robin",
            unique_id="robin",
        ),
    )
    for user, state in (
        ("alex", user_state()),
        ("robin", user_state(user="robin", name="Robin", protein_remaining_g=30)),
    ):
        async_fire_mqtt_message(hass, f"{BASE}/{user}/state", json.dumps(state), retain=True)
    async_fire_mqtt_message(
        hass,
        f"{BASE}/robin/nudge",
        json.dumps(nudge(user="robin", rule="R8", kind="protein", evidence=["Thomas 2016"])),
    )
    await hass.async_block_till_done()


async def _call(
    hass: HomeAssistant, tool: str, args: dict[str, Any], user_id: str | None = None
) -> dict[str, Any]:
    context = llm.LLMContext(
        platform="test",
        context=Context(user_id=user_id),
        language="en",
        assistant="conversation",
        device_id=None,
    )
    api = await llm.async_get_api(hass, API_ID, context)
    tools = {t.name: t for t in api.tools}
    assert set(tools) == {
        "recovery_coach__recovery_today",
        "recovery_coach__next_nudges",
        "recovery_coach__why_last_nudge",
    }
    result: dict[str, Any] = await api.async_call_tool(
        llm.ToolInput(tool_name=f"recovery_coach__{tool}", tool_args=args)
    )
    return result


async def test_recovery_today_is_the_asking_persons(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, robin: None
) -> None:
    result = await _call(hass, "recovery_today", {}, user_id=ROBIN_HA_USER)
    (only,) = result["people"]
    assert only["person"] == "Robin"
    assert only["protein_remaining_g"] == 30
    assert only["next_bedtime"] == "2025-03-04T22:15:00+01:00"


async def test_someone_may_be_named_and_everyone_answers_an_unknown_asker(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, robin: None
) -> None:
    named = await _call(hass, "recovery_today", {"person": "alex"}, user_id=ROBIN_HA_USER)
    assert [p["person"] for p in named["people"]] == ["Alex"]
    everyone = await _call(hass, "recovery_today", {})
    assert sorted(p["person"] for p in everyone["people"]) == ["Alex", "Robin"]
    nobody = await _call(hass, "recovery_today", {"person": "kim"})
    assert nobody["people"] == []
    assert "no such person" in nobody["error"]


async def test_why_the_last_nudge_was_sent(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, robin: None
) -> None:
    result = await _call(hass, "why_last_nudge", {}, user_id=ROBIN_HA_USER)
    (only,) = result["people"]
    last = only["last_nudge"]
    assert (last["rule"], last["kind"]) == ("R8", "protein")
    assert last["evidence"] == ["Thomas 2016"]


async def test_next_nudges_come_from_the_services_state(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, robin: None
) -> None:
    upcoming = [{"kind": "bedtime", "rule": "R9", "due_at": "2025-03-04T22:15:00+01:00"}]
    state = user_state(user="robin", name="Robin", next_nudges=upcoming)
    async_fire_mqtt_message(hass, f"{BASE}/robin/state", json.dumps(state))
    await hass.async_block_till_done()
    result = await _call(hass, "next_nudges", {"person": "Robin"})
    assert result["people"][0]["next_nudges"] == upcoming
