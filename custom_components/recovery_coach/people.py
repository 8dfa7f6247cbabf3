"""People set up in Home Assistant: one config subentry per person, published to the
service as a retained profile on `<base>/<user>/profile` (the service's YAML keys).

Pure helpers here (the user id, the weight in kg, the profile payload), and the publish that
waits a moment for the service's answer; the subentry flow is in config_flow.py.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from typing import Any, Final

from homeassistant.components import mqtt
from homeassistant.const import UnitOfMass
from homeassistant.core import HomeAssistant, State, callback
from homeassistant.util.unit_conversion import MassConverter

from .payloads import parse_json_object
from .topics import error_topic, is_valid_user_id, profile_topic, state_topic

SUBENTRY_PERSON: Final = "person"  # set up here: its profile is published
SUBENTRY_SERVICE_USER: Final = "service_user"  # a user of the service's YAML, followed

CONF_PERSON: Final = "person"  # person.* entity the profile belongs to
CONF_USER_ID: Final = "user_id"  # derived from the person's entity id
CONF_WEIGHT_KG: Final = "weight_kg"
CONF_WEIGHT_ENTITY: Final = "weight_entity"  # a scale's sensor to follow instead
CONF_GOAL: Final = "goal"
CONF_RUNNING: Final = "running_experience"
CONF_WAKE_TIME: Final = "wake_time"
CONF_WAKE_BY_DAY: Final = "wake_by_day"  # section: mon..sun, each optional
CONF_SLEEP_HOURS: Final = "sleep_hours"
CONF_PROTEIN: Final = "protein_g_per_kg"
CONF_PLAN: Final = "weekly_plan"  # section: mon..sun, each optional
CONF_MAX_HR: Final = "max_heart_rate"  # bpm: zones of imported workouts
CONF_SOURCES: Final = "activity_sources"  # entities whose activities are the person's
CONF_SOURCES_SINCE: Final = "activity_sources_since"  # entity -> when it was added (ISO)

WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
GOALS: Final = ("general", "hypertrophy", "strength", "endurance", "power", "hybrid")
EXPERIENCE: Final = ("beginner", "intermediate", "advanced")
PLAN_FOCUSES: Final = ("legs", "lower", "upper", "push", "pull", "full", "core", "cardio", "rest")
RESERVED_USER_IDS: Final = frozenset({"recovery_coach", "homeassistant", "status", "diagnostics"})

# A scale reports every weighing; a change this small is not worth re-deciding on.
WEIGHT_STEP_KG: Final = 0.5
# How long saving a person waits for the service to refuse the profile.
PROFILE_ANSWER_S: Final = 3.0


def user_id_for(person_entity_id: str) -> str | None:
    """The service's user id for a person entity (`person.robin_s` -> `robin_s`)."""
    object_id = person_entity_id.partition(".")[2].lower()
    user_id = re.sub(r"[^a-z0-9_]", "_", object_id)[:32]
    if not is_valid_user_id(user_id) or user_id in RESERVED_USER_IDS:
        return None
    return user_id


def weight_kg_of(state: State | None) -> float | None:
    """A weight sensor's state in kg (a scale may report lb or g), None if unreadable."""
    if state is None:
        return None
    try:
        value = float(state.state)
    except ValueError:
        return None
    unit = state.attributes.get("unit_of_measurement") or UnitOfMass.KILOGRAMS
    if unit not in MassConverter.VALID_UNITS:
        return None
    kg = MassConverter.convert(value, unit, UnitOfMass.KILOGRAMS)
    return round(kg, 1) if 25 <= kg <= 400 else None


def _clock(value: str) -> str:
    """A TimeSelector's `07:30:00` as the service's `07:30`."""
    return value[:5]


def profile_payload(
    data: Mapping[str, Any], *, name: str, timezone: str, weight_kg: float | None
) -> dict[str, Any]:
    """The profile JSON for a person's subentry data (the keys of one YAML user)."""
    out: dict[str, Any] = {
        "name": name,
        "timezone": timezone,
        "goal": data.get(CONF_GOAL, "general"),
        "running_experience": data.get(CONF_RUNNING, "intermediate"),
        "sleep_hours": float(data.get(CONF_SLEEP_HOURS, 8)),
        "protein_g_per_kg": float(data.get(CONF_PROTEIN, 1.6)),
    }
    if weight_kg is not None:
        out["weight_kg"] = weight_kg
    wake = _clock(str(data.get(CONF_WAKE_TIME) or "07:00"))
    by_day = {d: _clock(v) for d, v in (data.get(CONF_WAKE_BY_DAY) or {}).items() if v}
    out["wake_time"] = {d: by_day.get(d, wake) for d in WEEKDAYS} if by_day else wake
    plan = {d: v for d, v in (data.get(CONF_PLAN) or {}).items() if v}
    if plan:
        out["weekly_plan"] = plan
    if data.get(CONF_MAX_HR):
        out["max_heart_rate"] = int(data[CONF_MAX_HR])
    return out


def problems_text(answer: Mapping[str, Any]) -> str:
    """The service's refusal, as a line for a form or a repair."""
    problems = answer.get("problems")
    if isinstance(problems, list) and problems:
        return "; ".join(f"{p.get('field')}: {p.get('reason')}" for p in problems)
    return str(answer.get("reason") or "refused")


async def async_publish_profile(
    hass: HomeAssistant,
    base: str,
    user_id: str,
    payload: dict[str, Any] | None,
    timeout: float = PROFILE_ANSWER_S,
) -> dict[str, Any] | None:
    """Publish the retained profile (None: the empty one that removes the person); return
    the service's refusal if it answers with one within `timeout`, else None. A state the
    service publishes for the person (not the retained copy) ends the wait early."""
    topic = profile_topic(base, user_id)
    if payload is None:
        await mqtt.async_publish(hass, topic, "", qos=1, retain=True)
        return None
    answer: asyncio.Future[dict[str, Any] | None] = hass.loop.create_future()

    @callback
    def on_error(msg: mqtt.ReceiveMessage) -> None:
        body = parse_json_object(msg.payload)
        if body is not None and body.get("topic") == topic and not answer.done():
            answer.set_result(body)

    @callback
    def on_state(msg: mqtt.ReceiveMessage) -> None:
        if not msg.retain and not answer.done():
            answer.set_result(None)

    unsubscribe = [
        await mqtt.async_subscribe(hass, error_topic(base, user_id), on_error, qos=1),
        await mqtt.async_subscribe(hass, state_topic(base, user_id), on_state, qos=1),
    ]
    try:
        await mqtt.async_publish(hass, topic, json.dumps(payload), qos=1, retain=True)
        async with asyncio.timeout(timeout):
            return await answer
    except TimeoutError:
        return None  # no answer: the service may be offline; it reads the retained profile
    finally:
        for unsub in unsubscribe:
            unsub()
