"""Nudges become phone notifications and spoken announcements; phone buttons reply on MQTT."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import pytest
from custom_components.recovery_coach.phone_notifications import (
    notification_service_data,
    parse_action_id,
)
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_mqtt_message,
    async_mock_service,
)
from pytest_homeassistant_custom_component.typing import MqttMockHAClient

from .conftest import BASE, nudge


@pytest.fixture
def entry_options() -> dict[str, Any]:
    """Alex has two phones and a kitchen speaker; sam is not followed."""
    return {
        "users": {
            "alex": {
                "phones": ["mobile_app_pixel", "mobile_app_ipad"],
                "announce_entity": "media_player.kitchen",
            }
        },
        "tts_engine": "tts.piper",
    }


async def _send_nudge(hass: HomeAssistant, user: str, payload: dict[str, Any] | str) -> None:
    body = payload if isinstance(payload, str) else json.dumps(payload)
    async_fire_mqtt_message(hass, f"{BASE}/{user}/nudge", body, qos=1)
    await hass.async_block_till_done(wait_background_tasks=True)


async def test_nudge_notifies_each_phone_and_speaks(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, entry_options: dict[str, Any]
) -> None:
    """Every phone of the user gets title, message, tag, group and Done/Snooze actions."""
    pixel = async_mock_service(hass, "notify", "mobile_app_pixel")
    ipad = async_mock_service(hass, "notify", "mobile_app_ipad")
    speak = async_mock_service(hass, "tts", "speak")
    entry = MockConfigEntry(
        domain="recovery_coach", unique_id=BASE, data={"base_topic": BASE}, options=entry_options
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()

    await _send_nudge(hass, "alex", nudge())

    assert len(pixel) == 1
    assert len(ipad) == 1
    data = pixel[0].data
    assert data["title"] == "Cardio after leg day"
    assert data["message"] == "Cardio is fine today: keep it easy, 6/10 or less."
    assert data["data"]["tag"] == "recovery_coach_alex_cardio_advice"
    assert data["data"]["group"] == "recovery_coach_alex"
    assert data["data"]["actions"] == [
        {"action": "RC_DONE|alex|n_ab12cd34", "title": "Done"},
        {"action": "RC_SNOOZE|alex|n_ab12cd34", "title": "Snooze 15 min"},
    ]
    assert "chronometer" not in data["data"]
    assert "live_update" not in data["data"]
    assert [call.data for call in speak] == [
        {
            "entity_id": "tts.piper",
            "media_player_entity_id": "media_player.kitchen",
            "message": "Cardio is fine today, keep it easy.",
        }
    ]

    # Other users' nudges and malformed nudges reach no phone.
    await _send_nudge(hass, "sam", nudge(user="sam"))
    await _send_nudge(hass, "alex", "not json")
    await _send_nudge(hass, "alex", nudge(nudge_id="bad/id"))
    assert len(pixel) == 1


async def test_a_resent_nudge_buzzes_the_phone_once(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, entry_options: dict[str, Any]
) -> None:
    """The service is at-least-once on the wire: the same nudge_id twice is one notification."""
    pixel = async_mock_service(hass, "notify", "mobile_app_pixel")
    async_mock_service(hass, "notify", "mobile_app_ipad")
    entry = MockConfigEntry(
        domain="recovery_coach", unique_id=BASE, data={"base_topic": BASE}, options=entry_options
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()

    await _send_nudge(hass, "alex", nudge())
    await _send_nudge(hass, "alex", nudge())
    assert len(pixel) == 1
    await _send_nudge(hass, "alex", nudge(nudge_id="n_other"))
    assert len(pixel) == 2


async def test_missing_phone_does_not_stop_the_others(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    entry_options: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A phone removed from HA is logged; the user's next phone still gets the nudge."""
    ipad = async_mock_service(hass, "notify", "mobile_app_ipad")  # the pixel is gone
    entry = MockConfigEntry(
        domain="recovery_coach", unique_id=BASE, data={"base_topic": BASE}, options=entry_options
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await _send_nudge(hass, "alex", nudge())
    assert len(ipad) == 1
    assert "Could not notify notify.mobile_app_pixel" in caplog.text


def test_cooldown_nudge_is_a_live_update_with_a_chronometer() -> None:
    """Cooldown: a live countdown to cooldown_ends_at (epoch seconds), as the companion
    app's docs name the keys: `live_update` and a `tag` start an Android 16 Live Update or
    an iOS Live Activity (title required on Android), `chronometer` with `when` counts down
    (and on older apps too), `critical_text` is the status bar chip's label."""
    cooldown = nudge(
        kind="cooldown_start",
        title="Cool down now",
        data={"cooldown_ends_at": "2025-03-04T18:05:00+01:00"},
        expires_at="2025-03-04T18:30:00+01:00",
    )
    now = datetime.fromisoformat("2025-03-04T18:00:00+01:00")
    call = notification_service_data("alex", cooldown, now)
    data = call["data"]
    assert call["title"] == "Cool down now"
    assert data["live_update"] is True
    assert data["chronometer"] is True
    assert data["when"] == int(datetime.fromisoformat("2025-03-04T18:05:00+01:00").timestamp())
    assert data["when_relative"] is False
    assert data["critical_text"] == "Cool down now"
    assert data["tag"] == "recovery_coach_alex_cooldown"
    assert data["timeout"] == 30 * 60
    # Live Activity tags: letters, digits, - and _, at most 64 characters.
    longest = notification_service_data("a" * 32, cooldown, now)["data"]["tag"]
    assert len(longest) <= 64
    assert re.fullmatch(r"[A-Za-z0-9_-]+", longest)


async def test_the_countdown_leaves_the_phone_when_done_or_acknowledged(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, loaded_entry: MockConfigEntry
) -> None:
    """The companion app ends a live update or Live Activity with `clear_notification`
    and its tag: sent before the cooldown's "done", and when the cooldown is acknowledged
    (from the phone, a button, anything on the ack topic)."""
    pixel = async_mock_service(hass, "notify", "mobile_app_pixel")
    start = nudge(
        nudge_id="cd-1",
        kind="cooldown_start",
        data={"cooldown_ends_at": "2025-03-04T18:05:00+01:00"},
    )
    await _send_nudge(hass, "alex", start)
    await _send_nudge(hass, "alex", nudge(nudge_id="cd-2", kind="cooldown_done"))
    messages = [c.data["message"] for c in pixel]
    assert messages == [start["message"], "clear_notification", nudge()["message"]]
    assert pixel[1].data["data"] == {"tag": "recovery_coach_alex_cooldown"}

    pixel.clear()
    await _send_nudge(hass, "alex", {**start, "nudge_id": "cd-3"})
    async_fire_mqtt_message(hass, f"{BASE}/alex/nudge/cd-3/ack", "{}")
    await hass.async_block_till_done(wait_background_tasks=True)
    assert [c.data["message"] for c in pixel][-1] == "clear_notification"

    pixel.clear()  # a snooze keeps the countdown; an ack of another kind clears nothing
    async_fire_mqtt_message(hass, f"{BASE}/alex/nudge/cd-3/snooze", '{"minutes": 5}')
    await _send_nudge(hass, "alex", nudge(nudge_id="r2-1"))
    async_fire_mqtt_message(hass, f"{BASE}/alex/nudge/r2-1/ack", "{}")
    await hass.async_block_till_done(wait_background_tasks=True)
    assert "clear_notification" not in [c.data["message"] for c in pixel]


def test_expired_nudge_gets_no_timeout() -> None:
    """A timeout is only set while the nudge is still current."""
    stale = nudge(expires_at="2025-03-04T17:00:00+01:00")
    now = datetime.fromisoformat("2025-03-04T18:00:00+01:00")
    assert "timeout" not in notification_service_data("alex", stale, now)["data"]


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ("RC_DONE|alex|n_1", ("RC_DONE", "alex", "n_1")),
        ("RC_SNOOZE|alex|id|with|bars", ("RC_SNOOZE", "alex", "id|with|bars")),
        ("RC_DONE|Alex|n_1", None),
        ("RC_DONE|alex|a/b", None),
        ("RC_DONE|alex|+", None),
        ("RC_DONE|alex", None),
        ("OTHER|alex|n_1", None),
        ("", None),
    ],
)
def test_parse_action_id(action: str, expected: tuple[str, str, str] | None) -> None:
    """Only our own well-formed action ids are acted on."""
    assert parse_action_id(action) == expected


