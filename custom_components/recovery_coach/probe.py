"""Find a Recovery Coach service on MQTT from its retained messages."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from homeassistant.components import mqtt
from homeassistant.core import HomeAssistant, callback

from .const import PROBE_SETTLE_S, PROBE_TIMEOUT_S
from .payloads import parse_json_object
from .topics import state_topic, status_topic, user_from_topic


@dataclass
class ServiceProbe:
    """What the broker holds for one base topic: the service status and its users."""

    status: str | None = None
    users: dict[str, str] = field(default_factory=dict)  # user id -> display name


async def async_probe_service(
    hass: HomeAssistant,
    base_topic: str,
    timeout: float = PROBE_TIMEOUT_S,
    settle: float = PROBE_SETTLE_S,
) -> ServiceProbe:
    """Listen for the retained `<base>/status` and `<base>/+/state` messages."""
    probe = ServiceProbe()
    status_seen = asyncio.Event()

    @callback
    def on_status(msg: mqtt.ReceiveMessage) -> None:
        probe.status = str(msg.payload)
        status_seen.set()

    @callback
    def on_state(msg: mqtt.ReceiveMessage) -> None:
        user_id = user_from_topic(base_topic, msg.topic)
        state = parse_json_object(msg.payload)
        if user_id is None or state is None:
            return
        name = state.get("name")
        probe.users[user_id] = name if isinstance(name, str) and name else user_id

    unsubscribers = [
        await mqtt.async_subscribe(hass, status_topic(base_topic), on_status, qos=1),
        await mqtt.async_subscribe(hass, state_topic(base_topic, "+"), on_state, qos=1),
    ]
    try:
        async with asyncio.timeout(timeout):
            await status_seen.wait()
        # Retained user states arrive right behind the status; give them a moment.
        await asyncio.sleep(settle)
    except TimeoutError:
        pass
    finally:
        for unsubscribe in unsubscribers:
            unsubscribe()
    return probe
