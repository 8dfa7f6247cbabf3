"""Event entities: one per followed person, firing on each nudge sent, acknowledged or
snoozed, with its rule and kind, for automations and the logbook."""

from __future__ import annotations

from typing import Any, Final

from homeassistant.components.event import EventEntity
from homeassistant.config_entries import ConfigSubentry
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.device_registry import DeviceEntryType, DeviceInfo
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import DOMAIN
from .hub import NudgeAction, RecoveryCoachConfigEntry, RecoveryCoachHub
from .people import CONF_USER_ID

PARALLEL_UPDATES = 0  # pushed from MQTT: nothing to poll
SENT: Final = "sent"
ACKNOWLEDGED: Final = "acknowledged"
SNOOZED: Final = "snoozed"


async def async_setup_entry(
    hass: HomeAssistant,
    entry: RecoveryCoachConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """An entity per person of the entry (each in their subentry); people added later get
    theirs when the entry's people change (__init__.py)."""
    runtime = entry.runtime_data
    added: set[str] = set()

    @callback
    def add_new() -> None:
        for sub in entry.subentries.values():
            user_id = sub.data.get(CONF_USER_ID)
            if not user_id or sub.subentry_id in added:
                continue
            added.add(sub.subentry_id)
            async_add_entities(
                [NudgeEvents(runtime.hub, sub, user_id)], config_subentry_id=sub.subentry_id
            )

    add_new()
    runtime.add_entities = add_new


class NudgeEvents(EventEntity):
    """A person's nudges as they happen: `sent`, `acknowledged`, `snoozed`."""

    _attr_has_entity_name = True
    _attr_translation_key = "nudges"
    _attr_event_types = [SENT, ACKNOWLEDGED, SNOOZED]  # noqa: RUF012 (HA declares it a list)

    def __init__(self, hub: RecoveryCoachHub, sub: ConfigSubentry, user_id: str) -> None:
        self._hub = hub
        self._user_id = user_id
        self._attr_unique_id = f"{sub.subentry_id}_nudges"
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, sub.subentry_id)},
            name=sub.title,
            manufacturer="Recovery Coach",
            model="Person",
            entry_type=DeviceEntryType.SERVICE,
        )

    @property
    def available(self) -> bool:
        """Unavailable while the service says it is offline (its retained status)."""
        return self._hub.status is None or self._hub.online

    async def async_added_to_hass(self) -> None:
        self.async_on_remove(self._hub.async_add_nudge_listener(self._on_nudge))
        self.async_on_remove(self._hub.async_add_action_listener(self._on_action))
        self.async_on_remove(self._hub.async_add_status_listener(self.async_write_ha_state))

    @callback
    def _on_nudge(self, user_id: str, nudge: dict[str, Any]) -> None:
        if user_id == self._user_id:
            self._fire(SENT, nudge, {})

    @callback
    def _on_action(self, action: NudgeAction) -> None:
        if action.user_id != self._user_id:
            return
        nudge = self._hub.nudge(action.user_id, action.nudge_id) or {"nudge_id": action.nudge_id}
        if action.snooze_minutes is None:
            self._fire(ACKNOWLEDGED, nudge, {})
        else:
            self._fire(SNOOZED, nudge, {"minutes": action.snooze_minutes})

    @callback
    def _fire(self, event_type: str, nudge: dict[str, Any], extra: dict[str, Any]) -> None:
        attributes = {
            "nudge_id": nudge.get("nudge_id"),
            "rule": nudge.get("rule"),
            "kind": nudge.get("kind"),
            "title": nudge.get("title"),
            **extra,
        }
        self._trigger_event(event_type, attributes)
        self.async_write_ha_state()
