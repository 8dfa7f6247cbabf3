"""The people of an entry, while it runs: their settings for the hub, their weight sensors
followed (a profile republished when the weight moves by 0.5 kg or more), the service's late
refusals raised as repair issues, and an empty profile published for a person deleted."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Final

from homeassistant.components import mqtt
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import (
    CALLBACK_TYPE,
    Event,
    EventStateChangedData,
    HomeAssistant,
    State,
    callback,
)
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.event import (
    async_track_state_change_event,
    async_track_time_interval,
)
from homeassistant.util import dt as dt_util

from .activity_sources import (
    STRAVA_EVENT,
    STRAVA_PLATFORM,
    Activity,
    activities_of,
    strava_activities,
    workout_event,
)
from .const import (
    CONF_ANNOUNCE_ENTITY,
    CONF_BASE_TOPIC,
    CONF_GYM_ZONE,
    CONF_PHONES,
    CONF_TRACKER,
    DOMAIN,
    LOGGER,
)
from .payloads import parse_json_object
from .people import (
    CONF_MAX_HR,
    CONF_PERSON,
    CONF_PLAN,
    CONF_SOURCES,
    CONF_SOURCES_SINCE,
    CONF_USER_ID,
    CONF_WEIGHT_ENTITY,
    CONF_WEIGHT_KG,
    SUBENTRY_PERSON,
    SUBENTRY_SERVICE_USER,
    WEIGHT_STEP_KG,
    async_publish_profile,
    problems_text,
    profile_payload,
    weight_kg_of,
)
from .topics import error_topic, event_topic, profile_topic, user_from_topic


def person_name(hass: HomeAssistant, person: str, fallback: str) -> str:
    state = hass.states.get(person)
    name = state.name if state is not None else None
    return name or fallback


def person_weight_kg(hass: HomeAssistant, data: Mapping[str, Any]) -> float | None:
    """The weight to publish: the sensor's when one is followed and readable, else the
    number typed in."""
    entity = data.get(CONF_WEIGHT_ENTITY)
    if entity and (kg := weight_kg_of(hass.states.get(entity))) is not None:
        return kg
    typed = data.get(CONF_WEIGHT_KG)
    return round(float(typed), 1) if typed is not None else None


def people_of(entry: ConfigEntry) -> dict[str, Mapping[str, Any]]:
    """user id -> subentry data, for every person set up in this entry."""
    return {
        s.data[CONF_USER_ID]: s.data
        for s in entry.subentries.values()
        if s.subentry_type == SUBENTRY_PERSON and s.data.get(CONF_USER_ID)
    }


def settings_of(data: Mapping[str, Any]) -> dict[str, Any]:
    """What the hub needs of a person: phones, speaker, and the person as the gym tracker."""
    out = {k: data[k] for k in (CONF_PHONES, CONF_ANNOUNCE_ENTITY, CONF_GYM_ZONE) if data.get(k)}
    if data.get(CONF_GYM_ZONE):
        out[CONF_TRACKER] = data[CONF_PERSON]
    return out


def followed_of(entry: ConfigEntry) -> dict[str, dict[str, Any]]:
    """user id -> phones, speaker, tracker and gym zone, for every user the entry follows:
    the people set up here and the service's YAML users it follows."""
    out = {user_id: settings_of(data) for user_id, data in people_of(entry).items()}
    for sub in entry.subentries.values():
        if sub.subentry_type == SUBENTRY_SERVICE_USER and sub.data.get(CONF_USER_ID):
            keys = (CONF_PHONES, CONF_ANNOUNCE_ENTITY, CONF_TRACKER, CONF_GYM_ZONE)
            out[sub.data[CONF_USER_ID]] = {k: sub.data[k] for k in keys if sub.data.get(k)}
    return out


def _platform(hass: HomeAssistant, entity_id: str) -> str | None:
    entry = er.async_get(hass).async_get(entity_id)
    return entry.platform if entry is not None else None


def _since(data: Mapping[str, Any], entity_id: str) -> datetime:
    """When the source was added to the person: what ended before is history."""
    when = (data.get(CONF_SOURCES_SINCE) or {}).get(entity_id)
    parsed = dt_util.parse_datetime(when) if isinstance(when, str) else None
    return parsed or dt_util.utcnow()


def sources_since(old: Mapping[str, Any], sources: list[str], now: datetime) -> dict[str, str]:
    """Each source's time of adding: kept for those the person had, now for new ones."""
    before = old.get(CONF_SOURCES_SINCE) or {}
    return {e: before.get(e) or now.isoformat() for e in sources}


