"""Gym check-in and check-out from a person or device tracker entering a zone."""

from __future__ import annotations

from homeassistant.const import STATE_HOME, STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import CALLBACK_TYPE, Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.helpers.event import async_track_state_change_event

from .const import CONF_GYM_ZONE, CONF_TRACKER, LOGGER
from .hub import RecoveryCoachHub
from .payloads import gym_visit

# A tracker going to or coming from these says nothing about where the person is.
_NOT_A_PLACE = {STATE_UNKNOWN, STATE_UNAVAILABLE, None}


def _zone_state_name(hass: HomeAssistant, zone_entity_id: str) -> str | None:
    """The state a tracker shows while inside the zone (the zone's name, or `home`)."""
    if zone_entity_id == "zone.home":
        return STATE_HOME
    zone = hass.states.get(zone_entity_id)
    return zone.name if zone is not None else None


@callback
def async_track_gym_zones(hass: HomeAssistant, hub: RecoveryCoachHub) -> CALLBACK_TYPE:
    """Watch each followed user's tracker and publish gym/checkin and gym/checkout."""
    unsubscribers: list[CALLBACK_TYPE] = []
    for user_id in hub.followed_users:
        settings = hub.user_settings[user_id]
        tracker, gym_zone = settings.get(CONF_TRACKER), settings.get(CONF_GYM_ZONE)
        if not tracker or not gym_zone:
            continue

        @callback
        def on_change(
            event: Event[EventStateChangedData], user_id: str = user_id, gym_zone: str = gym_zone
        ) -> None:
            old, new = event.data["old_state"], event.data["new_state"]
            old_value = old.state if old is not None else None
            new_value = new.state if new is not None else None
            if old_value in _NOT_A_PLACE or new_value in _NOT_A_PLACE:
                return
            zone_name = _zone_state_name(hass, gym_zone)
            if zone_name is None or old_value == new_value:
                return
            if new_value == zone_name:
                event_name = "gym/checkin"
            elif old_value == zone_name:
                event_name = "gym/checkout"
            else:
                return
            LOGGER.debug("%s: %s", user_id, event_name)
            hass.async_create_task(hub.async_publish(user_id, event_name, gym_visit()))

        unsubscribers.append(async_track_state_change_event(hass, [tracker], on_change))

    @callback
    def unsubscribe_all() -> None:
        while unsubscribers:
            unsubscribers.pop()()

    return unsubscribe_all
