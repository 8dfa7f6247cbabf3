"""Assist answers the four questions from the followed users' latest state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from custom_components.recovery_coach.voice import install_sentence_files, shipped_languages
from freezegun.api import FrozenDateTimeFactory
from homeassistant.components import conversation
from homeassistant.core import Context, HomeAssistant
from homeassistant.helpers import intent
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_mqtt_message
from pytest_homeassistant_custom_component.typing import MqttMockHAClient

from .conftest import BASE, user_state


@pytest.fixture(autouse=True)
async def setup_conversation(hass: HomeAssistant, tmp_path: Path) -> None:
    """The default Assist agent, with Home Assistant in Berlin time, and the integration's
    sentence files where its repair puts them (test_repairs.py walks that fix itself)."""
    hass.config.config_dir = str(tmp_path)
    await hass.async_add_executor_job(install_sentence_files, tmp_path, shipped_languages())
    await hass.config.async_set_time_zone("Europe/Berlin")
    assert await async_setup_component(hass, "homeassistant", {})
    assert await async_setup_component(hass, "conversation", {})


async def _ask(hass: HomeAssistant, text: str) -> str:
    result = await conversation.async_converse(hass, text, None, Context(), language="en")
    speech: str = result.response.speech["plain"]["speech"]
    return speech


async def _publish_state(hass: HomeAssistant, user: str, state: dict[str, Any]) -> None:
    async_fire_mqtt_message(hass, f"{BASE}/{user}/state", json.dumps(state), retain=True)
    await hass.async_block_till_done()


@pytest.mark.parametrize(
    "question",
    ["When should I go to bed?", "what time should I go to sleep tonight", "what's my bedtime"],
)
async def test_bedtime(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, loaded_entry: MockConfigEntry, question: str
) -> None:
    """Bedtime and wind-down in local time."""
    await _publish_state(hass, "alex", user_state())
    assert await _ask(hass, question) == (
        "Alex, go to bed at 22:15 to get your 8 hours of sleep. Start winding down at 21:45."
    )


async def test_voice_answers_use_the_users_own_settings(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, loaded_entry: MockConfigEntry
) -> None:
    """A user who sleeps 9.5 h and keeps easy cardio at 5/10 hears their own numbers."""
    await _publish_state(hass, "alex", user_state(sleep_hours=9.5, rpe_cap=5))
    bedtime = await _ask(hass, "what's my bedtime")
    assert bedtime.startswith("Alex, go to bed at 22:15 to get your 9.5 hours of sleep.")
    cardio = await _ask(hass, "Can I do cardio after leg day?")
    assert "an effort of 5 out of 10 or less" in cardio


async def test_bedtime_is_told_on_the_persons_own_clock(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, loaded_entry: MockConfigEntry
) -> None:
    """A person in Tokyo, a Home Assistant in Berlin: 22:15 is their bedtime, not 14:15."""
    tokyo = user_state(
        next_bedtime="2025-03-04T22:15:00+09:00", next_winddown="2025-03-04T21:45:00+09:00"
    )
    await _publish_state(hass, "alex", tokyo)
    assert await _ask(hass, "what's my bedtime") == (
        "Alex, go to bed at 22:15 to get your 8 hours of sleep. Start winding down at 21:45."
    )


@pytest.mark.parametrize(
    ("state", "answer"),
    [
        ({}, "Alex still needs 88 grams of protein today, out of 128."),
        ({"protein_remaining_g": 0}, "Alex has reached today's protein target of 128 grams."),
        (
            {"protein_target_g": None, "protein_remaining_g": None},
            "Alex has no protein target yet: add a body weight in the coach's settings to get"
            " one between 1.2 and 2 grams per kilo.",
        ),
    ],
)
async def test_protein(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    loaded_entry: MockConfigEntry,
    state: dict[str, Any],
    answer: str,
) -> None:
    """Protein still to eat, reached, or no target without a body weight."""
    await _publish_state(hass, "alex", user_state(**state))
    assert await _ask(hass, "How much protein do I still need?") == answer


async def test_cardio_after_leg_day_is_calm_and_evidence_based(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    loaded_entry: MockConfigEntry,
    freezer: FrozenDateTimeFactory,
) -> None:
    """Fine at low to moderate effort (6/10 or less, talk test); never 'kills gains'."""
    freezer.move_to("2025-03-04T19:00:00+01:00")
    await _publish_state(hass, "alex", user_state())
    answer = await _ask(hass, "Can I do cardio after leg day?")
    assert answer.startswith("Yes, cardio after leg day is fine")
    assert "6 out of 10 or less" in answer
    assert "talk but not sing" in answer
    assert "Alex trained legs in the last day, so keep any cardio easy." in answer
    assert "gains" not in answer.lower()

    freezer.move_to("2025-03-07T19:00:00+01:00")
    later = await _ask(hass, "is cardio after leg day bad")
    assert "trained legs" not in later
    assert "6 out of 10 or less" in later


@pytest.mark.parametrize(
    ("figures", "answer"),
    [
        ({}, "Alex has done 75 minutes of zone 2 this week, 50 percent of the 150 minute target."),
        (
            {"zone2_minutes_week": 1, "zone2_progress_pct": 1},
            "Alex has done 1 minute of zone 2 this week, 1 percent of the 150 minute target.",
        ),
    ],
)
async def test_zone2(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    loaded_entry: MockConfigEntry,
    figures: dict[str, Any],
    answer: str,
) -> None:
    """Minutes this week and share of the weekly target."""
    await _publish_state(hass, "alex", user_state(**figures))
    assert await _ask(hass, "What's my zone 2 this week?") == answer


@pytest.mark.parametrize("entry_options", [{"users": {"alex": {}, "sam": {}}}], ids=["two_users"])
async def test_every_followed_user_is_answered(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, loaded_entry: MockConfigEntry
) -> None:
    """Two followed users: both answered by name; unfollowed users are not."""
    await _publish_state(hass, "alex", user_state())
    await _publish_state(
        hass, "sam", user_state(user="sam", name="Sam", zone2_minutes_week=0, zone2_progress_pct=0)
    )
    await _publish_state(hass, "kim", user_state(user="kim", name="Kim"))
    answer = await _ask(hass, "how much zone two have I done this week")
    assert answer == (
        "Alex has done 75 minutes of zone 2 this week, 50 percent of the 150 minute target."
        " Sam has done 0 minutes of zone 2 this week, 0 percent of the 150 minute target."
    )


async def test_no_state_yet(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, loaded_entry: MockConfigEntry
) -> None:
    """Before the service has said anything the answer says so."""
    assert await _ask(hass, "when is my bedtime") == (
        "I haven't heard from the Recovery Coach service yet."
    )


async def test_intents_callable_directly(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, loaded_entry: MockConfigEntry
) -> None:
    """The intents work without the sentences, e.g. for other agents."""
    await _publish_state(hass, "alex", user_state())
    response = await intent.async_handle(hass, "test", "RecoveryCoachProteinRemaining", {})
    assert response.speech["plain"]["speech"] == (
        "Alex still needs 88 grams of protein today, out of 128."
    )
