"""Actions that log workouts, protein, soreness and gym visits to the service."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import voluptuous as vol
from homeassistant.core import HomeAssistant, ServiceCall, callback
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import config_validation as cv

from . import payloads
from .const import DOMAIN, WORKOUT_FOCUSES, WORKOUT_KINDS
from .hub import RecoveryCoachHub

SERVICE_LOG_WORKOUT = "log_workout"
SERVICE_LOG_PROTEIN = "log_protein"
SERVICE_LOG_SORENESS = "log_soreness"
SERVICE_GYM_CHECKIN = "gym_checkin"
SERVICE_GYM_CHECKOUT = "gym_checkout"

ATTR_USER = "user"
ATTR_AT = "at"

_USER: dict[vol.Marker, Any] = {
    vol.Required(ATTR_USER): vol.All(cv.string, vol.Match(r"^[a-z0-9_]{1,32}$"))
}

SCHEMAS: dict[str, vol.Schema] = {
    SERVICE_LOG_WORKOUT: vol.Schema(
        {
            **_USER,
            vol.Required("kind"): vol.In(WORKOUT_KINDS),
            vol.Optional("ended_at"): cv.datetime,
            vol.Optional("focus"): vol.In(WORKOUT_FOCUSES),
            vol.Optional("muscle_groups"): vol.All(cv.ensure_list, [cv.string]),
            vol.Optional("rpe"): vol.All(vol.Coerce(float), vol.Range(min=0, max=10)),
            vol.Optional("duration_min"): vol.All(vol.Coerce(int), vol.Range(min=1, max=1440)),
            vol.Optional("zone"): vol.All(vol.Coerce(int), vol.Range(min=1, max=5)),
        }
    ),
    SERVICE_LOG_PROTEIN: vol.Schema(
        {
            **_USER,
            vol.Required("grams"): vol.All(
                vol.Coerce(float), vol.Range(min=0, min_included=False, max=500)
            ),
            vol.Optional(ATTR_AT): cv.datetime,
        }
    ),
    SERVICE_LOG_SORENESS: vol.Schema(
        {
            **_USER,
            vol.Required("level"): vol.All(vol.Coerce(int), vol.Range(min=0, max=10)),
            vol.Optional(ATTR_AT): cv.datetime,
        }
    ),
    SERVICE_GYM_CHECKIN: vol.Schema({**_USER, vol.Optional(ATTR_AT): cv.datetime}),
    SERVICE_GYM_CHECKOUT: vol.Schema({**_USER, vol.Optional(ATTR_AT): cv.datetime}),
}


def _whole(value: float) -> int | float:
    """Send 30.0 as 30: the contract's numbers are whole where a person types them so."""
    return int(value) if float(value).is_integer() else value


def _workout(data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    rpe = data.get("rpe")
    return "workout/completed", payloads.workout_completed(
        data["kind"],
        data.get("ended_at"),
        focus=data.get("focus"),
        muscle_groups=data.get("muscle_groups"),
        rpe=_whole(rpe) if rpe is not None else None,
        duration_min=data.get("duration_min"),
        zone=data.get("zone"),
    )


BUILDERS: dict[str, Callable[[dict[str, Any]], tuple[str, dict[str, Any]]]] = {
    SERVICE_LOG_WORKOUT: _workout,
    SERVICE_LOG_PROTEIN: lambda d: (
        "protein/logged",
        payloads.protein_logged(_whole(d["grams"]), d.get(ATTR_AT)),
    ),
    SERVICE_LOG_SORENESS: lambda d: (
        "soreness",
        payloads.soreness(d["level"], d.get(ATTR_AT)),
    ),
    SERVICE_GYM_CHECKIN: lambda d: ("gym/checkin", payloads.gym_visit(d.get(ATTR_AT))),
    SERVICE_GYM_CHECKOUT: lambda d: ("gym/checkout", payloads.gym_visit(d.get(ATTR_AT))),
}


def _hub_for_user(hass: HomeAssistant, user_id: str) -> RecoveryCoachHub:
    for entry in hass.config_entries.async_loaded_entries(DOMAIN):
        hub: RecoveryCoachHub = entry.runtime_data.hub
        if user_id in hub.user_settings:
            return hub
    raise ServiceValidationError(
        translation_domain=DOMAIN,
        translation_key="unknown_user",
        translation_placeholders={"user": user_id},
    )


async def _async_handle(call: ServiceCall) -> None:
    hub = _hub_for_user(call.hass, call.data[ATTR_USER])
    event, payload = BUILDERS[call.service](dict(call.data))
    await hub.async_publish(call.data[ATTR_USER], event, payload)


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    """Register the actions once for all entries."""
    for service, schema in SCHEMAS.items():
        hass.services.async_register(DOMAIN, service, _async_handle, schema=schema)
