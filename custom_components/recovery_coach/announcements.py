"""Speaking a nudge on a speaker or voice satellite."""

from __future__ import annotations

from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError

from .const import LOGGER


async def async_announce(
    hass: HomeAssistant, target: str, speech: str, tts_engine: str | None
) -> None:
    """Say `speech` on an assist_satellite (announce) or a media_player (tts.speak)."""
    domain = target.split(".", 1)[0]
    try:
        if domain == "assist_satellite":
            await hass.services.async_call(
                "assist_satellite",
                "announce",
                {"entity_id": target, "message": speech},
                blocking=True,
            )
            return
        engine = tts_engine or next(iter(sorted(hass.states.async_entity_ids("tts"))), None)
        if engine is None:
            LOGGER.warning("No text-to-speech engine to speak on %s", target)
            return
        await hass.services.async_call(
            "tts",
            "speak",
            {"entity_id": engine, "media_player_entity_id": target, "message": speech},
            blocking=True,
        )
    except HomeAssistantError as err:
        LOGGER.warning("Could not speak a nudge on %s: %s", target, err)
