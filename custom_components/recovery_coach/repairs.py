"""Repairs: what a person must fix, said in Settings > Repairs, and fixed from there where
the integration can do it for them.

- `assist_sentences` (fixable): Assist does not know the coach's questions yet; the fix
  puts the sentence files in `custom_sentences/<language>/` and reloads Assist.
- `profile_refused_<entry>_<user>`: the service refused a person's profile (profiles.py).
- `source_silent_<entry>_<user>_<entity>`: a person's activity source is missing, or its
  newest activity is days old (a watch not synced): nothing from it is sent as today's.
- `no_notify_target_<entry>_<user>`: a person with no phone and no speaker hears nothing.
- `service_offline_<entry>`: the service has been offline for long (health.py here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import voluptuous as vol
from homeassistant.components.repairs import RepairsFlow
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir

from .const import DOMAIN, LOGGER
from .voice import install_sentence_files, sentence_files_to_install

ISSUE_ASSIST_SENTENCES: Final = "assist_sentences"


async def async_check_assist_sentences(hass: HomeAssistant) -> None:
    """Raise the fixable issue while a shipped sentence file is missing or outdated."""
    config_dir = Path(hass.config.config_dir)
    todo = await hass.async_add_executor_job(sentence_files_to_install, config_dir)
    if not todo:
        ir.async_delete_issue(hass, DOMAIN, ISSUE_ASSIST_SENTENCES)
        return
    ir.async_create_issue(
        hass,
        DOMAIN,
        ISSUE_ASSIST_SENTENCES,
        is_fixable=True,
        severity=ir.IssueSeverity.WARNING,
        translation_key=ISSUE_ASSIST_SENTENCES,
        translation_placeholders={
            "languages": ", ".join(todo),
            "folder": str(config_dir / "custom_sentences"),
        },
        data={"languages": ",".join(todo)},
    )


class AssistSentencesFlow(RepairsFlow):
    """Put the coach's sentence files in place, then reload Assist. (Its steps return HA
    2026.x's RepairsFlowResult, a plain FlowResult before it: typed Any for both.)"""

    async def async_step_init(self, user_input: dict[str, str] | None = None) -> Any:
        return await self.async_step_confirm()

    async def async_step_confirm(self, user_input: dict[str, str] | None = None) -> Any:
        if user_input is None:
            return self.async_show_form(step_id="confirm", data_schema=vol.Schema({}))
        config_dir = Path(self.hass.config.config_dir)
        todo = await self.hass.async_add_executor_job(sentence_files_to_install, config_dir)
        written = await self.hass.async_add_executor_job(install_sentence_files, config_dir, todo)
        LOGGER.info("Assist sentences written: %s", ", ".join(str(p) for p in written))
        if self.hass.services.has_service("conversation", "reload"):
            await self.hass.services.async_call("conversation", "reload", blocking=True)
        return self.async_create_entry(data={})


async def async_create_fix_flow(
    hass: HomeAssistant, issue_id: str, data: dict[str, Any] | None
) -> RepairsFlow:
    """The fix flow of a fixable issue (only `assist_sentences` is)."""
    if issue_id != ISSUE_ASSIST_SENTENCES:
        raise ValueError(f"no fix flow for {issue_id}")
    return AssistSentencesFlow()


@callback
def async_raise(
    hass: HomeAssistant,
    issue_id: str,
    translation_key: str,
    placeholders: dict[str, str],
    *,
    severity: ir.IssueSeverity = ir.IssueSeverity.WARNING,
) -> None:
    """One not-fixable issue, said by its translation."""
    ir.async_create_issue(
        hass,
        DOMAIN,
        issue_id,
        is_fixable=False,
        severity=severity,
        translation_key=translation_key,
        translation_placeholders=placeholders,
    )
