"""Voice answers from each followed user's current state (Assist intents and sentences).

The intents are registered with HA's public intent API; any agent can call them. Custom
integrations cannot add sentences to the shared intents repository, and HA offers no public
API to register them from code, so the sentences ship as files in HA's documented
`custom_sentences/<language>/` format (sentences/<language>.yaml here): a fixable repair
puts them in place (repairs.py), and the default agent matches them to these intents.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import intent
from homeassistant.util import dt as dt_util

from .const import DOMAIN

if TYPE_CHECKING:
    from .hub import RecoveryCoachHub

INTENT_BEDTIME = "RecoveryCoachBedtime"
INTENT_PROTEIN = "RecoveryCoachProteinRemaining"
INTENT_CARDIO_AFTER_LEG_DAY = "RecoveryCoachCardioAfterLegDay"
INTENT_ZONE2 = "RecoveryCoachZone2Week"

SENTENCES_DIR: Final = Path(__file__).parent / "sentences"
INSTALLED_NAME: Final = f"{DOMAIN}.yaml"
MARKER: Final = "# Installed by Recovery Coach"


def _installed_text(language: str) -> str:
    """A shipped sentence file as it is installed: marked with its content's hash, so an
    older copy of ours is replaced and a file the person edited is left alone."""
    text = (SENTENCES_DIR / f"{language}.yaml").read_text(encoding="utf-8")
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return (
        f"{MARKER} ({digest}); it replaces this file when it updates it. Delete this line "
        "to keep your own changes.\n" + text
    )


def shipped_languages() -> list[str]:
    return sorted(p.stem for p in SENTENCES_DIR.glob("*.yaml"))


def sentence_files_to_install(config_dir: Path) -> list[str]:
    """Languages whose `custom_sentences` file is missing or an older copy of ours (runs
    in the executor: it reads files)."""
    todo = []
    for language in shipped_languages():
        path = config_dir / "custom_sentences" / language / INSTALLED_NAME
        if not path.exists():
            todo.append(language)
            continue
        current = path.read_text(encoding="utf-8")
        if current.startswith(MARKER) and current != _installed_text(language):
            todo.append(language)
    return todo


def install_sentence_files(config_dir: Path, languages: list[str]) -> list[Path]:
    """Put the shipped sentence files in `custom_sentences` (runs in the executor)."""
    written = []
    for language in languages:
        path = config_dir / "custom_sentences" / language / INSTALLED_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_installed_text(language), encoding="utf-8")
        written.append(path)
    return written


CARDIO_AFTER_LEG_DAY = (
    "Yes, cardio after leg day is fine if you keep it low to moderate: an effort of {cap} "
    "out of 10 or less, where you can still talk but not sing. Skip sprints, intervals or a "
    "hard spin class on tired legs, because that is when injuries happen."
)
DEFAULT_RPE_CAP = 6  # RULES.md R2, when no user's state says otherwise
DEFAULT_SLEEP_HOURS = 8
_RECENT_LEG_DAY = timedelta(hours=24)


def _local_clock(value: Any) -> str | None:
    """The clock on the person's own wall: the service writes their times with the offset
    of the person's time zone, which may not be Home Assistant's."""
    if not isinstance(value, str) or (moment := dt_util.parse_datetime(value)) is None:
        return None
    if moment.tzinfo is None:
        moment = dt_util.as_local(moment)
    return moment.strftime("%H:%M")


def _number(value: Any, default: float) -> str:
    """A number as spoken: 8, 8.5."""
    n = value if isinstance(value, int | float) and not isinstance(value, bool) else default
    return f"{n:g}"


def bedtime_answer(name: str, state: dict[str, Any]) -> str:
    """Bedtime and wind-down time from a user's state."""
    bedtime = _local_clock(state.get("next_bedtime"))
    if bedtime is None:
        return f"I don't have a bedtime for {name} yet."
    hours = _number(state.get("sleep_hours"), DEFAULT_SLEEP_HOURS)
    answer = f"{name}, go to bed at {bedtime} to get your {hours} hours of sleep."
    if (winddown := _local_clock(state.get("next_winddown"))) is not None:
        answer += f" Start winding down at {winddown}."
    return answer


def protein_answer(name: str, state: dict[str, Any]) -> str:
    """Protein still to eat today from a user's state."""
    target, remaining = state.get("protein_target_g"), state.get("protein_remaining_g")
    if not isinstance(target, int):
        return (
            f"{name} has no protein target yet: add a body weight in the coach's settings "
            "to get one between 1.2 and 2 grams per kilo."
        )
    if not isinstance(remaining, int):
        return f"{name}'s protein target today is {target} grams."
    if remaining <= 0:
        return f"{name} has reached today's protein target of {target} grams."
    return f"{name} still needs {remaining} grams of protein today, out of {target}."


