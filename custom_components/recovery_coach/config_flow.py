"""Config and options flows: find the service on MQTT, pick users, map phones."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import voluptuous as vol
from homeassistant.components import mqtt
from homeassistant.config_entries import (
    ConfigEntry,
    ConfigEntryState,
    ConfigFlow,
    ConfigFlowResult,
    ConfigSubentry,
    ConfigSubentryData,
    ConfigSubentryFlow,
    OptionsFlow,
    SubentryFlowResult,
)
from homeassistant.core import HomeAssistant, callback
from homeassistant.data_entry_flow import section
from homeassistant.helpers.selector import (
    EntitySelector,
    EntitySelectorConfig,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectOptionDict,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
    TextSelector,
    TimeSelector,
)
from homeassistant.helpers.service_info.mqtt import MqttServiceInfo
from homeassistant.util import dt as dt_util

from . import probe
from .const import (
    CONF_ANNOUNCE_ENTITY,
    CONF_BASE_TOPIC,
    CONF_GYM_ZONE,
    CONF_PHONES,
    CONF_TRACKER,
    CONF_TTS_ENGINE,
    CONF_USERS,
    DEFAULT_BASE_TOPIC,
    DOMAIN,
    STATUS_OFFLINE,
    STATUS_ONLINE,
)
from .people import (
    CONF_GOAL,
    CONF_MAX_HR,
    CONF_PERSON,
    CONF_PLAN,
    CONF_PROTEIN,
    CONF_RUNNING,
    CONF_SLEEP_HOURS,
    CONF_SOURCES,
    CONF_SOURCES_SINCE,
    CONF_USER_ID,
    CONF_WAKE_BY_DAY,
    CONF_WAKE_TIME,
    CONF_WEIGHT_ENTITY,
    CONF_WEIGHT_KG,
    EXPERIENCE,
    GOALS,
    PLAN_FOCUSES,
    SUBENTRY_PERSON,
    SUBENTRY_SERVICE_USER,
    WEEKDAYS,
    async_publish_profile,
    problems_text,
    profile_payload,
    user_id_for,
    weight_kg_of,
)
from .profiles import (
    async_clear_profile_issue,
    person_name,
    person_weight_kg,
    sources_since,
)
from .topics import is_valid_base_topic, is_valid_user_id

STATUS_SUFFIX = "/status"


def _mobile_app_phones(hass: HomeAssistant) -> list[str]:
    """Notify services of the companion app, e.g. `mobile_app_pixel_8`."""
    return sorted(
        service
        for service in hass.services.async_services_for_domain("notify")
        if service.startswith("mobile_app_")
    )


def _user_options(users: dict[str, str]) -> list[SelectOptionDict]:
    return [
        SelectOptionDict(value=user_id, label=f"{name} ({user_id})" if name != user_id else name)
        for user_id, name in sorted(users.items())
    ]


def _phones_selector(hass: HomeAssistant) -> SelectSelector:
    # custom_value: a phone that is offline right now may still be typed in by name.
    return SelectSelector(
        SelectSelectorConfig(
            options=_mobile_app_phones(hass), multiple=True, custom_value=True, sort=True
        )
    )


class RecoveryCoachConfigFlow(ConfigFlow, domain=DOMAIN):
    """Set up one entry per base topic."""

    VERSION = 2  # 2: followed users in subentries (was options), see async_migrate_entry

    def __init__(self) -> None:
        """Start with nothing found."""
        self._base_topic = DEFAULT_BASE_TOPIC
        self._found_users: dict[str, str] = {}
        self._users_to_map: list[str] = []
        self._user_settings: dict[str, dict[str, Any]] = {}

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: ConfigEntry) -> RecoveryCoachOptionsFlow:
        """Options: users, phones, speakers, gym zones."""
        return RecoveryCoachOptionsFlow()

    @classmethod
    @callback
    def async_get_supported_subentry_types(
        cls, config_entry: ConfigEntry
    ) -> dict[str, type[ConfigSubentryFlow]]:
        """One subentry per person set up here ("Add person")."""
        return {SUBENTRY_PERSON: PersonSubentryFlow, SUBENTRY_SERVICE_USER: ServiceUserSubentryFlow}

    async def _async_find_service(self) -> str | None:
        """Probe the broker; return an error key, or None with the users found (a service
        with none yet is fine: people are then added here, "Add person")."""
        found = await probe.async_probe_service(self.hass, self._base_topic)
        if found.status not in (STATUS_ONLINE, STATUS_OFFLINE):
            return "no_service"
        self._found_users = found.users
        return None

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask for the base topic and look for the service there."""
        if not await mqtt.async_wait_for_mqtt_client(self.hass):
            return self.async_abort(reason="mqtt_not_configured")
        errors: dict[str, str] = {}
        if user_input is not None:
            self._base_topic = user_input[CONF_BASE_TOPIC].strip().strip("/")
            if not is_valid_base_topic(self._base_topic):
                errors[CONF_BASE_TOPIC] = "invalid_base_topic"
            else:
                await self.async_set_unique_id(self._base_topic)
                self._abort_if_unique_id_configured()
                if (error := await self._async_find_service()) is None:
                    return await self.async_step_users()
                errors["base"] = error
        return self.async_show_form(
            step_id="user",
            data_schema=vol.Schema(
                {vol.Required(CONF_BASE_TOPIC, default=self._base_topic): TextSelector()}
            ),
            errors=errors,
            description_placeholders={"base_topic": self._base_topic},
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Move the entry to another base topic, once the service is found there."""
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        self._base_topic = entry.data[CONF_BASE_TOPIC]
        if user_input is not None:
            self._base_topic = user_input[CONF_BASE_TOPIC].strip().strip("/")
            if not is_valid_base_topic(self._base_topic):
                errors[CONF_BASE_TOPIC] = "invalid_base_topic"
            else:
                if self._base_topic != entry.unique_id:
                    await self.async_set_unique_id(self._base_topic)
                    self._abort_if_unique_id_configured()
                if (error := await self._async_find_service()) is None:
                    # The entry's update listener reloads it for the new base topic (HA
                    # 2026.12 refuses a reload from the flow of an entry with a listener).
                    self.hass.config_entries.async_update_entry(
                        entry,
                        unique_id=self._base_topic,
                        title=f"Recovery Coach ({self._base_topic})",
                        data={**entry.data, CONF_BASE_TOPIC: self._base_topic},
                    )
                    return self.async_abort(reason="reconfigure_successful")
                errors["base"] = error
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=vol.Schema(
                {vol.Required(CONF_BASE_TOPIC, default=self._base_topic): TextSelector()}
            ),
            errors=errors,
            description_placeholders={"base_topic": self._base_topic},
        )

    async def async_step_mqtt(self, discovery_info: MqttServiceInfo) -> ConfigFlowResult:
        """Started by HA's MQTT discovery when `recovery_coach/status` is retained."""
        topic = discovery_info.topic
        payload = discovery_info.payload
        if isinstance(payload, (bytes, bytearray)):
            payload = payload.decode(errors="replace")
        if not topic.endswith(STATUS_SUFFIX) or payload not in (STATUS_ONLINE, STATUS_OFFLINE):
            return self.async_abort(reason="invalid_discovery_info")
        self._base_topic = topic.removesuffix(STATUS_SUFFIX)
        await self.async_set_unique_id(self._base_topic)
        self._abort_if_unique_id_configured()
        self.context["title_placeholders"] = {"base_topic": self._base_topic}
        return await self.async_step_discovery_confirm()

    async def async_step_discovery_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Confirm following the discovered service."""
        errors: dict[str, str] = {}
        if user_input is not None:
            if (error := await self._async_find_service()) is None:
                return await self.async_step_users()
            errors["base"] = error
        return self.async_show_form(
            step_id="discovery_confirm",
            errors=errors,
            description_placeholders={"base_topic": self._base_topic},
        )

    async def async_step_users(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Pick the users of the service's YAML to follow; with none, the entry is made and
        people are added to it in the UI."""
        if not self._found_users:
            return self.async_create_entry(
                title=f"Recovery Coach ({self._base_topic})",
                data={CONF_BASE_TOPIC: self._base_topic},
            )
        errors: dict[str, str] = {}
        if user_input is not None:
            chosen = [u for u in user_input[CONF_USERS] if u in self._found_users]
            if not chosen:
                errors["base"] = "no_users_selected"
            else:
                self._users_to_map = sorted(chosen)
                self._user_settings = {user_id: {} for user_id in chosen}
                return await self.async_step_phones()
        return self.async_show_form(
            step_id="users",
            data_schema=vol.Schema(
                {
                    vol.Required(CONF_USERS, default=sorted(self._found_users)): SelectSelector(
                        SelectSelectorConfig(
                            options=_user_options(self._found_users), multiple=True
                        )
                    )
                }
            ),
            errors=errors,
            description_placeholders={"base_topic": self._base_topic},
        )

    async def async_step_phones(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Map phones to one user at a time."""
        if user_input is not None:
            user_id = self._users_to_map.pop(0)
            self._user_settings[user_id][CONF_PHONES] = list(user_input.get(CONF_PHONES, []))
        if not self._users_to_map:
            return self.async_create_entry(
                title=f"Recovery Coach ({self._base_topic})",
                data={CONF_BASE_TOPIC: self._base_topic},
                subentries=[
                    ConfigSubentryData(
                        data={CONF_USER_ID: user_id, **settings},
                        subentry_type=SUBENTRY_SERVICE_USER,
                        title=self._found_users.get(user_id, user_id),
                        unique_id=user_id,
                    )
                    for user_id, settings in sorted(self._user_settings.items())
                ],
            )
        user_id = self._users_to_map[0]
        return self.async_show_form(
            step_id="phones",
            data_schema=vol.Schema(
                {vol.Optional(CONF_PHONES, default=[]): _phones_selector(self.hass)}
            ),
            description_placeholders={"name": self._found_users.get(user_id, user_id)},
        )


class RecoveryCoachOptionsFlow(OptionsFlow):
    """The text-to-speech engine for speakers (users and people are subentries)."""

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Pick a text-to-speech engine for media players."""
        if user_input is not None:
            options = {k: v for k, v in user_input.items() if k == CONF_TTS_ENGINE and v}
            return self.async_create_entry(data=options)
        engine = self.config_entry.options.get(CONF_TTS_ENGINE)
        return self.async_show_form(
            step_id="init",
            data_schema=vol.Schema(
                {
                    vol.Optional(
                        CONF_TTS_ENGINE, description={"suggested_value": engine}
                    ): EntitySelector(EntitySelectorConfig(domain="tts"))
                }
            ),
        )


def _devices_schema(hass: HomeAssistant, current: Mapping[str, Any]) -> dict[Any, Any]:
    """Phones, speaker, and the tracker with the gym zone of one user."""

    def suggested(key: str) -> dict[str, Any]:
        return {"suggested_value": current.get(key)} if key in current else {}

    return {
        vol.Optional(CONF_PHONES, description=suggested(CONF_PHONES)): _phones_selector(hass),
        vol.Optional(CONF_ANNOUNCE_ENTITY, description=suggested(CONF_ANNOUNCE_ENTITY)): (
            EntitySelector(EntitySelectorConfig(domain=["media_player", "assist_satellite"]))
        ),
        vol.Optional(CONF_TRACKER, description=suggested(CONF_TRACKER)): EntitySelector(
            EntitySelectorConfig(domain=["person", "device_tracker"])
        ),
        vol.Optional(CONF_GYM_ZONE, description=suggested(CONF_GYM_ZONE)): EntitySelector(
            EntitySelectorConfig(domain="zone")
        ),
    }


class ServiceUserSubentryFlow(ConfigSubentryFlow):
    """Follow a user of the service's YAML (it owns their profile): phones, speaker, gym."""

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> SubentryFlowResult:
        """Pick one of the service's users not followed yet."""
        entry = self._get_entry()
        taken = {s.unique_id for s in entry.subentries.values()}
        known: dict[str, str] = {}
        if entry.state is ConfigEntryState.LOADED:
            hub = entry.runtime_data.hub
            known = {u: hub.display_name(u) for u in hub.states if u not in taken}
        errors: dict[str, str] = {}
        if user_input is not None:
            user_id = str(user_input[CONF_USER_ID]).strip()
            if not is_valid_user_id(user_id):
                errors[CONF_USER_ID] = "invalid_user_id"
            elif user_id in taken:
                errors[CONF_USER_ID] = "already_followed"
            elif bool(user_input.get(CONF_TRACKER)) != bool(user_input.get(CONF_GYM_ZONE)):
                errors["base"] = "gym_needs_tracker_and_zone"
            else:
                data = {k: v for k, v in user_input.items() if v}
                return self.async_create_entry(
                    title=known.get(user_id, user_id), data=data, unique_id=user_id
                )
        return self.async_show_form(
            step_id="user",
            data_schema=vol.Schema(
                {
                    vol.Required(CONF_USER_ID): SelectSelector(
                        SelectSelectorConfig(options=_user_options(known), custom_value=True)
                    ),
                    **_devices_schema(self.hass, user_input or {}),
                }
            ),
            errors=errors,
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """Change the user's phones, speaker or gym zone."""
        subentry = self._get_reconfigure_subentry()
        errors: dict[str, str] = {}
        if user_input is not None:
            if bool(user_input.get(CONF_TRACKER)) != bool(user_input.get(CONF_GYM_ZONE)):
                errors["base"] = "gym_needs_tracker_and_zone"
            else:
                data = {CONF_USER_ID: subentry.data[CONF_USER_ID]}
                data.update({k: v for k, v in user_input.items() if v})
                return self.async_update_and_abort(self._get_entry(), subentry, data=data)
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=vol.Schema(_devices_schema(self.hass, user_input or subentry.data)),
            errors=errors,
            description_placeholders={"name": subentry.title},
        )


def _person_schema(hass: HomeAssistant, current: Mapping[str, Any], *, new: bool) -> vol.Schema:
    """The person form; `current` fills in what the person has (editing)."""

    def suggested(key: str) -> dict[str, Any]:
        return {"suggested_value": current.get(key)} if key in current else {}

    def pick(options: tuple[str, ...], key: str) -> SelectSelector:
        return SelectSelector(
            SelectSelectorConfig(
                options=list(options), translation_key=key, mode=SelectSelectorMode.DROPDOWN
            )
        )

    fields: dict[Any, Any] = {}
    if new:
        fields[vol.Required(CONF_PERSON)] = EntitySelector(EntitySelectorConfig(domain="person"))
    fields.update(
        {
            vol.Optional(CONF_WEIGHT_KG, description=suggested(CONF_WEIGHT_KG)): NumberSelector(
                NumberSelectorConfig(
                    min=25, max=400, step=0.1, unit_of_measurement="kg", mode=NumberSelectorMode.BOX
                )
            ),
            vol.Optional(CONF_WEIGHT_ENTITY, description=suggested(CONF_WEIGHT_ENTITY)): (
                EntitySelector(EntitySelectorConfig(domain="sensor", device_class="weight"))
            ),
            vol.Required(CONF_GOAL, default=current.get(CONF_GOAL, "general")): pick(
                GOALS, CONF_GOAL
            ),
            vol.Required(CONF_RUNNING, default=current.get(CONF_RUNNING, "intermediate")): pick(
                EXPERIENCE, CONF_RUNNING
            ),
            vol.Required(CONF_WAKE_TIME, default=current.get(CONF_WAKE_TIME, "07:00:00")): (
                TimeSelector()
            ),
            vol.Required(CONF_SLEEP_HOURS, default=current.get(CONF_SLEEP_HOURS, 8)): (
                NumberSelector(
                    NumberSelectorConfig(min=8, max=12, step=0.5, unit_of_measurement="h")
                )
            ),
            vol.Required(CONF_PROTEIN, default=current.get(CONF_PROTEIN, 1.6)): NumberSelector(
                NumberSelectorConfig(min=1.2, max=3.0, step=0.1, unit_of_measurement="g/kg")
            ),
            vol.Optional(CONF_WAKE_BY_DAY): section(
                vol.Schema(
                    {
                        vol.Optional(
                            day,
                            description={
                                "suggested_value": (current.get(CONF_WAKE_BY_DAY) or {}).get(day)
                            },
                        ): TimeSelector()
                        for day in WEEKDAYS
                    }
                ),
                {"collapsed": True},
            ),
            vol.Optional(CONF_PLAN): section(
                vol.Schema(
                    {
                        vol.Optional(
                            day,
                            description={
                                "suggested_value": (current.get(CONF_PLAN) or {}).get(day)
                            },
                        ): pick(PLAN_FOCUSES, "plan_focus")
                        for day in WEEKDAYS
                    }
                ),
                {"collapsed": True},
            ),
            vol.Optional(CONF_SOURCES, description=suggested(CONF_SOURCES)): EntitySelector(
                EntitySelectorConfig(domain="sensor", multiple=True)
            ),
            vol.Optional(CONF_MAX_HR, description=suggested(CONF_MAX_HR)): NumberSelector(
                NumberSelectorConfig(
                    min=100, max=230, step=1, unit_of_measurement="bpm", mode=NumberSelectorMode.BOX
                )
            ),
            vol.Optional(CONF_PHONES, description=suggested(CONF_PHONES)): _phones_selector(hass),
            vol.Optional(CONF_ANNOUNCE_ENTITY, description=suggested(CONF_ANNOUNCE_ENTITY)): (
                EntitySelector(EntitySelectorConfig(domain=["media_player", "assist_satellite"]))
            ),
            vol.Optional(CONF_GYM_ZONE, description=suggested(CONF_GYM_ZONE)): EntitySelector(
                EntitySelectorConfig(domain="zone")
            ),
        }
    )
    return vol.Schema(fields)


class PersonSubentryFlow(ConfigSubentryFlow):
    """Add a person (their profile is published to the service), or edit one."""

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> SubentryFlowResult:
        """Add a person."""
        return await self._async_person_step("user", user_input, None)

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """Edit a person: their profile is published again."""
        return await self._async_person_step(
            "reconfigure", user_input, self._get_reconfigure_subentry()
        )

    async def _async_person_step(
        self, step_id: str, user_input: dict[str, Any] | None, subentry: ConfigSubentry | None
    ) -> SubentryFlowResult:
        entry = self._get_entry()
        current: dict[str, Any] = dict(subentry.data) if subentry else {}
        errors: dict[str, str] = {}
        placeholders = {"problems": "", "name": subentry.title if subentry else ""}
        if user_input is not None:
            data = {**current, **user_input}
            data[CONF_SOURCES_SINCE] = sources_since(
                current, list(user_input.get(CONF_SOURCES) or []), dt_util.utcnow()
            )
            if subentry is None:
                data[CONF_USER_ID] = user_id_for(user_input[CONF_PERSON]) or ""
            user_id = data[CONF_USER_ID]
            taken = {s.unique_id for s in entry.subentries.values() if s is not subentry}
            if not user_id:
                errors[CONF_PERSON] = "invalid_person"
            elif user_id in taken:
                errors[CONF_PERSON] = "person_already_added"
            elif (
                user_input.get(CONF_WEIGHT_ENTITY)
                and weight_kg_of(self.hass.states.get(user_input[CONF_WEIGHT_ENTITY])) is None
            ):
                errors[CONF_WEIGHT_ENTITY] = "weight_unreadable"
            else:
                name = person_name(self.hass, data[CONF_PERSON], user_id)
                refusal = await async_publish_profile(
                    self.hass,
                    entry.data[CONF_BASE_TOPIC],
                    user_id,
                    profile_payload(
                        data,
                        name=name,
                        timezone=str(self.hass.config.time_zone),
                        weight_kg=person_weight_kg(self.hass, data),
                    ),
                )
                if refusal is None:
                    async_clear_profile_issue(self.hass, entry.entry_id, user_id)
                    if subentry is None:
                        return self.async_create_entry(title=name, data=data, unique_id=user_id)
                    return self.async_update_and_abort(entry, subentry, title=name, data=data)
                errors["base"] = "profile_refused"
                placeholders["problems"] = problems_text(refusal)
                for problem in refusal.get("problems") or []:
                    if isinstance(problem, dict) and problem.get("field") in data:
                        errors[str(problem["field"])] = "profile_field_refused"
            current = data
        return self.async_show_form(
            step_id=step_id,
            data_schema=_person_schema(self.hass, current, new=subentry is None),
            errors=errors,
            description_placeholders=placeholders,
        )
