"""Config and options flows: find the service on MQTT, pick users, map phones."""

from __future__ import annotations

from typing import Any

import voluptuous as vol
from homeassistant.components import mqtt
from homeassistant.config_entries import (
    ConfigEntry,
    ConfigEntryState,
    ConfigFlow,
    ConfigFlowResult,
    OptionsFlowWithReload,
)
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.selector import (
    EntitySelector,
    EntitySelectorConfig,
    SelectOptionDict,
    SelectSelector,
    SelectSelectorConfig,
    TextSelector,
)
from homeassistant.helpers.service_info.mqtt import MqttServiceInfo

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
from .topics import is_valid_base_topic

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

    VERSION = 1

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

    async def _async_find_service(self) -> str | None:
        """Probe the broker; return an error key, or None with the users found."""
        found = await probe.async_probe_service(self.hass, self._base_topic)
        if found.status not in (STATUS_ONLINE, STATUS_OFFLINE):
            return "no_service"
        if not found.users:
            return "no_users"
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
                    return self.async_update_reload_and_abort(
                        entry,
                        unique_id=self._base_topic,
                        title=f"Recovery Coach ({self._base_topic})",
                        data_updates={CONF_BASE_TOPIC: self._base_topic},
                    )
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
        """Pick the users to follow."""
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
                options={CONF_USERS: self._user_settings},
            )
        user_id = self._users_to_map[0]
        return self.async_show_form(
            step_id="phones",
            data_schema=vol.Schema(
                {vol.Optional(CONF_PHONES, default=[]): _phones_selector(self.hass)}
            ),
            description_placeholders={"name": self._found_users.get(user_id, user_id)},
        )


class RecoveryCoachOptionsFlow(OptionsFlowWithReload):
    """Change followed users, phones, speakers and gym zones."""

    def __init__(self) -> None:
        """Start with the entry's current options."""
        self._users_to_edit: list[str] = []
        self._new_options: dict[str, Any] = {}

    def _known_users(self) -> dict[str, str]:
        """Followed users plus every user whose state the running hub has seen."""
        known = {user_id: user_id for user_id in self.config_entry.options.get(CONF_USERS, {})}
        if self.config_entry.state is ConfigEntryState.LOADED:
            hub = self.config_entry.runtime_data.hub
            known.update({user_id: hub.display_name(user_id) for user_id in (*known, *hub.states)})
        return known

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Pick the followed users and a text-to-speech engine for speakers."""
        current: dict[str, dict[str, Any]] = self.config_entry.options.get(CONF_USERS, {})
        errors: dict[str, str] = {}
        if user_input is not None:
            if not user_input[CONF_USERS]:
                errors["base"] = "no_users_selected"
            else:
                self._users_to_edit = sorted(user_input[CONF_USERS])
                self._new_options = {
                    CONF_USERS: {u: dict(current.get(u, {})) for u in self._users_to_edit}
                }
                if engine := user_input.get(CONF_TTS_ENGINE):
                    self._new_options[CONF_TTS_ENGINE] = engine
                return await self.async_step_user_settings()
        engine = self.config_entry.options.get(CONF_TTS_ENGINE)
        return self.async_show_form(
            step_id="init",
            data_schema=vol.Schema(
                {
                    vol.Required(CONF_USERS, default=sorted(current)): SelectSelector(
                        SelectSelectorConfig(
                            options=_user_options(self._known_users()), multiple=True
                        )
                    ),
                    vol.Optional(
                        CONF_TTS_ENGINE, description={"suggested_value": engine}
                    ): EntitySelector(EntitySelectorConfig(domain="tts")),
                }
            ),
            errors=errors,
        )

    async def async_step_user_settings(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Phones, speaker and gym zone of one user at a time."""
        users: dict[str, dict[str, Any]] = self._new_options[CONF_USERS]
        errors: dict[str, str] = {}
        if user_input is not None:
            if bool(user_input.get(CONF_TRACKER)) != bool(user_input.get(CONF_GYM_ZONE)):
                errors["base"] = "gym_needs_tracker_and_zone"
            else:
                user_id = self._users_to_edit.pop(0)
                users[user_id] = {
                    key: user_input[key]
                    for key in (CONF_PHONES, CONF_ANNOUNCE_ENTITY, CONF_TRACKER, CONF_GYM_ZONE)
                    if user_input.get(key)
                }
        if not self._users_to_edit:
            return self.async_create_entry(data=self._new_options)
        user_id = self._users_to_edit[0]
        settings = users[user_id]

        def suggested(key: str) -> dict[str, Any]:
            return {"suggested_value": settings.get(key)}

        return self.async_show_form(
            step_id="user_settings",
            data_schema=vol.Schema(
                {
                    vol.Optional(CONF_PHONES, description=suggested(CONF_PHONES)): (
                        _phones_selector(self.hass)
                    ),
                    vol.Optional(
                        CONF_ANNOUNCE_ENTITY, description=suggested(CONF_ANNOUNCE_ENTITY)
                    ): EntitySelector(
                        EntitySelectorConfig(domain=["media_player", "assist_satellite"])
                    ),
                    vol.Optional(CONF_TRACKER, description=suggested(CONF_TRACKER)): (
                        EntitySelector(EntitySelectorConfig(domain=["person", "device_tracker"]))
                    ),
                    vol.Optional(CONF_GYM_ZONE, description=suggested(CONF_GYM_ZONE)): (
                        EntitySelector(EntitySelectorConfig(domain="zone"))
                    ),
                }
            ),
            errors=errors,
            description_placeholders={"name": self._known_users().get(user_id, user_id)},
        )
