"""Recovery Coach: workout-recovery nudges from the Recovery Coach MQTT service.

The service publishes its own entities through MQTT discovery; this integration adds
what discovery cannot: phone notifications with actions, spoken nudges, voice answers,
actions (services) that log workouts, and gym check-in by zone.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Final

from homeassistant.components import mqtt
from homeassistant.config_entries import ConfigSubentry
from homeassistant.const import Platform
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.exceptions import ConfigEntryNotReady
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.typing import ConfigType

from .announcements import async_announce
from .const import (
    CONF_ANNOUNCE_ENTITY,
    CONF_BASE_TOPIC,
    CONF_PHONES,
    CONF_TTS_ENGINE,
    CONF_USERS,
    COOLDOWN_KINDS,
    DOMAIN,
    LOGGER,
)
from .gym_zone import async_track_gym_zones
from .hub import (
    NudgeAction,
    RecoveryCoachConfigEntry,
    RecoveryCoachHub,
    RecoveryCoachRuntimeData,
)
from .llm import async_setup_llm_api
from .people import CONF_USER_ID, SUBENTRY_PERSON, SUBENTRY_SERVICE_USER
from .phone_notifications import (
    async_clear_cooldown,
    async_listen_for_actions,
    async_notify_phones,
)
from .profiles import PeopleFollower, async_remove_people, followed_of, people_of
from .repairs import async_check_assist_sentences, async_raise
from .services import async_setup_services
from .voice import async_setup_voice

CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)


PLATFORMS: Final = [Platform.EVENT]


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the actions, voice intents and LLM tools, which serve every entry."""
    async_setup_services(hass)
    async_setup_voice(hass)
    async_setup_llm_api(hass)
    return True


async def async_setup_entry(hass: HomeAssistant, entry: RecoveryCoachConfigEntry) -> bool:
    """Follow the service on the entry's base topic."""
    if not await mqtt.async_wait_for_mqtt_client(hass):
        raise ConfigEntryNotReady(translation_domain=DOMAIN, translation_key="mqtt_not_available")
    hub = RecoveryCoachHub(hass, entry)
    runtime = RecoveryCoachRuntimeData(
        hub=hub, unsubscribers=[hub.async_stop], configured=_configured(entry)
    )
    entry.runtime_data = runtime
    # Listening before anything can set a nudge off (following the people sends their
    # newest activities at once).
    runtime.unsubscribers.extend(_async_act_on_nudges(hass, entry, hub))
    await hub.async_start()
    await _async_follow_people(hass, entry)
    runtime.unsubscribers.append(lambda: _stop_following_people(runtime))
    entry.async_on_unload(entry.add_update_listener(_async_entry_updated))
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    await async_check_assist_sentences(hass)
    return True


@callback
def _async_act_on_nudges(
    hass: HomeAssistant, entry: RecoveryCoachConfigEntry, hub: RecoveryCoachHub
) -> list[CALLBACK_TYPE]:
    """Nudges to the people's phones and speakers; the cooldown's countdown off the phones
    when it is acknowledged; the phones' buttons back to the service."""

    @callback
    def on_action(action: NudgeAction) -> None:
        nudge = hub.nudge(action.user_id, action.nudge_id) or {}
        phones = hub.user_settings.get(action.user_id, {}).get(CONF_PHONES)
        if action.snooze_minutes is None and nudge.get("kind") in COOLDOWN_KINDS and phones:
            entry.async_create_background_task(
                hass,
                async_clear_cooldown(hass, list(phones), action.user_id),
                f"{DOMAIN} clear cooldown {action.user_id}",
            )

    @callback
    def on_nudge(user_id: str, nudge: dict[str, Any]) -> None:
        settings = hub.user_settings.get(user_id, {})
        if phones := settings.get(CONF_PHONES):
            entry.async_create_background_task(
                hass,
                async_notify_phones(hass, list(phones), user_id, nudge),
                f"{DOMAIN} notify {user_id}",
            )
        speech = nudge.get("speech")
        if (target := settings.get(CONF_ANNOUNCE_ENTITY)) and isinstance(speech, str):
            entry.async_create_background_task(
                hass,
                async_announce(hass, target, speech, entry.options.get(CONF_TTS_ENGINE)),
                f"{DOMAIN} announce {user_id}",
            )

    return [
        hub.async_add_nudge_listener(on_nudge),
        hub.async_add_action_listener(on_action),
        async_listen_for_actions(hass, hub),
    ]


