"""Repairs: Assist's sentences put in place from Settings > Repairs; a service offline for
long; a person's activity source gone or silent for days; a person nobody can notify."""

from __future__ import annotations

import json
from datetime import timedelta
from http import HTTPStatus
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from custom_components.recovery_coach.voice import (
    INSTALLED_NAME,
    MARKER,
    install_sentence_files,
    shipped_languages,
)
from freezegun.api import FrozenDateTimeFactory
from homeassistant.components import conversation
from homeassistant.components.repairs.issue_handler import async_process_repairs_platforms
from homeassistant.config_entries import ConfigSubentry
from homeassistant.core import Context, HomeAssistant
from homeassistant.helpers import issue_registry as ir
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_mqtt_message,
    async_fire_time_changed,
)
from pytest_homeassistant_custom_component.typing import (
    ClientSessionGenerator,
    MqttMockHAClient,
)

from .conftest import BASE, user_state
from .sources import ENTITY, add_person, garmin_activity, set_last_activity

DOMAIN = "recovery_coach"


def issue(hass: HomeAssistant, issue_id: str) -> ir.IssueEntry | None:
    return ir.async_get(hass).async_get_issue(DOMAIN, issue_id)


@pytest.fixture
async def config_dir(hass: HomeAssistant, tmp_path: Path) -> Path:
    """A config folder of the test's own (custom_sentences are written into it)."""
    hass.config.config_dir = str(tmp_path)
    return tmp_path


# ------------------------------------------------------------------ Assist's sentences


async def test_the_assist_sentences_repair_puts_them_in_place_and_assist_answers(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    config_dir: Path,
    mqtt_mock: MqttMockHAClient,
    loaded_entry: MockConfigEntry,
) -> None:
    assert await async_setup_component(hass, "homeassistant", {})
    assert await async_setup_component(hass, "conversation", {})
    assert await async_setup_component(hass, "repairs", {})
    await async_process_repairs_platforms(hass)
    await hass.config.async_set_time_zone("Europe/Berlin")
    found = issue(hass, "assist_sentences")
    assert found is not None
    assert found.is_fixable
    async_fire_mqtt_message(hass, f"{BASE}/alex/state", json.dumps(user_state()), retain=True)
    await hass.async_block_till_done()

    async def ask() -> str:
        result = await conversation.async_converse(
            hass, "what's my bedtime", None, Context(), language="en"
        )
        speech: str = result.response.speech["plain"]["speech"]
        return speech

    assert "22:15" not in await ask()  # Assist does not know the question yet

    client = await hass_client()
    resp = await client.post(
        "/api/repairs/issues/fix", json={"handler": DOMAIN, "issue_id": "assist_sentences"}
    )
    assert resp.status == HTTPStatus.OK
    flow = await resp.json()
    assert flow["step_id"] == "confirm"
    resp = await client.post(f"/api/repairs/issues/fix/{flow['flow_id']}", json={})
    assert resp.status == HTTPStatus.OK
    assert (await resp.json())["type"] == "create_entry"
    await hass.async_block_till_done()

    for language in shipped_languages():
        path = config_dir / "custom_sentences" / language / INSTALLED_NAME
        assert path.read_text(encoding="utf-8").startswith(MARKER)
    assert issue(hass, "assist_sentences") is None
    assert await ask() == (
        "Alex, go to bed at 22:15 to get your 8 hours of sleep. Start winding down at 21:45."
    )


async def _raised_at_setup(hass: HomeAssistant, mqtt_mock: MqttMockHAClient) -> bool:
    entry = MockConfigEntry(domain=DOMAIN, unique_id=BASE, data={"base_topic": BASE})
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return issue(hass, "assist_sentences") is not None


async def test_an_older_copy_of_ours_is_offered_again_and_an_edited_file_is_left_alone(
    hass: HomeAssistant, config_dir: Path, mqtt_mock: MqttMockHAClient
) -> None:
    paths = await hass.async_add_executor_job(
        install_sentence_files, config_dir, shipped_languages()
    )
    first = paths[0]
    first.write_text(first.read_text().replace("bedtime", "bed time"), encoding="utf-8")
    assert await _raised_at_setup(hass, mqtt_mock)  # ours, but older: offered again

    edited = first.read_text().split("\n", 1)[1]  # the person took our line out
    first.write_text(edited, encoding="utf-8")
    ir.async_delete_issue(hass, DOMAIN, "assist_sentences")
    await hass.config_entries.async_reload(hass.config_entries.async_entries(DOMAIN)[0].entry_id)
    await hass.async_block_till_done()
    assert issue(hass, "assist_sentences") is None
    assert first.read_text() == edited


