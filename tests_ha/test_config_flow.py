"""Config flow: every error explained, then recovered to success; MQTT discovery; options."""

from __future__ import annotations

import asyncio
import json
from unittest.mock import patch

import pytest
from custom_components.recovery_coach.probe import ServiceProbe, async_probe_service
from homeassistant.config_entries import SOURCE_MQTT, SOURCE_RECONFIGURE, SOURCE_USER
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers.service_info.mqtt import MqttServiceInfo
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_mqtt_message,
    async_mock_service,
)
from pytest_homeassistant_custom_component.typing import MqttMockHAClient

from .conftest import BASE, user_state

DOMAIN = "recovery_coach"
PROBE = "custom_components.recovery_coach.config_flow.probe.async_probe_service"

FOUND = ServiceProbe(status="online", users={"alex": "Alex", "sam": "Sam"})


def _discovery_info(payload: str = "online") -> MqttServiceInfo:
    return MqttServiceInfo(
        topic=f"{BASE}/status",
        payload=payload,
        qos=1,
        retain=True,
        subscribed_topic=f"{BASE}/status",
        timestamp=0,
    )


async def test_user_flow_errors_then_success(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient
) -> None:
    """Bad topic, no service and no selection all show an error; then it works."""
    async_mock_service(hass, "notify", "mobile_app_pixel")
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"base_topic": "coach/#"}
    )
    assert result["errors"] == {"base_topic": "invalid_base_topic"}

    with patch(PROBE, return_value=ServiceProbe()):
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"base_topic": "coach"}
        )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "no_service"}
    assert result["description_placeholders"] == {"base_topic": "coach"}

    with patch(PROBE, return_value=FOUND):
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"base_topic": f" {BASE}/ "}
        )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "users"

    result = await hass.config_entries.flow.async_configure(result["flow_id"], {"users": []})
    assert result["errors"] == {"base": "no_users_selected"}

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"users": ["sam", "alex"]}
    )
    assert result["step_id"] == "phones"
    assert result["description_placeholders"] == {"name": "Alex"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"phones": ["mobile_app_pixel"]}
    )
    assert result["step_id"] == "phones"
    assert result["description_placeholders"] == {"name": "Sam"}
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {"phones": []})

    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Recovery Coach (recovery_coach)"
    assert result["data"] == {"base_topic": BASE}
    assert result["options"] == {}
    entry = result["result"]
    assert entry.unique_id == BASE
    # Each followed user of the service's YAML is a subentry of its own.
    assert sorted(
        (s.subentry_type, s.unique_id, s.title, dict(s.data)) for s in entry.subentries.values()
    ) == [
        ("service_user", "alex", "Alex", {"user_id": "alex", "phones": ["mobile_app_pixel"]}),
        ("service_user", "sam", "Sam", {"user_id": "sam", "phones": []}),
    ]


async def test_a_service_without_users_yet_gets_an_entry_to_add_people_to(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient
) -> None:
    """Zero YAML: the service runs with nobody configured; the entry is made at once and
    people are added to it ("Add person", tests_ha/test_people.py)."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    with patch(PROBE, return_value=ServiceProbe(status="online")):
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"base_topic": BASE}
        )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    entry = result["result"]
    assert not entry.subentries
    assert set(entry.supported_subentry_types) == {"person", "service_user"}


async def test_user_flow_aborts_without_mqtt(hass: HomeAssistant) -> None:
    """Without the MQTT integration the flow says so instead of failing later."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "mqtt_not_configured"


async def test_user_flow_aborts_when_base_already_configured(
    hass: HomeAssistant, loaded_entry: MockConfigEntry
) -> None:
    """One entry per base topic."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {"base_topic": BASE})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_mqtt_discovery_flow(hass: HomeAssistant, mqtt_mock: MqttMockHAClient) -> None:
    """HA's MQTT discovery of `recovery_coach/status` starts a confirm step."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_MQTT}, data=_discovery_info()
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "discovery_confirm"
    assert result["description_placeholders"] == {"base_topic": BASE}

    with patch(PROBE, return_value=ServiceProbe()):
        result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["errors"] == {"base": "no_service"}

    with patch(PROBE, return_value=FOUND):
        result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["step_id"] == "users"
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {"users": ["alex"]})
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {"phones": []})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    [sub] = result["result"].subentries.values()
    assert (sub.unique_id, dict(sub.data)) == ("alex", {"user_id": "alex", "phones": []})


@pytest.mark.parametrize("payload", ["", "hello", '{"not": "a status"}'])
async def test_mqtt_discovery_rejects_other_payloads(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, payload: str
) -> None:
    """Only the service's own online/offline status starts a flow."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_MQTT}, data=_discovery_info(payload)
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "invalid_discovery_info"


async def test_mqtt_discovery_aborts_when_configured(
    hass: HomeAssistant, loaded_entry: MockConfigEntry
) -> None:
    """A base topic already set up is not offered again."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_MQTT}, data=_discovery_info()
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_manifest_mqtt_topic_starts_discovery_flow(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient
) -> None:
    """The manifest's `mqtt` key makes HA's MQTT integration start our flow."""
    async_fire_mqtt_message(hass, f"{BASE}/status", "online", qos=1, retain=True)
    await hass.async_block_till_done(wait_background_tasks=True)
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [flow["context"]["source"] for flow in flows] == [SOURCE_MQTT]
    assert flows[0]["step_id"] == "discovery_confirm"