def _issue_id(entry_id: str, user_id: str) -> str:
    return f"profile_refused_{entry_id}_{user_id}"


def _source_issue_id(entry_id: str, user_id: str, entity_id: str) -> str:
    return f"source_silent_{entry_id}_{user_id}_{entity_id.replace('.', '_')}"


# A source whose newest activity is this old has not synced: worth a repair, since nothing
# it shows is sent as today's workout (activity_sources.RECENT).
STALE_AFTER: Final = timedelta(days=7)
CHECK_SOURCES_EVERY: Final = timedelta(hours=6)


@callback
def async_clear_profile_issue(hass: HomeAssistant, entry_id: str, user_id: str) -> None:
    ir.async_delete_issue(hass, DOMAIN, _issue_id(entry_id, user_id))


class PeopleFollower:
    """Runs beside the hub for one loaded entry."""

    def __init__(self, hass: HomeAssistant, entry: ConfigEntry) -> None:
        self.hass = hass
        self.entry = entry
        self.base: str = entry.data[CONF_BASE_TOPIC]
        self.people = people_of(entry)
        self._published_kg: dict[str, float | None] = {}
        self._sent: set[str] = set()  # activity event ids sent since this entry loaded
        self._strava_people: list[str] = []  # people with a Strava sensor among their sources
        self._unsubscribers: list[CALLBACK_TYPE] = []

    async def async_start(self) -> None:
        for user_id, data in self.people.items():
            self._published_kg[user_id] = person_weight_kg(self.hass, data)
        sources: dict[str, list[str]] = {}
        for user_id, data in self.people.items():
            for entity_id in data.get(CONF_SOURCES) or []:
                sources.setdefault(entity_id, []).append(user_id)
        if sources:
            # Callbacks (not lambdas, which HA would run in a worker thread).
            on_activity = callback(partial(self._activity, sources))
            on_check = callback(lambda _now: self._check_sources(sources))
            self._unsubscribers.append(
                async_track_state_change_event(self.hass, list(sources), on_activity)
            )
            self._unsubscribers.append(
                async_track_time_interval(self.hass, on_check, CHECK_SOURCES_EVERY)
            )
            self._check_sources(sources)
        registry = er.async_get(self.hass)
        self._strava_people = sorted(
            {
                user_id
                for entity_id, users in sources.items()
                if (e := registry.async_get(entity_id)) is not None
                and e.platform == STRAVA_PLATFORM
                for user_id in users
            }
        )
        if self._strava_people:
            self._unsubscribers.append(self.hass.bus.async_listen(STRAVA_EVENT, self._strava_event))
            # What came while HA was down is sent now; what was sent before is dropped by
            # the service (the event id is the activity's).
            for entity_id, users in sources.items():
                for user_id in users:
                    self._send_activities(user_id, entity_id, self.hass.states.get(entity_id))
        sensors = {
            data[CONF_WEIGHT_ENTITY]: user_id
            for user_id, data in self.people.items()
            if data.get(CONF_WEIGHT_ENTITY)
        }
        if sensors:
            on_weight = callback(partial(self._weight_changed, sensors))
            self._unsubscribers.append(
                async_track_state_change_event(self.hass, list(sensors), on_weight)
            )
        self._unsubscribers.append(
            await mqtt.async_subscribe(
                self.hass, error_topic(self.base, "+"), self._on_error, qos=1
            )
        )

    @callback
    def async_stop(self) -> None:
        while self._unsubscribers:
            self._unsubscribers.pop()()

    @callback
    def _activity(self, sources: dict[str, list[str]], event: Event[EventStateChangedData]) -> None:
        entity_id = event.data["entity_id"]
        for user_id in sources[entity_id]:
            self._send_activities(user_id, entity_id, event.data["new_state"])
        self._check_sources({entity_id: sources[entity_id]})

    @callback
    def _check_sources(self, sources: dict[str, list[str]]) -> None:
        """A source that is gone, or whose newest activity is days old, is a repair: its
        old activity is never sent as today's, and the person should know why."""
        now = dt_util.utcnow()
        registry = er.async_get(self.hass)
        for entity_id, users in sources.items():
            state = self.hass.states.get(entity_id)
            known = registry.async_get(entity_id)
            strava = known is not None and known.platform == STRAVA_PLATFORM
            newest = max(
                (a.ended_at for a in activities_of(state, dt_util.get_default_time_zone())),
                default=None,
            )
            for user_id in users:
                issue_id = _source_issue_id(self.entry.entry_id, user_id, entity_id)
                name = person_name(self.hass, self.people[user_id][CONF_PERSON], user_id)
                if state is None and known is None:
                    key, extra = "source_missing", {}
                elif newest is not None and not strava and now - newest > STALE_AFTER:
                    days = (now - newest).days
                    key, extra = "source_silent", {"days": str(days)}
                    LOGGER.info(
                        "%s: the newest activity of %s ended %d days ago: nothing sent",
                        user_id,
                        entity_id,
                        days,
                    )
                else:
                    ir.async_delete_issue(self.hass, DOMAIN, issue_id)
                    continue
                ir.async_create_issue(
                    self.hass,
                    DOMAIN,
                    issue_id,
                    is_fixable=False,
                    severity=ir.IssueSeverity.WARNING,
                    translation_key=key,
                    translation_placeholders={"name": name, "entity": entity_id, **extra},
                )

    @callback
    def _strava_event(self, event: Event) -> None:
        activities = strava_activities(event.data, dt_util.get_default_time_zone())
        for user_id in self._strava_people:
            data = self.people[user_id]
            strava = [
                e
                for e in data.get(CONF_SOURCES) or []
                if _platform(self.hass, e) == STRAVA_PLATFORM
            ]
            since = min((_since(data, e) for e in strava), default=dt_util.utcnow())
            self._send(user_id, "strava", activities, since)

    @callback
    def _send_activities(self, user_id: str, entity_id: str, state: State | None) -> None:
        since = _since(self.people[user_id], entity_id)
        zone = dt_util.get_default_time_zone()  # for sources whose times have none
        self._send(user_id, entity_id, activities_of(state, zone), since)

    @callback
    def _send(self, user_id: str, origin: str, activities: list[Activity], since: datetime) -> None:
        data = self.people[user_id]
        now = dt_util.utcnow()
        for activity in activities:
            body = workout_event(
                activity,
                plan=data.get(CONF_PLAN) or {},
                max_hr=data.get(CONF_MAX_HR),
                since=since,
                now=now,
            )
            if body is None:
                LOGGER.debug("Activity %s of %s not sent", activity.activity_id, origin)
                continue
            if body["event_id"] in self._sent:
                continue
            self._sent.add(body["event_id"])
            LOGGER.debug("Activity %s of %s sent for %s", body["event_id"], origin, user_id)
            self.entry.async_create_background_task(
                self.hass,
                mqtt.async_publish(
                    self.hass,
                    event_topic(self.base, user_id, "workout/completed"),
                    json.dumps(body),
                    qos=1,
                    retain=False,
                ),
                f"{DOMAIN} activity {body['event_id']}",
            )

    @callback
    def _weight_changed(self, sensors: dict[str, str], event: Event[EventStateChangedData]) -> None:
        user_id = sensors[event.data["entity_id"]]
        kg = weight_kg_of(event.data["new_state"])
        last = self._published_kg.get(user_id)
        if kg is None or (last is not None and abs(kg - last) < WEIGHT_STEP_KG):
            return
        self._published_kg[user_id] = kg
        self.entry.async_create_background_task(
            self.hass, self.async_republish(user_id), f"{DOMAIN} weight {user_id}"
        )

    async def async_republish(self, user_id: str) -> None:
        data = self.people[user_id]
        payload = profile_payload(
            data,
            name=person_name(self.hass, data[CONF_PERSON], user_id),
            timezone=str(self.hass.config.time_zone),
            weight_kg=person_weight_kg(self.hass, data),
        )
        # A refusal arriving now is raised by _on_error as a repair issue.
        await async_publish_profile(self.hass, self.base, user_id, payload, timeout=0)

    @callback
    def _on_error(self, msg: mqtt.ReceiveMessage) -> None:
        """A profile of this entry's people refused after its form closed (a weight the
        scale reported, the service upgraded): a repair issue says what to fix."""
        user_id = user_from_topic(self.base, msg.topic)
        body = parse_json_object(msg.payload)
        if user_id not in self.people or body is None:
            return
        if body.get("topic") != profile_topic(self.base, user_id):
            return
        LOGGER.warning("Recovery Coach refused the profile of %s", user_id)
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            _issue_id(self.entry.entry_id, user_id),
            is_fixable=False,
            severity=ir.IssueSeverity.WARNING,
            translation_key="profile_refused",
            translation_placeholders={
                "name": person_name(self.hass, self.people[user_id][CONF_PERSON], user_id),
                "problems": problems_text(body),
            },
        )


async def async_remove_people(hass: HomeAssistant, base: str, user_ids: list[str]) -> None:
    """Publish the empty retained profile that removes each person from the service."""
    for user_id in user_ids:
        await async_publish_profile(hass, base, user_id, None)
