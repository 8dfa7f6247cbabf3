"""The live MQTT link of one config entry: latest state per user, nudges and what people
did with them, the service's status, publishing."""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final

from homeassistant.components import mqtt
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.event import async_call_later

from .const import CONF_BASE_TOPIC, DOMAIN, LOGGER, STATUS_ONLINE
from .payloads import is_valid_nudge, parse_json_object
from .profiles import followed_of
from .topics import (
    event_topic,
    nudge_action_topic,
    nudge_topic,
    state_topic,
    status_topic,
    user_from_topic,
)

type NudgeListener = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class NudgeAction:
    """A person acknowledged or snoozed a nudge (from a phone, a button, anything)."""

    user_id: str
    nudge_id: str
    snooze_minutes: int | None  # None: acknowledged


type ActionListener = Callable[[NudgeAction], None]

# The service sends each nudge at least once: after a crash it may resend one with the same
# id. Remembering the last ids per user keeps a phone from buzzing twice.
RECENT_NUDGE_IDS = 256
# The service offline this long (or never heard) is a repair issue, not a blip.
OFFLINE_LONG: Final = timedelta(minutes=15)


@dataclass
class RecoveryCoachRuntimeData:
    """What a loaded entry keeps: the hub and what to undo on unload."""

    hub: RecoveryCoachHub
    unsubscribers: list[CALLBACK_TYPE] = field(default_factory=list)
    # What the entry was set up from (options, people), to tell a change of either.
    configured: tuple[Any, Any, Any] = field(default_factory=lambda: ({}, {}, {}))
    # What follows the people (their sources, weights, late refusals, gym zones); undone
    # and made again when they change.
    people: list[CALLBACK_TYPE] = field(default_factory=list)
    # The event platform's: adds the entities of people added since (event.py).
    add_entities: Callable[[], None] | None = None


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
        self.entry_id = entry.entry_id
        self.status: str | None = None
        self.states: dict[str, dict[str, Any]] = {}
        self.last_nudges: dict[str, dict[str, Any]] = {}
        self._recent: dict[str, OrderedDict[str, dict[str, Any]]] = {}
        self._nudge_listeners: list[NudgeListener] = []
        self._action_listeners: list[ActionListener] = []
        self._status_listeners: list[CALLBACK_TYPE] = []
        self._unsubscribers: list[CALLBACK_TYPE] = []
        self._offline_timer: CALLBACK_TYPE | None = None

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

    @property
    def offline_issue_id(self) -> str:
        return f"service_offline_{self.entry_id}"

    async def async_start(self) -> None:
        """Subscribe to the service's status, user states, nudges and what people do with
        them (acks and snoozes, whoever sends them)."""
        base = self.base_topic
        on_ack = nudge_action_topic(base, "+", "+", "ack")
        on_snooze = nudge_action_topic(base, "+", "+", "snooze")
        self._unsubscribers = [
            await mqtt.async_subscribe(self.hass, status_topic(base), self._on_status, qos=1),
            await mqtt.async_subscribe(self.hass, state_topic(base, "+"), self._on_state, qos=1),
            await mqtt.async_subscribe(self.hass, nudge_topic(base, "+"), self._on_nudge, qos=1),
            await mqtt.async_subscribe(self.hass, on_ack, self._on_action, qos=1),
            await mqtt.async_subscribe(self.hass, on_snooze, self._on_action, qos=1),
        ]
        self._arm_offline_timer()

    @callback
    def async_stop(self) -> None:
        """Unsubscribe everything."""
        while self._unsubscribers:
            self._unsubscribers.pop()()
        if self._offline_timer is not None:
            self._offline_timer()
            self._offline_timer = None

    @callback
    def _arm_offline_timer(self) -> None:
        if self._offline_timer is None:
            self._offline_timer = async_call_later(self.hass, OFFLINE_LONG, self._offline_too_long)

    @callback
    def _offline_too_long(self, _now: Any) -> None:
        self._offline_timer = None
        LOGGER.warning("Recovery Coach service on %s offline for long", self.base_topic)
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            self.offline_issue_id,
            is_fixable=False,
            severity=ir.IssueSeverity.ERROR,
            translation_key="service_offline",
            translation_placeholders={
                "base_topic": self.base_topic,
                "minutes": str(int(OFFLINE_LONG.total_seconds() // 60)),
                "status": self.status or "never heard",
            },
        )

    @callback
    def async_add_action_listener(self, listener: ActionListener) -> CALLBACK_TYPE:
        """Call listener(action) for each ack or snooze of a followed user's nudge."""
        self._action_listeners.append(listener)
        return lambda: self._action_listeners.remove(listener)

    @callback
    def async_add_status_listener(self, listener: CALLBACK_TYPE) -> CALLBACK_TYPE:
        """Call listener() when the service's status changes."""
        self._status_listeners.append(listener)
        return lambda: self._status_listeners.remove(listener)

    def nudge(self, user_id: str, nudge_id: str) -> dict[str, Any] | None:
        """A recent nudge of the user by id (`last`: the latest), as it was published."""
        recent = self._recent.get(user_id)
        if not recent:
            return None
        if nudge_id == "last":
            return next(reversed(recent.values()))
        return recent.get(nudge_id)

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
        await mqtt.async_publish(self.hass, topic, json.dumps(payload), qos=1, retain=False)

    @callback
    def _on_status(self, msg: mqtt.ReceiveMessage) -> None:
        status = str(msg.payload)
        if status == self.status:
            return
        # Logged once per change, as a connection log should be.
        LOGGER.info("Recovery Coach service on %s is %s", self.base_topic, status)
        self.status = status
        if self.online:
            if self._offline_timer is not None:
                self._offline_timer()
                self._offline_timer = None
            ir.async_delete_issue(self.hass, DOMAIN, self.offline_issue_id)
        else:
            self._arm_offline_timer()
        for listener in list(self._status_listeners):
            listener()

    @callback
    def _on_action(self, msg: mqtt.ReceiveMessage) -> None:
        parts = msg.topic.removeprefix(f"{self.base_topic}/").split("/")
        if len(parts) != 4 or parts[0] not in self.user_settings or msg.retain:
            return
        user_id, _, nudge_id, verb = parts
        snooze: int | None = None
        if verb == "snooze":
            body = parse_json_object(msg.payload) or {}
            minutes = body.get("minutes", 15)
            snooze = minutes if isinstance(minutes, int) and not isinstance(minutes, bool) else 15
        if nudge_id == "last" and (last := self.nudge(user_id, "last")) is not None:
            nudge_id = str(last["nudge_id"])
        action = NudgeAction(user_id, nudge_id, snooze)
        for listener in list(self._action_listeners):
            listener(action)

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
        recent = self._recent.setdefault(user_id, OrderedDict())
        if nudge["nudge_id"] in recent:
            LOGGER.debug("Nudge %s for %s already handled", nudge["nudge_id"], user_id)
            return
        recent[nudge["nudge_id"]] = nudge
        while len(recent) > RECENT_NUDGE_IDS:
            recent.popitem(last=False)
        self.last_nudges[user_id] = nudge
        for listener in list(self._nudge_listeners):
            listener(user_id, nudge)