async def test_probe_reads_retained_status_and_states(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient
) -> None:
    """The real probe finds the service and its users from retained messages."""
    task = hass.async_create_task(async_probe_service(hass, BASE, timeout=5, settle=0.05))
    for _ in range(5):
        await asyncio.sleep(0)
    async_fire_mqtt_message(hass, f"{BASE}/status", "online", qos=1, retain=True)
    async_fire_mqtt_message(hass, f"{BASE}/alex/state", json.dumps(user_state()), retain=True)
    async_fire_mqtt_message(hass, f"{BASE}/sam/state", json.dumps({"user": "sam"}), retain=True)
    async_fire_mqtt_message(hass, f"{BASE}/Bad-User/state", "{}", retain=True)
    async_fire_mqtt_message(hass, f"{BASE}/bob/state", "not json", retain=True)
    found = await task
    assert found.status == "online"
    assert found.users == {"alex": "Alex", "sam": "sam"}


async def test_probe_times_out_without_service(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient
) -> None:
    """Nothing retained: no status, no users, after the timeout."""
    found = await async_probe_service(hass, BASE, timeout=0.05, settle=0)
    assert found == ServiceProbe()


async def test_following_another_user_of_the_service(
    hass: HomeAssistant, loaded_entry: MockConfigEntry
) -> None:
    """Phones, speaker and gym zone of a YAML user; half a gym setup is refused; then the
    entry reloads following them."""
    async_mock_service(hass, "notify", "mobile_app_iphone")
    hass.states.async_set("media_player.kitchen", "idle")
    hass.states.async_set("person.sam", "home")
    hass.states.async_set("zone.gym", "0", {"friendly_name": "Gym"})
    async_fire_mqtt_message(hass, f"{BASE}/sam/state", json.dumps({"user": "sam", "name": "Sam"}))
    await hass.async_block_till_done()

    flow = hass.config_entries.subentries
    result = await flow.async_init(
        (loaded_entry.entry_id, "service_user"), context={"source": SOURCE_USER}
    )
    assert result["step_id"] == "user"
    result = await flow.async_configure(result["flow_id"], {"user_id": "alex"})
    assert result["errors"] == {"user_id": "already_followed"}
    result = await flow.async_configure(result["flow_id"], {"user_id": "Sam!"})
    assert result["errors"] == {"user_id": "invalid_user_id"}
    result = await flow.async_configure(
        result["flow_id"], {"user_id": "sam", "tracker": "person.sam"}
    )
    assert result["errors"] == {"base": "gym_needs_tracker_and_zone"}
    settings = {
        "phones": ["mobile_app_iphone"],
        "announce_entity": "media_player.kitchen",
        "tracker": "person.sam",
        "gym_zone": "zone.gym",
    }
    result = await flow.async_configure(result["flow_id"], {"user_id": "sam", **settings})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Sam"
    await hass.async_block_till_done()
    hub = loaded_entry.runtime_data.hub
    assert hub.followed_users == ["alex", "sam"]
    assert hub.user_settings["sam"] == settings

    sub = next(s for s in loaded_entry.subentries.values() if s.unique_id == "sam")
    result = await flow.async_init(
        (loaded_entry.entry_id, "service_user"),
        context={"source": SOURCE_RECONFIGURE, "subentry_id": sub.subentry_id},
    )
    result = await flow.async_configure(result["flow_id"], {"phones": ["mobile_app_iphone"]})
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    assert loaded_entry.runtime_data.hub.user_settings["sam"] == {"phones": ["mobile_app_iphone"]}


async def test_options_are_the_speech_engine(
    hass: HomeAssistant, loaded_entry: MockConfigEntry
) -> None:
    hass.states.async_set("tts.piper", "unknown")
    result = await hass.config_entries.options.async_init(loaded_entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"tts_engine": "tts.piper"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert loaded_entry.options == {"tts_engine": "tts.piper"}
    assert loaded_entry.runtime_data.hub.followed_users == ["alex"]  # reloaded, same users


async def test_a_version_1_entry_moves_its_users_into_subentries(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient
) -> None:
    """Version 1 kept the followed users in the options."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=BASE,
        version=1,
        data={"base_topic": BASE},
        options={
            "users": {
                "alex": {"phones": ["mobile_app_pixel"]},
                "sam": {"tracker": "person.sam", "gym_zone": "zone.gym"},
            },
            "tts_engine": "tts.piper",
        },
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.version == 2
    assert entry.options == {"tts_engine": "tts.piper"}
    assert sorted(
        (s.subentry_type, s.unique_id, dict(s.data)) for s in entry.subentries.values()
    ) == [
        ("service_user", "alex", {"user_id": "alex", "phones": ["mobile_app_pixel"]}),
        (
            "service_user",
            "sam",
            {"user_id": "sam", "tracker": "person.sam", "gym_zone": "zone.gym"},
        ),
    ]
    assert entry.runtime_data.hub.user_settings == {
        "alex": {"phones": ["mobile_app_pixel"]},
        "sam": {"tracker": "person.sam", "gym_zone": "zone.gym"},
    }


async def test_reconfigure_to_another_base_topic(
    hass: HomeAssistant, loaded_entry: MockConfigEntry
) -> None:
    """A bad topic and a missing service are explained; then the entry moves and reloads."""
    result = await loaded_entry.start_reconfigure_flow(hass)
    assert result["step_id"] == "reconfigure"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"base_topic": "a/+/b"}
    )
    assert result["errors"] == {"base_topic": "invalid_base_topic"}
    with patch(PROBE, return_value=ServiceProbe()):
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"base_topic": "coach_home"}
        )
    assert result["errors"] == {"base": "no_service"}
    with patch(PROBE, return_value=FOUND):
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"base_topic": "coach_home"}
        )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    assert loaded_entry.data == {"base_topic": "coach_home"}
    assert loaded_entry.unique_id == "coach_home"
    assert loaded_entry.runtime_data.hub.base_topic == "coach_home"
