"""Tools for Assist with an LLM (and MCP clients): the coach answers from what it knows.

Three read-only tools: a person's recovery today, their next nudges, and why the last nudge
was sent (its rule, evidence and figures). They read the service's retained state and last
nudge as the hub holds them, so they never change anything.

Home Assistant 2026.x loads this module as the integration's `llm` platform
(`async_get_tools`), and the tools join the Assist API; tools there return `ToolResult`
and carry `ToolAnnotations` (read-only, so an MCP server in read-only mode keeps them).
Releases before the `llm` platform get the same tools as an API of their own,
"Recovery Coach", that a conversation agent can be given (`async_register_api`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import voluptuous as vol
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import llm

from .const import DOMAIN
from .people import CONF_PERSON, CONF_USER_ID, SUBENTRY_PERSON

if TYPE_CHECKING:
    from homeassistant.components.llm import LLMTools

    from .hub import RecoveryCoachHub

API_ID: Final = DOMAIN
PERSON: Final = "person"
PARAMETERS = vol.Schema({vol.Optional(PERSON): str})


def _hubs(hass: HomeAssistant) -> list[RecoveryCoachHub]:
    return [e.runtime_data.hub for e in hass.config_entries.async_loaded_entries(DOMAIN)]


def _asking_user(hass: HomeAssistant, llm_context: llm.LLMContext) -> str | None:
    """The coach's user id of the HA user asking, through their person entity."""
    ha_user = llm_context.context.user_id if llm_context.context else None
    if ha_user is None:
        return None
    persons = {
        s.entity_id
        for s in hass.states.async_all("person")
        if s.attributes.get("user_id") == ha_user
    }
    for entry in hass.config_entries.async_loaded_entries(DOMAIN):
        for sub in entry.subentries.values():
            if sub.subentry_type == SUBENTRY_PERSON and sub.data.get(CONF_PERSON) in persons:
                user: str = sub.data[CONF_USER_ID]
                return user
    return None


def people(
    hass: HomeAssistant, llm_context: llm.LLMContext, asked: str | None
) -> list[tuple[RecoveryCoachHub, str]]:
    """Whom a question is about: the person named (by name or id), else the person of the
    HA user asking, else everyone the coach follows."""
    everyone = [(hub, user) for hub in _hubs(hass) for user in hub.followed_users]
    if asked:
        wanted = asked.strip().casefold()
        return [
            (hub, user)
            for hub, user in everyone
            if wanted in (user.casefold(), hub.display_name(user).casefold())
        ]
    mine = _asking_user(hass, llm_context)
    return [(hub, user) for hub, user in everyone if user == mine] or everyone


def recovery_today(hub: RecoveryCoachHub, user: str) -> dict[str, Any]:
    state = hub.states.get(user) or {}
    keys = (
        "next_bedtime", "next_winddown", "next_wake", "sleep_hours", "cooldown_ends_at",
        "protein_target_g", "protein_logged_g", "protein_remaining_g", "zone2_minutes_week",
        "zone2_target_minutes_week", "zone2_progress_pct", "rpe_cap", "last_workout",
        "updated_at",
    )  # fmt: skip
    return {"person": hub.display_name(user), **{k: state.get(k) for k in keys}}


def next_nudges(hub: RecoveryCoachHub, user: str) -> dict[str, Any]:
    state = hub.states.get(user) or {}
    return {"person": hub.display_name(user), "next_nudges": state.get("next_nudges") or []}


def why_last_nudge(hub: RecoveryCoachHub, user: str) -> dict[str, Any]:
    nudge = hub.last_nudges.get(user) or (hub.states.get(user) or {}).get("last_nudge")
    if not nudge:
        return {"person": hub.display_name(user), "last_nudge": None}
    keys = ("rule", "kind", "title", "message", "due_at", "evidence", "source_event_id", "data")
    return {"person": hub.display_name(user), "last_nudge": {k: nudge.get(k) for k in keys}}


class CoachTool(llm.Tool):
    """A read-only question to the coach about one person or everyone it follows.
    `result` wraps the answer (HA 2026.x's ToolResult; plain JSON before it)."""

    parameters = PARAMETERS

    def __init__(
        self, name: str, description: str, answer: Any, result: Any, annotations: Any
    ) -> None:
        self.name = f"{DOMAIN}__{name}"
        self.description = description
        self._answer = answer
        self._result = result
        self.integration = DOMAIN  # HA 2026.x asks each tool whose it is
        if annotations is not None:
            self.annotations = annotations

    async def async_call(
        self, hass: HomeAssistant, tool_input: llm.ToolInput, llm_context: llm.LLMContext
    ) -> Any:
        found = people(hass, llm_context, tool_input.tool_args.get(PERSON))
        data: dict[str, Any] = {"people": [self._answer(hub, user) for hub, user in found]}
        if not found:
            data["error"] = "no such person is followed by Recovery Coach"
        return self._result(data=data, error=not found) if self._result else data


def coach_tools(result: Any = None, annotations: Any = None) -> list[llm.Tool]:
    def tool(name: str, description: str, answer: Any) -> llm.Tool:
        return CoachTool(name, description, answer, result, annotations)

    return [
        tool(
            "recovery_today",
            "A person's recovery today from Recovery Coach: bedtime, wind-down and wake "
            "time, protein target and what is left today, zone-2 minutes this week against "
            "the weekly target, a cooldown running now, and the last workout. Optionally "
            "name the person; by default, the person asking.",
            recovery_today,
        ),
        tool(
            "next_nudges",
            "The next nudges Recovery Coach has planned for a person (kind, rule of its rule "
            "book, and when each is due).",
            next_nudges,
        ),
        tool(
            "why_last_nudge",
            "Why Recovery Coach sent a person's last nudge: the rule it follows, the "
            "evidence behind it (the studies and quotes), its words and its figures.",
            why_last_nudge,
        ),
    ]


@callback
def async_get_tools(
    hass: HomeAssistant, llm_context: llm.LLMContext, api_id: str
) -> LLMTools | None:
    """The `llm` platform (HA 2026.x): the coach's tools join the Assist API, read-only."""
    # Only HA 2026.x calls this, where these exist (scripts/check-ha-source types them).
    from homeassistant.components.llm import LLMTools
    from homeassistant.helpers.llm import (  # type: ignore[attr-defined,unused-ignore]
        ToolAnnotations,
        ToolResult,
    )

    if api_id != llm.LLM_API_ASSIST:
        return None
    read_only = ToolAnnotations(
        read_only=True, destructive=False, idempotent=True, open_world=False
    )
    return LLMTools(tools=coach_tools(ToolResult, read_only))


class RecoveryCoachAPI(llm.API):
    """Before the `llm` platform: the same tools, as an API a conversation agent is given."""

    async def async_get_api_instance(self, llm_context: llm.LLMContext) -> llm.APIInstance:
        return llm.APIInstance(
            api=self,
            api_prompt="Answer questions about workout recovery (sleep, protein, zone-2 "
            "cardio, cooldown, why a nudge was sent) with the Recovery Coach tools.",
            llm_context=llm_context,
            tools=coach_tools(),
        )


@callback
def async_setup_llm_api(hass: HomeAssistant) -> None:
    """Register the API where Home Assistant has no `llm` platform for integrations."""
    try:
        import homeassistant.components.llm  # noqa: F401
    except ImportError:
        llm.async_register_api(hass, RecoveryCoachAPI(hass=hass, id=API_ID, name="Recovery Coach"))
