"""Workouts arrive by themselves: a Garmin Connect activity in HA (the `last_activity` and
`last_activities` sensors of cyberjunky/home-assistant-garmin_connect, attributes shaped as
its sensor_descriptions.py passes Garmin's activity through) or a Strava activity (the
`ha_strava_activities_update` event of craibo/ha_strava, activities shaped as its
coordinator builds them) becomes one workout event for its person, exactly once across
re-polls and reloads."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from custom_components.recovery_coach.activity_sources import (
    GARMIN_KINDS,
    activities_of,
    iso_duration_s,
    strava_activities,
    workout_event,
)
from custom_components.recovery_coach.people import WEEKDAYS
from homeassistant.core import HomeAssistant, State
from homeassistant.helpers import entity_registry as er
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.typing import MqttMockHAClient

from .conftest import BASE
from .sources import ENTITY, add_person, garmin_activity, set_last_activity, settle


def _workouts(mqtt_mock: MqttMockHAClient) -> list[dict[str, Any]]:
    return [
        json.loads(c.args[1])
        for c in mqtt_mock.async_publish.call_args_list
        if c.args[0] == f"{BASE}/robin/workout/completed"
    ]


@pytest.fixture
async def robin(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, loaded_entry: MockConfigEntry
) -> MockConfigEntry:
    """Robin, set up an hour ago with their Garmin's last activity as a source."""
    return await add_person(
        hass,
        loaded_entry,
        "robin",
        ENTITY,
        timedelta(hours=1),
        goal="general",
        weekly_plan=dict.fromkeys(WEEKDAYS, "legs"),
        max_heart_rate=190,
    )


async def test_a_new_garmin_activity_is_one_workout_event(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, robin: MockConfigEntry
) -> None:
    ended = dt_util.utcnow() - timedelta(minutes=3)
    set_last_activity(hass, garmin_activity(19_876_543_210, "strength_training", ended))
    await settle(hass)
    [event] = _workouts(mqtt_mock)
    assert {k: v for k, v in event.items() if k != "ended_at"} == {
        "event_id": "garmin:19876543210",
        "kind": "strength",
        "focus": "legs",
        "duration_min": 50.0,
        "zone": 2,  # 128 of 190 bpm: 67%
        "rpe": 4.0,
    }
    # In the activity's own zone (UTC+2), and the same instant.
    ended_at = datetime.fromisoformat(event["ended_at"])
    assert ended_at.utcoffset() == timedelta(hours=2)
    assert abs((ended_at - ended).total_seconds()) < 1

    # A re-poll (same activity, new attributes such as a refreshed calorie count): nothing.
    set_last_activity(
        hass, garmin_activity(19_876_543_210, "strength_training", ended, calories=425.0)
    )
    await settle(hass)
    assert len(_workouts(mqtt_mock)) == 1


async def test_history_and_unmapped_types_are_not_sent(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, robin: MockConfigEntry
) -> None:
    now = dt_util.utcnow()
    # Ended before the source was added (a first sync of history).
    set_last_activity(hass, garmin_activity(1, "running", now - timedelta(hours=2)))
    await settle(hass)
    # A walk is no workout here; an unknown type is skipped.
    set_last_activity(hass, garmin_activity(2, "walking", now - timedelta(minutes=5)))
    await settle(hass)
    set_last_activity(hass, garmin_activity(3, "underwater_hockey_v2", now))
    await settle(hass)
    assert _workouts(mqtt_mock) == []


async def test_last_activities_and_a_reload_send_each_activity_once(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, robin: MockConfigEntry
) -> None:
    """The five of last_activities, then HA's reload of the entry (as at a restart): each
    activity is sent under its own id; after the reload the current state is sent again,
    under the same ids, which the service drops as repeats (tests/test_people_live.py and
    the service's dedupe tests cover that side)."""
    now = dt_util.utcnow()
    run = garmin_activity(10, "running", now - timedelta(minutes=30), 30)
    swim = garmin_activity(11, "lap_swimming", now - timedelta(minutes=5), 20)
    hass.states.async_set(
        "sensor.robin_garmin_last_activity", "2", {"last_activities": [run, swim]}
    )
    await settle(hass)
    ids = [e["event_id"] for e in _workouts(mqtt_mock)]
    assert ids == ["garmin:10", "garmin:11"]
    assert {e["kind"] for e in _workouts(mqtt_mock)} == {"cardio"}
    assert await hass.config_entries.async_reload(robin.entry_id)
    await settle(hass)
    again = [e["event_id"] for e in _workouts(mqtt_mock)]
    assert again[:2] == ["garmin:10", "garmin:11"]
    assert set(again) == {"garmin:10", "garmin:11"}  # the same ids, never a new one


