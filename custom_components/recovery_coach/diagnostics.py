"""Diagnostics: what the entry follows and last heard, without health figures."""

from __future__ import annotations

from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.core import HomeAssistant

from .hub import RecoveryCoachConfigEntry

# Health figures (weight, sleep, soreness, effort, protein, heart rate), free text that may
# quote them, and anything credential-like; the same keys wherever they appear.
TO_REDACT = {
    # weight and protein
    "weight_kg", "weight_entity", "protein_g_per_kg", "protein_target_g", "protein_logged_g",
    "protein_remaining_g", "grams",
    # sleep
    "sleep_hours", "wake_time", "wake_by_day", "next_bedtime", "next_winddown", "next_wake",
    # soreness, effort, heart rate, training
    "soreness", "level", "rpe", "rpe_cap", "max_heart_rate", "zone2_minutes_week",
    "zone2_progress_pct", "last_workout",
    # what nudges say
    "message", "speech", "title", "data", "evidence",
    # credentials
    "password", "username", "token",
}  # fmt: skip


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: RecoveryCoachConfigEntry
) -> dict[str, Any]:
    """Return the entry's settings and the latest state seen per user, redacted."""
    hub = entry.runtime_data.hub
    return async_redact_data(
        {
            "base_topic": hub.base_topic,
            "options": dict(entry.options),
            "people": {
                sub.subentry_id: {"type": sub.subentry_type, "settings": dict(sub.data)}
                for sub in entry.subentries.values()
            },
            "service_status": hub.status,
            "followed_users": hub.followed_users,
            "states": hub.states,
            "last_nudges": hub.last_nudges,
        },
        TO_REDACT,
    )
