"""Nudges as phone notifications, and the phones' Done/Snooze buttons back to MQTT."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from homeassistant.core import CALLBACK_TYPE, Event, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.util import dt as dt_util

from .const import (
    ACTION_DONE,
    ACTION_SEPARATOR,
    ACTION_SNOOZE,
    COOLDOWN_KINDS,
    DOMAIN,
    LOGGER,
    SNOOZE_MINUTES,
)
from .hub import RecoveryCoachHub
from .payloads import snooze
from .topics import is_valid_topic_level, is_valid_user_id, nudge_action_topic

MOBILE_APP_ACTION_EVENT = "mobile_app_notification_action"
NOTIFY_DOMAIN = "notify"


def action_id(action: str, user_id: str, nudge_id: str) -> str:
    """Encode a notification action: `RC_DONE|alex|<nudge_id>`."""
    return ACTION_SEPARATOR.join((action, user_id, nudge_id))


def parse_action_id(value: str) -> tuple[str, str, str] | None:
    """Decode an action id into (action, user id, nudge id), or None if it is not ours."""
    parts = value.split(ACTION_SEPARATOR, 2)
    if len(parts) != 3:
        return None
    action, user_id, nudge_id = parts
    if action not in (ACTION_DONE, ACTION_SNOOZE):
        return None
    if not is_valid_user_id(user_id) or not is_valid_topic_level(nudge_id):
        return None
    return action, user_id, nudge_id


def _epoch_seconds(value: Any) -> int | None:
    if not isinstance(value, str) or (moment := dt_util.parse_datetime(value)) is None:
        return None
    return int(moment.timestamp())


def cooldown_tag(user_id: str) -> str:
    """The tag of a person's running cooldown (at most 64 characters, as Live Activities
    need: the user id is at most 32)."""
    return f"{DOMAIN}_{user_id}_cooldown"


def clear_service_data(tag: str) -> dict[str, Any]:
    """The companion app's command that removes a notification, and ends a live update
    (Android 16) or Live Activity (iOS) with that tag."""
    return {"message": "clear_notification", "data": {"tag": tag}}


def notification_service_data(
    user_id: str, nudge: dict[str, Any], now: datetime | None = None
) -> dict[str, Any]:
    """Build the `notify.mobile_app_*` call for one nudge."""
    kind = str(nudge.get("kind", "nudge"))
    nudge_id = str(nudge["nudge_id"])
    cooldown = kind in COOLDOWN_KINDS
    data: dict[str, Any] = {
        # Same tag: a newer nudge of the same kind replaces the older one on the phone.
        "tag": cooldown_tag(user_id) if cooldown else f"{DOMAIN}_{user_id}_{kind}",
        "group": f"{DOMAIN}_{user_id}",
        "actions": [
            {"action": action_id(ACTION_DONE, user_id, nudge_id), "title": "Done"},
            {
                "action": action_id(ACTION_SNOOZE, user_id, nudge_id),
                "title": f"Snooze {SNOOZE_MINUTES} min",
            },
        ],
    }
    nudge_data = nudge.get("data")
    if cooldown and isinstance(nudge_data, dict):
        ends = _epoch_seconds(nudge_data.get("cooldown_ends_at"))
        if ends is not None:
            # A countdown to the end of the cooldown: a live update on Android 16 (status
            # bar chip, lock screen) and a Live Activity on iOS; older Android apps show
            # the chronometer in the notification. Cleared when the cooldown is done or
            # acknowledged (clear_service_data, same tag).
            data.update(
                {
                    "live_update": True,
                    "chronometer": True,
                    "when": ends,
                    "when_relative": False,
                    "critical_text": str(nudge.get("title", "Cool down"))[:20],
                    "notification_icon": "mdi:timer-sand",
                }
            )
    expires = _epoch_seconds(nudge.get("expires_at"))
    if expires is not None:
        remaining = expires - int((now or dt_util.utcnow()).timestamp())
        if remaining > 0:
            # Android removes the notification once the advice is stale.
            data["timeout"] = remaining
    return {"title": nudge["title"], "message": nudge["message"], "data": data}


async def _async_call_phones(
    hass: HomeAssistant, phones: list[str], service_data: dict[str, Any]
) -> None:
    for phone in phones:
        try:
            await hass.services.async_call(NOTIFY_DOMAIN, phone, service_data, blocking=True)
        except HomeAssistantError as err:
            LOGGER.warning("Could not notify %s.%s: %s", NOTIFY_DOMAIN, phone, err)


async def async_notify_phones(
    hass: HomeAssistant, phones: list[str], user_id: str, nudge: dict[str, Any]
) -> None:
    """Send one nudge to each of the user's phones; a missing phone is logged, not raised.
    The cooldown's "done" first ends the countdown of its start."""
    if nudge.get("kind") == "cooldown_done":
        await _async_call_phones(hass, phones, clear_service_data(cooldown_tag(user_id)))
    await _async_call_phones(hass, phones, notification_service_data(user_id, nudge))


async def async_clear_cooldown(hass: HomeAssistant, phones: list[str], user_id: str) -> None:
    """The cooldown was acknowledged: its countdown leaves the phones."""
    await _async_call_phones(hass, phones, clear_service_data(cooldown_tag(user_id)))


@callback
def async_listen_for_actions(hass: HomeAssistant, hub: RecoveryCoachHub) -> CALLBACK_TYPE:
    """Publish ack/snooze when a phone's Done or Snooze button is pressed."""

    async def on_action(event: Event) -> None:
        parsed = parse_action_id(str(event.data.get("action", "")))
        if parsed is None:
            return
        action, user_id, nudge_id = parsed
        if user_id not in hub.user_settings:
            return
        if action == ACTION_DONE:
            topic = nudge_action_topic(hub.base_topic, user_id, nudge_id, "ack")
            payload: dict[str, Any] = {}
        else:
            topic = nudge_action_topic(hub.base_topic, user_id, nudge_id, "snooze")
            payload = snooze(SNOOZE_MINUTES)
        await hub.async_publish_raw(topic, payload)

    return hass.bus.async_listen(MOBILE_APP_ACTION_EVENT, on_action)