@pytest.mark.parametrize(
    ("type_key", "kind"),
    [
        ("strength_training", "strength"),
        ("treadmill_running", "cardio"),
        ("indoor_cycling", "cardio"),
        ("indoor_rowing", "cardio"),
        ("open_water_swimming", "cardio"),
        ("elliptical", "cardio"),
        ("hiit", "class"),
        ("yoga", "class"),
        ("soccer", "sport"),
        ("tennis", "sport"),
    ],
)
def test_garmin_types(type_key: str, kind: str) -> None:
    assert GARMIN_KINDS[type_key] == kind
    now = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
    [activity] = activities_of(
        State(ENTITY, "x", garmin_activity(5, type_key, now - timedelta(minutes=1)))
    )
    event = workout_event(activity, plan={}, max_hr=None, since=now - timedelta(days=1), now=now)
    assert event is not None
    assert event["kind"] == kind
    assert "zone" not in event  # no maximum heart rate: not guessed
    assert "focus" not in event  # no plan for the day


def test_an_activity_older_than_36_hours_is_history() -> None:
    now = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
    [activity] = activities_of(
        State(ENTITY, "x", garmin_activity(5, "running", now - timedelta(hours=37)))
    )
    since = now - timedelta(days=3)
    assert workout_event(activity, plan={}, max_hr=190, since=since, now=now) is None


def test_a_malformed_activity_is_ignored() -> None:
    assert activities_of(State(ENTITY, "x", {"activityId": 1})) == []
    assert activities_of(State(ENTITY, "x", {"last_activities": [{"activityId": 2}, "x"]})) == []
    assert activities_of(None) == []


STRAVA_ENTITY = "sensor.strava_0_0"


def strava_activity(activity_id: int, sport: str, start_local: datetime, **extra: Any) -> Any:
    """An activity as ha_strava's coordinator (_sensor_activity) builds it: `date` is the
    local start, naive (Strava's start_date_local), times in seconds."""
    return {
        "id": activity_id,
        "title": f"Evening {sport}",
        "city": "Berlin",
        "activity_type": sport,
        "distance": 0.0,
        "date": start_local.replace(tzinfo=None),
        "elapsed_time": 3300,
        "moving_time": 3000,
        "average_heartrate": 150.0,
        "max_heartrate": 176.0,
        "sport_type": sport,
        **extra,
    }


@pytest.fixture
async def kim(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, loaded_entry: MockConfigEntry
) -> MockConfigEntry:
    """Kim, following their Strava (a sensor of the ha_strava integration) since an hour."""
    await hass.config.async_set_time_zone("Europe/Berlin")
    er.async_get(hass).async_get_or_create(
        "sensor", "ha_strava", "strava_0_0", suggested_object_id="strava_0_0"
    )
    return await add_person(
        hass, loaded_entry, "kim", STRAVA_ENTITY, timedelta(hours=1), max_heart_rate=200
    )


def _kim_workouts(mqtt_mock: MqttMockHAClient) -> list[dict[str, Any]]:
    return [
        json.loads(c.args[1])
        for c in mqtt_mock.async_publish.call_args_list
        if c.args[0] == f"{BASE}/kim/workout/completed"
    ]


async def test_a_strava_activity_is_one_workout_event(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, kim: MockConfigEntry
) -> None:
    berlin = dt_util.get_default_time_zone()
    start = (dt_util.utcnow() - timedelta(minutes=58)).astimezone(berlin).replace(microsecond=0)
    activities = [
        strava_activity(98765, "WeightTraining", start),
        strava_activity(98766, "Walk", start),  # no workout here
        strava_activity(98767, "Run", start - timedelta(hours=3)),  # before Kim added Strava
    ]
    hass.bus.async_fire("ha_strava_activities_update", {"activities": activities})
    await settle(hass)
    [event] = _kim_workouts(mqtt_mock)
    assert event["event_id"] == "strava:98765"
    assert event["kind"] == "strength"
    ended = datetime.fromisoformat(event["ended_at"])
    assert ended == start + timedelta(seconds=3300)  # local start + elapsed, in HA's zone
    assert ended.utcoffset() == start.utcoffset()
    assert event["duration_min"] == 50.0
    assert (event["zone"], event["rpe"]) == (3, 6.0)  # 150 of 200 bpm: 75%
    # ha_strava fires again after its next webhook: nothing new.
    hass.bus.async_fire("ha_strava_activities_update", {"activities": activities})
    await settle(hass)
    assert len(_kim_workouts(mqtt_mock)) == 1