async def test_phone_buttons_publish_ack_and_snooze(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, loaded_entry: MockConfigEntry
) -> None:
    """Done publishes `nudge/<id>/ack` {}; Snooze publishes `nudge/<id>/snooze` 15 min."""
    mqtt_mock.async_publish.reset_mock()
    hass.bus.async_fire("mobile_app_notification_action", {"action": "RC_DONE|alex|n_1"})
    await hass.async_block_till_done()
    mqtt_mock.async_publish.assert_called_once_with(f"{BASE}/alex/nudge/n_1/ack", "{}", 1, False)

    mqtt_mock.async_publish.reset_mock()
    hass.bus.async_fire("mobile_app_notification_action", {"action": "RC_SNOOZE|alex|n_1"})
    await hass.async_block_till_done()
    mqtt_mock.async_publish.assert_called_once_with(
        f"{BASE}/alex/nudge/n_1/snooze", '{"minutes": 15}', 1, False
    )

    # Not ours, or a user this entry does not follow: nothing is published.
    mqtt_mock.async_publish.reset_mock()
    for action in ("RC_DONE|sam|n_1", "URI", "RC_DONE|alex|a/b"):
        hass.bus.async_fire("mobile_app_notification_action", {"action": action})
    await hass.async_block_till_done()
    mqtt_mock.async_publish.assert_not_called()


async def test_assist_satellite_announces(hass: HomeAssistant, mqtt_mock: MqttMockHAClient) -> None:
    """A voice satellite target uses assist_satellite.announce with the nudge speech."""
    announce = async_mock_service(hass, "assist_satellite", "announce")
    entry = MockConfigEntry(
        domain="recovery_coach",
        unique_id=BASE,
        data={"base_topic": BASE},
        options={"users": {"alex": {"announce_entity": "assist_satellite.hall"}}},
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await _send_nudge(hass, "alex", nudge())
    assert [call.data for call in announce] == [
        {"entity_id": "assist_satellite.hall", "message": "Cardio is fine today, keep it easy."}
    ]