async def _async_follow_people(hass: HomeAssistant, entry: RecoveryCoachConfigEntry) -> None:
    """Follow who the entry's subentries say: their settings, sources and gym zones."""
    runtime = entry.runtime_data
    runtime.hub.user_settings = followed_of(entry)
    follower = PeopleFollower(hass, entry)
    await follower.async_start()
    runtime.people = [follower.async_stop, async_track_gym_zones(hass, runtime.hub)]
    if runtime.add_entities is not None:  # people added: their event entities
        runtime.add_entities()
    _async_check_notify_targets(hass, entry)


@callback
def _async_check_notify_targets(hass: HomeAssistant, entry: RecoveryCoachConfigEntry) -> None:
    """A followed person with no phone and no speaker hears nothing: a repair says so."""
    for sub in entry.subentries.values():
        user_id = sub.data.get(CONF_USER_ID)
        if not user_id:
            continue
        issue_id = f"no_notify_target_{entry.entry_id}_{user_id}"
        if sub.data.get(CONF_PHONES) or sub.data.get(CONF_ANNOUNCE_ENTITY):
            ir.async_delete_issue(hass, DOMAIN, issue_id)
        else:
            async_raise(hass, issue_id, "no_notify_target", {"name": sub.title})


def _stop_following_people(runtime: RecoveryCoachRuntimeData) -> None:
    while runtime.people:
        runtime.people.pop()()


async def _async_entry_updated(hass: HomeAssistant, entry: RecoveryCoachConfigEntry) -> None:
    """The entry changed: the one place that acts on it (HA's own reload helpers refuse an
    entry with an update listener). A person deleted is removed from the service (an empty
    retained profile). People added, changed or removed are followed anew in place, so the
    hub's subscriptions stay up and no nudge arriving meanwhile is missed; a new base topic
    (reconfigure) or changed options reload the entry. HA's bookkeeping changes nothing."""
    runtime = entry.runtime_data
    before = runtime.configured
    now = _configured(entry)
    if now == before:
        return
    had = {d[CONF_USER_ID] for t, d in before[2].values() if t == SUBENTRY_PERSON}
    gone = sorted(had - set(people_of(entry)))
    await async_remove_people(hass, before[0][CONF_BASE_TOPIC], gone)
    if now[:2] != before[:2]:
        hass.config_entries.async_schedule_reload(entry.entry_id)
        return
    runtime.configured = now
    _stop_following_people(runtime)
    await _async_follow_people(hass, entry)


def _configured(entry: RecoveryCoachConfigEntry) -> tuple[Any, Any, Any]:
    """What the running entry was built from: its data, its options and its subentries."""
    subentries = {s.subentry_id: (s.subentry_type, dict(s.data)) for s in entry.subentries.values()}
    return (dict(entry.data), dict(entry.options), subentries)


async def async_migrate_entry(hass: HomeAssistant, entry: RecoveryCoachConfigEntry) -> bool:
    """Version 1 kept each followed user's phones, speaker and gym zone in the options;
    version 2 gives each its own subentry (a user of the service's YAML), as people set up
    here have. The text-to-speech engine stays in the options."""
    if entry.version > 2:
        return False  # written by a newer release
    if entry.version == 1:
        users: dict[str, dict[str, Any]] = dict(entry.options.get(CONF_USERS, {}))
        for user_id, settings in sorted(users.items()):
            hass.config_entries.async_add_subentry(
                entry,
                ConfigSubentry(
                    data=MappingProxyType({CONF_USER_ID: user_id, **settings}),
                    subentry_type=SUBENTRY_SERVICE_USER,
                    title=user_id,
                    unique_id=user_id,
                ),
            )
        options = {k: v for k, v in entry.options.items() if k != CONF_USERS}
        hass.config_entries.async_update_entry(entry, options=options, version=2)
        LOGGER.info("Migrated %d followed user(s) of %s to subentries", len(users), entry.title)
    return True


async def async_remove_entry(hass: HomeAssistant, entry: RecoveryCoachConfigEntry) -> None:
    """The integration is removed: the people set up in it leave the service too, and its
    repair issues go."""
    issues = ir.async_get(hass).issues
    for domain, issue_id in list(issues):
        if domain == DOMAIN and entry.entry_id in issue_id:
            ir.async_delete_issue(hass, DOMAIN, issue_id)
    if await mqtt.async_wait_for_mqtt_client(hass):
        await async_remove_people(hass, entry.data[CONF_BASE_TOPIC], sorted(people_of(entry)))


async def async_unload_entry(hass: HomeAssistant, entry: RecoveryCoachConfigEntry) -> bool:
    """Stop following the service and remove the entry's event entities."""
    unloaded = await hass.config_entries.async_unload_platforms(entry, PLATFORMS)
    while entry.runtime_data.unsubscribers:
        entry.runtime_data.unsubscribers.pop()()
    return unloaded