def cardio_answer(name: str, state: dict[str, Any], now: datetime) -> str:
    """The evidence-based answer, plus a note if the user's last workout was a leg day."""
    workout = state.get("last_workout")
    if isinstance(workout, dict) and workout.get("leg_day"):
        ended = dt_util.parse_datetime(str(workout.get("ended_at")))
        if ended is not None and now - ended < _RECENT_LEG_DAY:
            return f"{name} trained legs in the last day, so keep any cardio easy."
    return ""


def zone2_answer(name: str, state: dict[str, Any]) -> str:
    """Zone-2 minutes this week against the weekly target."""
    minutes = state.get("zone2_minutes_week")
    target = state.get("zone2_target_minutes_week")
    if not isinstance(minutes, int):
        return f"I don't have zone 2 minutes for {name} yet."
    unit = "minute" if minutes == 1 else "minutes"
    answer = f"{name} has done {minutes} {unit} of zone 2 this week"
    if isinstance(target, int) and target > 0:
        percent = state.get("zone2_progress_pct")
        share = percent if isinstance(percent, int) else round(100 * minutes / target)
        answer += f", {share} percent of the {target} minute target"
    return answer + "."


def _followed_states(hass: HomeAssistant) -> list[tuple[str, dict[str, Any]]]:
    """(name, state) of every followed user with a known state, across entries."""
    result: list[tuple[str, dict[str, Any]]] = []
    for entry in hass.config_entries.async_loaded_entries(DOMAIN):
        hub: RecoveryCoachHub = entry.runtime_data.hub
        for user_id in hub.followed_users:
            if (state := hub.states.get(user_id)) is not None:
                result.append((hub.display_name(user_id), state))
    return result


class RecoveryCoachIntentHandler(intent.IntentHandler):
    """Answers one question from the latest state of every followed user."""

    platforms = None

    def __init__(
        self,
        intent_type: str,
        description: str,
        answer: Callable[[HomeAssistant, list[tuple[str, dict[str, Any]]]], str],
    ) -> None:
        """Bind an intent type to the function that words its answer."""
        self.intent_type = intent_type
        self.description = description
        self._answer = answer

    async def async_handle(self, intent_obj: intent.Intent) -> intent.IntentResponse:
        """Speak the answer: a question answered, not an action done."""
        states = _followed_states(intent_obj.hass)
        response = intent_obj.create_response()
        response.response_type = intent.IntentResponseType.QUERY_ANSWER
        response.async_set_speech(self._answer(intent_obj.hass, states))
        return response


def _per_user(word: Callable[[str, dict[str, Any]], str]) -> Callable[..., str]:
    def answer(hass: HomeAssistant, states: list[tuple[str, dict[str, Any]]]) -> str:
        if not states:
            return "I haven't heard from the Recovery Coach service yet."
        return " ".join(word(name, state) for name, state in states)

    return answer


def _cardio(hass: HomeAssistant, states: list[tuple[str, dict[str, Any]]]) -> str:
    now = dt_util.now()
    notes = [note for name, state in states if (note := cardio_answer(name, state, now))]
    # The users' own cap (the moderate_rpe_max setting); the lowest when they differ.
    caps = [c for _, st in states if isinstance(c := st.get("rpe_cap"), int | float)]
    cap = _number(min(caps) if caps else None, DEFAULT_RPE_CAP)
    return " ".join([CARDIO_AFTER_LEG_DAY.format(cap=cap), *notes])


HANDLERS = (
    RecoveryCoachIntentHandler(
        INTENT_BEDTIME,
        "Tells when to go to bed for the user's hours of sleep",
        _per_user(bedtime_answer),
    ),
    RecoveryCoachIntentHandler(
        INTENT_PROTEIN, "Tells how much protein is still to eat today", _per_user(protein_answer)
    ),
    RecoveryCoachIntentHandler(
        INTENT_CARDIO_AFTER_LEG_DAY, "Tells whether and how to do cardio after leg day", _cardio
    ),
    RecoveryCoachIntentHandler(
        INTENT_ZONE2, "Tells the zone 2 minutes done this week", _per_user(zone2_answer)
    ),
)


@callback
def async_setup_voice(hass: HomeAssistant) -> None:
    """Register the intents (the sentences that reach them are files: see repairs.py)."""
    for handler in HANDLERS:
        intent.async_register(hass, handler)