# ------------------------------------------------------------------ the service offline


async def test_the_service_offline_for_long_is_a_repair_until_it_is_back(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    mqtt_mock: MqttMockHAClient,
    loaded_entry: MockConfigEntry,
) -> None:
    issue_id = f"service_offline_{loaded_entry.entry_id}"
    async_fire_mqtt_message(hass, f"{BASE}/status", "online", retain=True)
    await hass.async_block_till_done()
    # Live (not the retained copy a new subscription gets): the service's last will.
    async_fire_mqtt_message(hass, f"{BASE}/status", "offline")
    await hass.async_block_till_done()
    freezer.tick(timedelta(minutes=14))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert issue(hass, issue_id) is None  # a restart is no news
    freezer.tick(timedelta(minutes=2))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    found = issue(hass, issue_id)
    assert found is not None
    assert found.translation_placeholders == {
        "base_topic": BASE,
        "minutes": "15",
        "status": "offline",
    }
    async_fire_mqtt_message(hass, f"{BASE}/status", "online")
    await hass.async_block_till_done()
    assert issue(hass, issue_id) is None


async def test_a_service_never_heard_is_a_repair_too(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    mqtt_mock: MqttMockHAClient,
    loaded_entry: MockConfigEntry,
) -> None:
    freezer.tick(timedelta(minutes=16))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    found = issue(hass, f"service_offline_{loaded_entry.entry_id}")
    assert found is not None
    assert found.translation_placeholders is not None
    assert found.translation_placeholders["status"] == "never heard"


# ------------------------------------------------------------------ activity sources


async def test_a_source_silent_for_days_is_said_and_its_old_activity_not_sent(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, loaded_entry: MockConfigEntry
) -> None:
    """A watch not synced for 9 days: its last activity is not today's workout, a repair
    says why, and the next new activity clears it."""
    old = dt_util.utcnow() - timedelta(days=9, hours=2)
    set_last_activity(hass, garmin_activity(1, "running", old))
    await add_person(hass, loaded_entry, "robin", ENTITY, timedelta(days=30), phones=["p"])
    issue_id = f"source_silent_{loaded_entry.entry_id}_robin_{ENTITY.replace('.', '_')}"
    found = issue(hass, issue_id)
    assert found is not None
    assert found.translation_key == "source_silent"
    assert found.translation_placeholders == {"name": "Robin", "entity": ENTITY, "days": "9"}
    published = [c.args[0] for c in mqtt_mock.async_publish.call_args_list]
    assert f"{BASE}/robin/workout/completed" not in published

    set_last_activity(hass, garmin_activity(2, "running", dt_util.utcnow()))
    await hass.async_block_till_done()
    assert issue(hass, issue_id) is None


async def test_a_source_that_is_gone_is_said(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, loaded_entry: MockConfigEntry
) -> None:
    await add_person(
        hass, loaded_entry, "robin", "sensor.gone_last_activity", timedelta(days=3), phones=["p"]
    )
    found = issue(hass, f"source_silent_{loaded_entry.entry_id}_robin_sensor_gone_last_activity")
    assert found is not None
    assert found.translation_key == "source_missing"


# ------------------------------------------------------------------ nobody to notify


async def test_a_person_with_no_phone_and_no_speaker_is_a_repair(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, loaded_entry: MockConfigEntry
) -> None:
    sub = ConfigSubentry(
        data=MappingProxyType({"user_id": "sam"}),
        subentry_type="service_user",
        title="Sam",
        unique_id="sam",
    )
    hass.config_entries.async_add_subentry(loaded_entry, sub)
    await hass.async_block_till_done()
    issue_id = f"no_notify_target_{loaded_entry.entry_id}_sam"
    found = issue(hass, issue_id)
    assert found is not None
    assert found.translation_placeholders == {"name": "Sam"}
    assert issue(hass, f"no_notify_target_{loaded_entry.entry_id}_alex") is None  # has a phone

    data: dict[str, Any] = {"user_id": "sam", "phones": ["mobile_app_pixel"]}
    hass.config_entries.async_update_subentry(loaded_entry, sub, data=data)
    await hass.async_block_till_done()
    assert issue(hass, issue_id) is None
