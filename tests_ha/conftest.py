"""Fixtures for the Recovery Coach integration tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.typing import (
    MqttMockHAClient,
    MqttMockHAClientGenerator,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Let Home Assistant load custom_components/recovery_coach in every test."""
    return


@pytest.fixture(autouse=True)
def auto_mock_hass_config(mock_hass_config: None) -> None:
    """Give MQTT an (empty) configuration.yaml to read when it sets up."""


def load_service_discovery() -> ModuleType:
    """Import the service's discovery module as the service does,
    `recovery_coach.contract.discovery`.

    It and what it imports (the packages' __init__ files, core/models.py and
    core/vocabulary.py) are standard library only, so the service's dependencies never
    have to install in the HA venv.
    """
    service_dir = str(REPO_ROOT / "service")
    if service_dir not in sys.path:
        sys.path.insert(0, service_dir)
    return importlib.import_module("recovery_coach.contract.discovery")


@pytest.fixture(scope="session")
def service_discovery() -> ModuleType:
    """The service's discovery module."""
    return load_service_discovery()


def user_state(**overrides: Any) -> dict[str, Any]:
    """A contract `<base>/<user>/state` payload for user alex."""
    state: dict[str, Any] = {
        "user": "alex",
        "name": "Alex",
        "next_bedtime": "2025-03-04T22:15:00+01:00",
        "next_winddown": "2025-03-04T21:45:00+01:00",
        "next_wake": "2025-03-05T06:30:00+01:00",
        "cooldown_ends_at": None,
        "protein_target_g": 128,
        "protein_logged_g": 40,
        "protein_remaining_g": 88,
        "zone2_minutes_week": 75,
        "zone2_target_minutes_week": 150,
        "zone2_progress_pct": 50,
        "last_workout": {
            "event_id": "w1",
            "ended_at": "2025-03-04T18:00:00+01:00",
            "kind": "strength",
            "focus": "legs",
            "rpe": 8,
            "leg_day": True,
        },
        "last_nudge": None,
        "updated_at": "2025-03-04T18:00:05+01:00",
    }
    state.update(overrides)
    return state


def nudge(**overrides: Any) -> dict[str, Any]:
    """A contract `<base>/<user>/nudge` payload for user alex."""
    payload: dict[str, Any] = {
        "nudge_id": "n_ab12cd34",
        "user": "alex",
        "rule": "R2",
        "kind": "cardio_advice",
        "title": "Cardio after leg day",
        "message": "Cardio is fine today: keep it easy, 6/10 or less.",
        "speech": "Cardio is fine today, keep it easy.",
        "due_at": "2025-03-04T18:00:00+01:00",
        "expires_at": None,
        "source_event_id": "w1",
        "evidence": ["CDC effort scale", "talk test"],
        "data": {},
    }
    payload.update(overrides)
    return payload


BASE = "recovery_coach"


@pytest.fixture
def entry_options() -> dict[str, Any]:
    """Options of the test entry: alex followed with one phone."""
    return {"users": {"alex": {"phones": ["mobile_app_pixel"]}}}


@pytest.fixture
async def mqtt_mock(mqtt_mock_entry: MqttMockHAClientGenerator) -> MqttMockHAClient:
    """HA's MQTT integration, set up against a mocked broker client."""
    return await mqtt_mock_entry()


@pytest.fixture
async def loaded_entry(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, entry_options: dict[str, Any]
) -> MockConfigEntry:
    """A loaded Recovery Coach entry on the default base topic."""
    entry = MockConfigEntry(
        domain="recovery_coach",
        title="Recovery Coach (recovery_coach)",
        unique_id=BASE,
        data={"base_topic": BASE},
        options=entry_options,
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry
