"""People set up in Home Assistant: the "Add person" subentry publishes the person's
profile (retained) to the service, shows the service's refusal on the form by field, edits
republish it, a followed scale republishes it when the weight moves 0.5 kg or more, a late
refusal becomes a repair issue, and deleting the person (or the entry) clears the profile.

The service is played by the test on HA's MQTT mock, with the service's own answers: a live
state for a profile it took, an error with `problems` for one it refused."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from custom_components.recovery_coach.people import (
    SUBENTRY_PERSON,
    profile_payload,
    user_id_for,
    weight_kg_of,
)
from homeassistant.config_entries import SOURCE_RECONFIGURE, SOURCE_USER
from homeassistant.core import HomeAssistant, State
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import issue_registry as ir
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_mqtt_message,
    async_mock_service,
)
from pytest_homeassistant_custom_component.typing import MqttMockHAClient

from .conftest import BASE, nudge

DOMAIN = "recovery_coach"
FORM = {
    "person": "person.robin",
    "weight_kg": 70,
    "goal": "hypertrophy",
    "running_experience": "beginner",
    "wake_time": "06:30:00",
    "sleep_hours": 8.5,
    "protein_g_per_kg": 1.8,
    "wake_by_day": {"sat": "08:00:00"},
    "weekly_plan": {"mon": "legs", "thu": "upper"},
    "phones": ["mobile_app_pixel"],
}


def _profiles(mqtt_mock: MqttMockHAClient) -> list[tuple[str, str, bool]]:
    """(topic, payload, retain) of every profile published."""
    return [
        (c.args[0], c.args[1], c.args[3])
        for c in mqtt_mock.async_publish.call_args_list
        if c.args[0].endswith("/profile")
    ]


async def _answering(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    flow: Callable[[], Any],
    answer: Callable[[str, dict[str, Any]], None],
) -> Any:
    """Run a flow step while playing the service: once the profile is published, answer."""
    seen = len(_profiles(mqtt_mock))
    task = hass.async_create_task(flow())
    for _ in range(200):
        if len(_profiles(mqtt_mock)) > seen:
            break
        await asyncio.sleep(0.01)
    topic, payload, _ = _profiles(mqtt_mock)[-1]
    answer(topic, json.loads(payload))
    return await task


def _took_it(hass: HomeAssistant) -> Callable[[str, dict[str, Any]], None]:
    def answer(topic: str, _profile: dict[str, Any]) -> None:
        user = topic.split("/")[1]
        async_fire_mqtt_message(hass, f"{BASE}/{user}/state", json.dumps({"user": user}))

    return answer


def _refused(hass: HomeAssistant, *problems: tuple[str, str]) -> Callable[[str, Any], None]:
    def answer(topic: str, _profile: dict[str, Any]) -> None:
        user = topic.split("/")[1]
        listed = "; ".join(f"{f}: {r}" for f, r in problems)
        error = {
            "topic": topic,
            "reason": f"invalid profile, the previous one stays: {listed}",
            "event_id": None,
            "problems": [{"field": f, "reason": r} for f, r in problems],
        }
        async_fire_mqtt_message(hass, f"{BASE}/{user}/error", json.dumps(error))

    return answer


def _persons(entry: MockConfigEntry) -> list[Any]:
    return [s for s in entry.subentries.values() if s.subentry_type == SUBENTRY_PERSON]


@pytest.fixture
def people(hass: HomeAssistant) -> None:
    hass.states.async_set("person.robin", "home", {"friendly_name": "Robin"})
    hass.states.async_set("person.kim_lee", "home", {"friendly_name": "Kim Lee"})


async def _add_robin(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, entry: MockConfigEntry
) -> Any:
    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, SUBENTRY_PERSON), context={"source": SOURCE_USER}
    )
    assert result["type"] is FlowResultType.FORM
    result = await _answering(
        hass,
        mqtt_mock,
        lambda: hass.config_entries.subentries.async_configure(result["flow_id"], FORM),
        _took_it(hass),
    )
    await hass.async_block_till_done()
    return result


async def test_adding_a_person_publishes_their_profile_retained(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, loaded_entry: MockConfigEntry, people: None
) -> None:
    result = await _add_robin(hass, mqtt_mock, loaded_entry)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Robin"
    [(topic, payload, retain)] = _profiles(mqtt_mock)
    assert topic == f"{BASE}/robin/profile"
    assert retain is True
    assert json.loads(payload) == {
        "name": "Robin",
        "timezone": hass.config.time_zone,
        "weight_kg": 70.0,
        "goal": "hypertrophy",
        "running_experience": "beginner",
        "sleep_hours": 8.5,
        "protein_g_per_kg": 1.8,
        "wake_time": {
            "mon": "06:30",
            "tue": "06:30",
            "wed": "06:30",
            "thu": "06:30",
            "fri": "06:30",
            "sat": "08:00",
            "sun": "06:30",
        },
        "weekly_plan": {"mon": "legs", "thu": "upper"},
    }
    [sub] = _persons(loaded_entry)
    assert sub.unique_id == "robin"
    # Reloaded: the person is followed, their phone gets their nudges.
    assert "robin" in loaded_entry.runtime_data.hub.followed_users
    assert loaded_entry.runtime_data.hub.user_settings["robin"] == {"phones": ["mobile_app_pixel"]}


async def test_a_refused_profile_is_shown_on_the_form_by_field_then_fixed(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, loaded_entry: MockConfigEntry, people: None
) -> None:
    result = await hass.config_entries.subentries.async_init(
        (loaded_entry.entry_id, SUBENTRY_PERSON), context={"source": SOURCE_USER}
    )
    flow_id = result["flow_id"]
    result = await _answering(
        hass,
        mqtt_mock,
        lambda: hass.config_entries.subentries.async_configure(flow_id, FORM),
        _refused(hass, ("weight_kg", "must be between 25 and 400")),
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "profile_refused", "weight_kg": "profile_field_refused"}
    assert "weight_kg: must be between 25 and 400" in result["description_placeholders"]["problems"]
    assert not _persons(loaded_entry)
    result = await _answering(
        hass,
        mqtt_mock,
        lambda: hass.config_entries.subentries.async_configure(flow_id, {**FORM, "weight_kg": 72}),
        _took_it(hass),
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_no_answer_from_the_service_saves_the_person(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, loaded_entry: MockConfigEntry, people: None
) -> None:
    """The service is offline: the retained profile waits for it; the form does not."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("custom_components.recovery_coach.people.PROFILE_ANSWER_S", 0.05)
        result = await hass.config_entries.subentries.async_init(
            (loaded_entry.entry_id, SUBENTRY_PERSON), context={"source": SOURCE_USER}
        )
        result = await hass.config_entries.subentries.async_configure(
            result["flow_id"], {**FORM, "person": "person.kim_lee"}
        )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Kim Lee"
    assert [t for t, _, _ in _profiles(mqtt_mock)] == [f"{BASE}/kim_lee/profile"]