@pytest.mark.parametrize(
    ("sport", "kind"),
    [
        ("WeightTraining", "strength"),
        ("Run", "cardio"),
        ("VirtualRide", "cardio"),
        ("Rowing", "cardio"),
        ("Swim", "cardio"),
        ("HighIntensityIntervalTraining", "class"),
        ("Crossfit", "class"),
        ("Soccer", "sport"),
        ("Walk", None),
    ],
)
def test_strava_types(sport: str, kind: str | None) -> None:
    now = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
    [activity] = strava_activities(
        {"activities": [strava_activity(1, sport, now - timedelta(hours=1))]}, UTC
    )
    event = workout_event(activity, plan={}, max_hr=None, since=now - timedelta(days=1), now=now)
    assert (event["kind"] if event else None) == kind


def test_a_malformed_strava_event_is_ignored() -> None:
    bad = [
        {"id": 1},
        "x",
        {"id": 2, "activity_type": "Run", "date": "not a date", "elapsed_time": 60},
    ]
    assert strava_activities({"activities": bad}, UTC) == []
    assert strava_activities({}, UTC) == []


POLAR_ENTITY = "sensor.lee_last_exercise"


def polar_exercise(start_local: datetime, sport: str = "STRENGTH_TRAINING") -> dict[str, Any]:
    """The attributes of hass-polar's "Last exercise" sensor (sensor.py's attributes_keys,
    AccessLink's exercise fields); its state is the local start."""
    return {
        "distance": 0,
        "duration": "PT52M30S",
        "heart_rate": {"average": 121, "maximum": 158},
        "training_load": 64.2,
        "sport": sport,
        "calories": 410,
        "device": "Polar Vantage V3",
        "friendly_name": "Lee Last exercise",
    }


@pytest.fixture
async def lee(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, loaded_entry: MockConfigEntry
) -> MockConfigEntry:
    await hass.config.async_set_time_zone("Europe/Berlin")
    return await add_person(
        hass,
        loaded_entry,
        "lee",
        POLAR_ENTITY,
        timedelta(hours=2),
        weekly_plan=dict.fromkeys(WEEKDAYS, "upper"),
    )


async def test_a_polar_exercise_is_one_workout_event(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, lee: MockConfigEntry
) -> None:
    berlin = dt_util.get_default_time_zone()
    start = (dt_util.utcnow() - timedelta(minutes=55)).astimezone(berlin).replace(microsecond=0)
    local = start.replace(tzinfo=None).isoformat()  # AccessLink's start has no zone
    hass.states.async_set(POLAR_ENTITY, local, polar_exercise(start))
    await settle(hass)
    workouts = [
        json.loads(c.args[1])
        for c in mqtt_mock.async_publish.call_args_list
        if c.args[0] == f"{BASE}/lee/workout/completed"
    ]
    [event] = workouts
    assert event["event_id"] == f"polar:{start:%Y%m%dT%H%M%S}"
    assert event["kind"] == "strength"
    assert event["focus"] == "upper"
    assert datetime.fromisoformat(event["ended_at"]) == start + timedelta(minutes=52, seconds=30)
    assert event["duration_min"] == 52.5
    assert "zone" not in event  # Lee has no maximum heart rate set
    # The next poll: the same exercise, nothing new.
    hass.states.async_set(POLAR_ENTITY, local, {**polar_exercise(start), "calories": 412})
    await settle(hass)
    assert (
        len(
            [
                c
                for c in mqtt_mock.async_publish.call_args_list
                if c.args[0].startswith(f"{BASE}/lee/workout")
            ]
        )
        == 1
    )


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("PT52M30S", 3150.0),
        ("PT1H2M3S", 3723.0),
        ("PT45M", 2700.0),
        ("P1DT1S", 86401.0),
        (1800, 1800.0),
        ("bogus", None),
        ("P", None),
    ],
)
def test_iso_durations(value: Any, seconds: float | None) -> None:
    assert iso_duration_s(value) == seconds


@pytest.mark.parametrize(
    ("sport", "kind"),
    [
        ("STRENGTH_TRAINING", "strength"),
        ("RUNNING", "cardio"),
        ("INDOOR_CYCLING", "cardio"),
        ("CIRCUIT_TRAINING", "class"),
        ("SOCCER", "sport"),
        ("WALKING", None),
    ],
)
def test_polar_sports(sport: str, kind: str | None) -> None:
    now = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
    start = (now - timedelta(hours=1)).replace(tzinfo=None).isoformat()
    [activity] = activities_of(State(POLAR_ENTITY, start, polar_exercise(now, sport)), UTC)
    event = workout_event(activity, plan={}, max_hr=None, since=now - timedelta(days=1), now=now)
    assert (event["kind"] if event else None) == kind
