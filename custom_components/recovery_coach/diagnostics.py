"""Diagnostics: what the entry follows and last heard, without health figures."""

from __future__ import annotations

from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.core import HomeAssistant

from .hub import RecoveryCoachConfigEntry

# Health figures and free text that may quote them, plus anything credential-like.
TO_REDACT = {
    "protein_target_g",
    "protein_logged_g",
    "protein_remaining_g",
    "grams",
    "weight_kg",
    "soreness",
    "level",
    "rpe",
    "message",
    "speech",
    "title",
    "data",
    "evidence",
    "password",
    "username",
    "token",
}


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: RecoveryCoachConfigEntry
) -> dict[str, Any]:
    """Return the entry's settings and the latest state seen per user, redacted."""
    hub = entry.runtime_data.hub
    return async_redact_data(
        {
            "base_topic": hub.base_topic,
            "options": dict(entry.options),
            "service_status": hub.status,
            "followed_users": hub.followed_users,
            "states": hub.states,
            "last_nudges": hub.last_nudges,
        },
        TO_REDACT,
    )
