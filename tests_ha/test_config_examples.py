"""The example blueprint runs in HA's automation engine; the dashboard names real entities."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from homeassistant.core import HomeAssistant
from homeassistant.helpers.template import Template
from homeassistant.setup import async_setup_component
from homeassistant.util.yaml import load_yaml
from pytest_homeassistant_custom_component.common import async_fire_mqtt_message
from pytest_homeassistant_custom_component.typing import (
    MqttMockHAClient,
    MqttMockHAClientGenerator,
)

from .conftest import REPO_ROOT, nudge, user_state
from .mqtt_discovery import BASE, EXPECTED_ENTITIES, discover, service_online_with_state

EXAMPLES = REPO_ROOT / "config" / "homeassistant"
BLUEPRINT = EXAMPLES / "blueprints" / "automation" / "recovery_coach" / "gym_checkin.yaml"

GYM = {"latitude": 52.5, "longitude": 13.4, "radius": 100, "friendly_name": "Gym"}
AT_GYM = {"latitude": 52.5, "longitude": 13.4, "gps_accuracy": 5}
AT_HOME = {"latitude": 52.6, "longitude": 13.6, "gps_accuracy": 5}


async def _setup_blueprint_automation(hass: HomeAssistant, tmp_path: Path, user_id: str) -> None:
    hass.config.config_dir = str(tmp_path)
    target = tmp_path / "blueprints" / "automation" / "recovery_coach"
    target.mkdir(parents=True)
    shutil.copy(BLUEPRINT, target / "gym_checkin.yaml")
    hass.states.async_set("zone.gym", "0", GYM)
    hass.states.async_set("person.alex", "not_home", AT_HOME)
    assert await async_setup_component(
        hass,
        "automation",
        {
            "automation": {
                "id": "gym",
                "alias": "Gym check-in",
                "use_blueprint": {
                    "path": "recovery_coach/gym_checkin.yaml",
                    "input": {
                        "person": "person.alex",
                        "gym_zone": "zone.gym",
                        "user_id": user_id,
                    },
                },
            }
        },
    )
    await hass.async_block_till_done()


async def test_blueprint_publishes_checkin_and_checkout(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, tmp_path: Path
) -> None:
    """Entering and leaving the gym zone publish the contract's gym messages."""
    await _setup_blueprint_automation(hass, tmp_path, "alex")
    assert hass.states.get("automation.gym_check_in").state == "on"

    mqtt_mock.async_publish.reset_mock()
    hass.states.async_set("person.alex", "Gym", AT_GYM)
    await hass.async_block_till_done()
    hass.states.async_set("person.alex", "not_home", AT_HOME)
    await hass.async_block_till_done()

    calls = mqtt_mock.async_publish.call_args_list
    assert [call.args[0] for call in calls] == [
        "recovery_coach/alex/gym/checkin",
        "recovery_coach/alex/gym/checkout",
    ]
    payloads: list[dict[str, Any]] = [json.loads(call.args[1]) for call in calls]
    for payload in payloads:
        assert set(payload) == {"at", "event_id"}
        assert re.fullmatch(r"[0-9a-f]{32}", payload["event_id"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+[+-]\d\d:\d\d", payload["at"])
    assert payloads[0]["event_id"] != payloads[1]["event_id"]
    assert [call.args[2:] for call in calls] == [(1, False), (1, False)]


async def test_blueprint_refuses_an_invalid_user_id(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, tmp_path: Path
) -> None:
    """A user id the service would refuse is never published."""
    await _setup_blueprint_automation(hass, tmp_path, "Alex Smith")
    mqtt_mock.async_publish.reset_mock()
    hass.states.async_set("person.alex", "Gym", AT_GYM)
    await hass.async_block_till_done()
    mqtt_mock.async_publish.assert_not_called()


def _entity_ids(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("entity", "entity_id") and isinstance(value, str):
                found.add(value)
            found |= _entity_ids(value)
    elif isinstance(node, list):
        for item in node:
            found |= _entity_ids(item)
    return found


def test_dashboard_uses_only_discovered_entities() -> None:
    """Every entity on the example dashboard is one the service's discovery creates."""
    dashboard = yaml.safe_load((EXAMPLES / "dashboard.yaml").read_text())
    used = _entity_ids(dashboard)
    assert used
    assert used <= set(EXPECTED_ENTITIES), used - set(EXPECTED_ENTITIES)


def test_blueprint_is_valid_for_ha() -> None:
    """HA's blueprint schema accepts the file as an automation blueprint."""
    from homeassistant.components.automation.config import (
        AUTOMATION_BLUEPRINT_SCHEMA,
    )
    from homeassistant.components.blueprint.models import Blueprint

    blueprint = Blueprint(
        load_yaml(str(BLUEPRINT)),
        expected_domain="automation",
        schema=AUTOMATION_BLUEPRINT_SCHEMA,
    )
    assert set(blueprint.inputs) == {"person", "gym_zone", "user_id", "base_topic"}


def _cards(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if "type" in node:
            found.append(node)
        for value in node.values():
            found += _cards(value)
    elif isinstance(node, list):
        for item in node:
            found += _cards(item)
    return found


async def test_dashboard_shows_the_last_nudges_words(
    hass: HomeAssistant,
    mqtt_mock_entry: MqttMockHAClientGenerator,
    service_discovery: ModuleType,
) -> None:
    """The dashboard's text cards, rendered by HA's template engine, carry the nudge itself.

    A nudge arrives through the service's own discovery and HA's MQTT integration; whatever
    the dashboard shows in words must then include the nudge's title and message.
    """
    await mqtt_mock_entry()
    await discover(hass, service_discovery.discovery_messages(BASE, "alex", "Alex", "0.1.0"))
    await service_online_with_state(hass, user_state())
    dashboard = yaml.safe_load((EXAMPLES / "dashboard.yaml").read_text())
    texts = [card["content"] for card in _cards(dashboard) if card["type"] == "markdown"]
    assert texts, "the dashboard has no card that can show a nudge's words"

    def rendered() -> str:
        return "\n".join(Template(text, hass).async_render(parse_result=False) for text in texts)

    before = rendered()
    sent = nudge(title="Cool down now", message="Walk easy for 8 minutes, then stretch your quads.")
    async_fire_mqtt_message(hass, f"{BASE}/alex/nudge", json.dumps(sent), qos=1)
    await hass.async_block_till_done()
    after = rendered()

    assert sent["message"] not in before
    assert sent["title"] in after
    assert sent["message"] in after
    assert "None" not in before + after