async def test_a_person_cannot_be_added_twice_or_without_a_usable_id(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, loaded_entry: MockConfigEntry, people: None
) -> None:
    await _add_robin(hass, mqtt_mock, loaded_entry)
    result = await hass.config_entries.subentries.async_init(
        (loaded_entry.entry_id, SUBENTRY_PERSON), context={"source": SOURCE_USER}
    )
    result = await hass.config_entries.subentries.async_configure(result["flow_id"], FORM)
    assert result["errors"] == {"person": "person_already_added"}
    hass.states.async_set("person.homeassistant", "home")
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {**FORM, "person": "person.homeassistant"}
    )
    assert result["errors"] == {"person": "invalid_person"}
    assert len(_profiles(mqtt_mock)) == 1


async def test_editing_a_person_republishes_and_a_scale_is_followed(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, loaded_entry: MockConfigEntry, people: None
) -> None:
    await _add_robin(hass, mqtt_mock, loaded_entry)
    [sub] = _persons(loaded_entry)
    hass.states.async_set("sensor.scale", "154.3", {"unit_of_measurement": "lb"})
    result = await hass.config_entries.subentries.async_init(
        (loaded_entry.entry_id, SUBENTRY_PERSON),
        context={"source": SOURCE_RECONFIGURE, "subentry_id": sub.subentry_id},
    )
    assert result["step_id"] == "reconfigure"
    edited = {k: v for k, v in FORM.items() if k not in ("person", "weight_kg")}
    result = await _answering(
        hass,
        mqtt_mock,
        lambda: hass.config_entries.subentries.async_configure(
            result["flow_id"], {**edited, "weight_entity": "sensor.scale", "sleep_hours": 9}
        ),
        _took_it(hass),
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    profile = json.loads(_profiles(mqtt_mock)[-1][1])
    assert profile["weight_kg"] == 70.0  # 154.3 lb
    assert profile["sleep_hours"] == 9

    count = len(_profiles(mqtt_mock))
    hass.states.async_set("sensor.scale", "154.9", {"unit_of_measurement": "lb"})  # +0.27 kg
    await hass.async_block_till_done()
    assert len(_profiles(mqtt_mock)) == count
    hass.states.async_set("sensor.scale", "156.5", {"unit_of_measurement": "lb"})  # +1.0 kg
    await hass.async_block_till_done()
    assert len(_profiles(mqtt_mock)) == count + 1
    assert json.loads(_profiles(mqtt_mock)[-1][1])["weight_kg"] == 71.0


async def test_a_late_refusal_is_a_repair_issue(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, loaded_entry: MockConfigEntry, people: None
) -> None:
    await _add_robin(hass, mqtt_mock, loaded_entry)
    topic = f"{BASE}/robin/profile"
    error = {
        "topic": topic,
        "reason": "invalid profile",
        "event_id": None,
        "problems": [{"field": "timezone", "reason": "is not a known IANA time zone"}],
    }
    async_fire_mqtt_message(hass, f"{BASE}/robin/error", json.dumps(error))
    await hass.async_block_till_done()
    issues = [
        i
        for i in ir.async_get(hass).issues.values()
        if i.domain == DOMAIN and i.translation_key == "profile_refused"
    ]
    assert len(issues) == 1
    assert issues[0].translation_placeholders == {
        "name": "Robin",
        "problems": "timezone: is not a known IANA time zone",
    }
    # An error about anything else (a workout) is no profile problem.
    other = {"topic": f"{BASE}/robin/workout/completed", "reason": "too old"}
    async_fire_mqtt_message(hass, f"{BASE}/robin/error", json.dumps(other))
    await hass.async_block_till_done()
    refused = [
        i
        for i in ir.async_get(hass).issues.values()
        if i.domain == DOMAIN and i.translation_key == "profile_refused"
    ]
    assert len(refused) == 1


async def test_deleting_the_person_clears_their_profile(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, loaded_entry: MockConfigEntry, people: None
) -> None:
    await _add_robin(hass, mqtt_mock, loaded_entry)
    [sub] = _persons(loaded_entry)
    assert hass.config_entries.async_remove_subentry(loaded_entry, sub.subentry_id)
    await hass.async_block_till_done()
    assert _profiles(mqtt_mock)[-1] == (f"{BASE}/robin/profile", "", True)
    assert "robin" not in loaded_entry.runtime_data.hub.followed_users


async def test_removing_the_entry_clears_its_people(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, loaded_entry: MockConfigEntry, people: None
) -> None:
    await _add_robin(hass, mqtt_mock, loaded_entry)
    await hass.config_entries.async_remove(loaded_entry.entry_id)
    await hass.async_block_till_done()
    assert _profiles(mqtt_mock)[-1] == (f"{BASE}/robin/profile", "", True)


@pytest.mark.parametrize(
    ("entity_id", "user_id"),
    [
        ("person.robin", "robin"),
        ("person.kim_lee_2", "kim_lee_2"),
        ("person." + "a" * 40, "a" * 32),
        ("person.recovery_coach", None),
        ("person.status", None),
    ],
)
def test_user_ids_derive_from_the_person(entity_id: str, user_id: str | None) -> None:
    assert user_id_for(entity_id) == user_id


@pytest.mark.parametrize(
    ("value", "unit", "kg"),
    [("70", "kg", 70.0), ("154.32", "lb", 70.0), ("70000", "g", 70.0), ("12", "kg", None)],
)
def test_a_scales_reading_in_kg(value: str, unit: str, kg: float | None) -> None:
    assert weight_kg_of(State("sensor.scale", value, {"unit_of_measurement": unit})) == kg
    assert weight_kg_of(State("sensor.scale", "unavailable", {})) is None


def test_one_wake_time_for_every_day_is_one_clock() -> None:
    payload = profile_payload({"wake_time": "05:45:00"}, name="R", timezone="UTC", weight_kg=None)
    assert payload["wake_time"] == "05:45"
    assert "weight_kg" not in payload
    assert "weekly_plan" not in payload


async def test_a_person_added_is_followed_in_place_so_no_nudge_is_missed(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, loaded_entry: MockConfigEntry, people: None
) -> None:
    """Adding a person does not reload the entry (its subscriptions stay up): a nudge in
    the next moment reaches the person's phone. Seen in the real-HA run before: a reload
    there made HA miss the first nudge."""
    hub = loaded_entry.runtime_data.hub
    phone = async_mock_service(hass, "notify", "mobile_app_pixel")
    await _add_robin(hass, mqtt_mock, loaded_entry)
    assert loaded_entry.runtime_data.hub is hub
    first = nudge(user="robin", nudge_id="n_robin_1", title="Cool down now")
    async_fire_mqtt_message(hass, f"{BASE}/robin/nudge", json.dumps(first))
    await hass.async_block_till_done()
    assert [c.data["title"] for c in phone] == ["Cool down now"]
