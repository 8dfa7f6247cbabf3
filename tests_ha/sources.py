"""Activity sources as the integrations that own them shape them, for the tests that
follow a person's sources (a Garmin Connect `last_activity` sensor)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

from custom_components.recovery_coach.people import SUBENTRY_PERSON
from homeassistant.config_entries import ConfigSubentry
from homeassistant.core import HomeAssistant
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry

ENTITY = "sensor.robin_garmin_last_activity"


def garmin_activity(
    activity_id: int, type_key: str, ended: datetime, minutes: float = 50, **extra: Any
) -> dict[str, Any]:
    """Garmin's activity as its API returns it (a subset of its keys)."""
    start_gmt = ended.astimezone(UTC) - timedelta(minutes=minutes)
    start_local = start_gmt + timedelta(hours=2)  # the activity was recorded at UTC+2
    return {
        "activityId": activity_id,
        "activityName": f"Afternoon {type_key}",
        "startTimeLocal": start_local.strftime("%Y-%m-%d %H:%M:%S"),
        "startTimeGMT": start_gmt.strftime("%Y-%m-%d %H:%M:%S"),
        "activityType": {"typeId": 13, "typeKey": type_key, "parentTypeId": 17},
        "duration": minutes * 60.0,
        "elapsedDuration": minutes * 60.0 + 30,
        "averageHR": 128.0,
        "maxHR": 171.0,
        "calories": 420.0,
        **extra,
    }


def set_last_activity(hass: HomeAssistant, activity: dict[str, Any]) -> None:
    hass.states.async_set(ENTITY, activity["activityName"], activity)


async def settle(hass: HomeAssistant) -> None:
    await hass.async_block_till_done()
    await asyncio.sleep(0)
    await hass.async_block_till_done()


async def add_person(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    user_id: str,
    source: str,
    added_ago: timedelta,
    **data: Any,
) -> MockConfigEntry:
    """A person subentry following `source` since `added_ago`, as the person form saves it."""
    name = user_id.capitalize()
    hass.states.async_set(f"person.{user_id}", "home", {"friendly_name": name})
    added = dt_util.utcnow() - added_ago
    hass.config_entries.async_add_subentry(
        entry,
        ConfigSubentry(
            data=MappingProxyType(
                {
                    "person": f"person.{user_id}",
                    "user_id": user_id,
                    **data,
                    "activity_sources": [source],
                    "activity_sources_since": {source: added.isoformat()},
                }
            ),
            subentry_type=SUBENTRY_PERSON,
            title=name,
            unique_id=user_id,
        ),
    )
    await settle(hass)
    return entry
