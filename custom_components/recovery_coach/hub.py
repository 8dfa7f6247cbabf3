"""The live MQTT link of one config entry: latest state per user, nudges, publishing."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from homeassistant.components import mqtt
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback

from .const import CONF_BASE_TOPIC, LOGGER, STATUS_ONLINE
from .payloads import is_valid_nudge, parse_json_object
from .profiles import followed_of
from .topics import event_topic, nudge_topic, state_topic, status_topic, user_from_topic

type NudgeListener = Callable[[str, dict[str, Any]], None]

# The service sends each nudge at least once: after a crash it may resend one with the same
# id. Remembering the last ids per user keeps a phone from buzzing twice.
RECENT_NUDGE_IDS = 256


@dataclass
class RecoveryCoachRuntimeData:
    """What a loaded entry keeps: the hub and what to undo on unload."""

    hub: RecoveryCoachHub
    unsubscribers: list[CALLBACK_TYPE] = field(default_factory=list)
    # What the entry was set up from (options, people), to tell a change of either.
    configured: tuple[Any, Any] = field(default_factory=lambda: ({}, {}))
    # What follows the people (their sources, weights, late refusals, gym zones); undone
    # and made again when they change.
    people: list[CALLBACK_TYPE] = field(default_factory=list)


type RecoveryCoachConfigEntry = ConfigEntry[RecoveryCoachRuntimeData]


class RecoveryCoachHub:
    """Keeps the service's status and each user's latest state; hands nudges on."""

    def __init__(self, hass: HomeAssistant, entry: ConfigEntry) -> None:
        """Prepare the hub for an entry; nothing is subscribed until async_start."""
        self.hass = hass
        self.base_topic: str = entry.data[CONF_BASE_TOPIC]
        # The users followed: the people set up in this entry and the service's YAML users
        # it follows (one subentry each).
        self.user_settings: dict[str, dict[str, Any]] = followed_of(entry)
        self.status: str | None = None
        self.states: dict[str, dict[str, Any]] = {}
        self.last_nudges: dict[str, dict[str, Any]] = {}
        self._recent_ids: dict[str, deque[str]] = {}
        self._nudge_listeners: list[NudgeListener] = []
        self._unsubscribers: list[CALLBACK_TYPE] = []

    @property
    def followed_users(self) -> list[str]:
        """User ids this entry follows, in a stable order."""
        return sorted(self.user_settings)

    @property
    def online(self) -> bool:
        """Whether the service last said it is online."""
        return self.status == STATUS_ONLINE

    def display_name(self, user_id: str) -> str:
        """The user's name as the service reports it, else the id."""
        name = self.states.get(user_id, {}).get("name")
        return name if isinstance(name, str) and name else user_id

    async def async_start(self) -> None:
        """Subscribe to the service's status, user states and nudges."""
        base = self.base_topic
        self._unsubscribers = [
            await mqtt.async_subscribe(self.hass, status_topic(base), self._on_status, qos=1),
            await mqtt.async_subscribe(self.hass, state_topic(base, "+"), self._on_state, qos=1),
            await mqtt.async_subscribe(self.hass, nudge_topic(base, "+"), self._on_nudge, qos=1),
        ]

    @callback
    def async_stop(self) -> None:
        """Unsubscribe everything."""
        while self._unsubscribers:
            self._unsubscribers.pop()()

    @callback
    def async_add_nudge_listener(self, listener: NudgeListener) -> CALLBACK_TYPE:
        """Call listener(user_id, nudge) for each valid nudge of a followed user."""
        self._nudge_listeners.append(listener)
        return lambda: self._nudge_listeners.remove(listener)

    async def async_publish(self, user_id: str, event: str, payload: dict[str, Any]) -> None:
        """Publish an inbound contract event for a user (QoS 1, not retained)."""
        await self.async_publish_raw(event_topic(self.base_topic, user_id, event), payload)

    async def async_publish_raw(self, topic: str, payload: dict[str, Any]) -> None:
        """Publish a JSON payload on a topic (QoS 1, not retained)."""
        await mqtt.async_publish(self.hass, topic, json.dumps(payload), qos=1)

    @callback
    def _on_status(self, msg: mqtt.ReceiveMessage) -> None:
        status = str(msg.payload)
        if status != self.status:
            # Logged once per change, as a connection log should be.
            LOGGER.info("Recovery Coach service on %s is %s", self.base_topic, status)
        self.status = status

    @callback
    def _on_state(self, msg: mqtt.ReceiveMessage) -> None:
        user_id = user_from_topic(self.base_topic, msg.topic)
        state = parse_json_object(msg.payload)
        if user_id is None or state is None:
            LOGGER.debug("Ignoring unreadable state on %s", msg.topic)
            return
        self.states[user_id] = state

    @callback
    def _on_nudge(self, msg: mqtt.ReceiveMessage) -> None:
        user_id = user_from_topic(self.base_topic, msg.topic)
        if user_id is None or user_id not in self.user_settings:
            return
        nudge = parse_json_object(msg.payload)
        if nudge is None or not is_valid_nudge(nudge):
            LOGGER.warning("Ignoring a malformed nudge on %s", msg.topic)
            return
        recent = self._recent_ids.setdefault(user_id, deque(maxlen=RECENT_NUDGE_IDS))
        if nudge["nudge_id"] in recent:
            LOGGER.debug("Nudge %s for %s already handled", nudge["nudge_id"], user_id)
            return
        recent.append(nudge["nudge_id"])
        self.last_nudges[user_id] = nudge
        for listener in list(self._nudge_listeners):
            listener(user_id, nudge)
