"""The inbound edge: MQTT topic + raw body -> a domain event, or a refusal a person can read.

Nothing refused here ever reaches the rules. Unknown payload fields are ignored (CONTRACT.md);
missing or out-of-range ones, naive timestamps, unknown users, a payload `user` that differs
from the topic's, non-JSON and oversized bodies each give one refusal.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from recovery_coach.contract.config import Problem
from recovery_coach.contract.reasons import what_is_wrong
from recovery_coach.contract.topics import EVENT_TOPICS, split_topic
from recovery_coach.core import vocabulary
from recovery_coach.core.models import (
    CardioPlanned,
    Event,
    Focus,
    GymCheckin,
    GymCheckout,
    NudgeAcked,
    NudgeSnoozed,
    PlannedCardio,
    ProteinLogged,
    SorenessReported,
    Workout,
    WorkoutCompleted,
    WorkoutKind,
)

MAX_BODY = 64 * 1024
FUTURE_SLACK = timedelta(minutes=10)  # clocks of watches and phones drift a little
MAX_AGE = timedelta(days=14)


@dataclass(frozen=True)
class Accepted:
    user: str
    topic: str
    event: Event
    # The event's id comes from its packet id and this is the broker's first delivery of
    # it (DUP 0): it cannot have been handled, whatever an old id says (derived_event_id).
    first_delivery: bool = False
    # What was read past (an unknown muscle name): said on the error topic as warnings.
    warnings: tuple[str, ...] = ()

    def warned(self) -> list[Refused]:
        return [
            Refused(self.user, self.topic, w, self.event.event_id, level="warning")
            for w in self.warnings
        ]


@dataclass(frozen=True)
class Refused:
    """One error object, as published on `<base>/<user>/error` (user None: no valid user).
    `level` "warning": the message was handled, and this part of it was read past."""

    user: str | None
    topic: str
    reason: str
    event_id: str | None = None
    problems: tuple[Problem, ...] = ()  # a refused profile: each field and what is wrong
    level: Literal["error", "warning"] = "error"

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "topic": self.topic,
            "reason": self.reason,
            "event_id": self.event_id,
        }
        if self.level == "warning":  # handled: only this part of it was read past
            out["level"] = "warning"
        if self.problems:
            out["problems"] = [{"field": p.path, "reason": p.reason} for p in self.problems]
        return out


# ------------------------------------------------------------------ payload models

EventId = Annotated[str, Field(min_length=1, max_length=128)]
Rpe = Annotated[float, Field(ge=0, le=10)]


class Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    user: str | None = None


class NextCardioIn(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    planned_at: AwareDatetime
    kind: Annotated[str, Field(min_length=1, max_length=40)]
    rpe: Rpe | None = None
    key_session: bool = False


class WorkoutIn(Payload):
    event_id: EventId
    ended_at: AwareDatetime
    # Read through the vocabulary (vocabulary.py): the words devices and apps use.
    kind: Annotated[str, Field(min_length=1, max_length=60)]
    focus: Annotated[str, Field(max_length=60)] | None = None
    muscle_groups: Annotated[list[Annotated[str, Field(max_length=60)]], Field(max_length=60)] = []
    rpe: Rpe | None = None
    duration_min: Annotated[float, Field(gt=0, le=1440)] | None = None
    zone: Annotated[int, Field(ge=1, le=5)] | None = None
    next_cardio: NextCardioIn | None = None


class GymIn(Payload):
    at: AwareDatetime
    event_id: EventId | None = None


class CardioPlannedIn(NextCardioIn):
    user: str | None = None
    event_id: EventId | None = None


class ProteinIn(Payload):
    grams: Annotated[float, Field(gt=0, le=500)]
    at: AwareDatetime | None = None
    event_id: EventId | None = None


class SorenessIn(Payload):
    level: Annotated[int, Field(ge=0, le=10)]
    at: AwareDatetime | None = None
    event_id: EventId | None = None


class AckIn(Payload):
    event_id: EventId | None = None


class SnoozeIn(Payload):
    minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 15
    event_id: EventId | None = None


# ------------------------------------------------------------------ readable reasons


def _field_reason(err: Any) -> str:
    if err["type"] == "json_invalid":
        return "the message is not valid JSON"
    where = ".".join(str(p) for p in err["loc"]) or "the message"
    return f"{where} {what_is_wrong(err, mapping='a JSON object', unknown_key='ignored')}"


def _reasons(exc: ValidationError) -> str:
    return "; ".join(dict.fromkeys(_field_reason(e) for e in exc.errors()))


# ------------------------------------------------------------------ parsing


def derived_event_id(topic: str, body: bytes, packet_id: int | None) -> str:
    """An id for a message that carries none, the same for a redelivery of the same message.

    Messages with their own timestamp are identified by content. Without one (a protein log
    with no `at`, a snooze), two identical bodies are two messages, so the broker's packet
    id is part of the id: MQTT 3.1.1 and 5 (section 4.4 of both) resend an unacknowledged
    message in a resumed session with its original packet id and the DUP flag set, while a
    new message gets a packet id not in flight. Packet ids come round again after 65,535, so
    a first delivery (DUP 0) is always applied (`Accepted.first_delivery`) and only a
    redelivery is matched against the ids already handled.
    """
    h = hashlib.sha256(topic.encode() + b"\n" + body)
    if packet_id is not None:
        h.update(f"\n#{packet_id}".encode())
    return f"auto-{h.hexdigest()[:20]}"


def parse(
    topic: str,
    body: bytes | str,
    *,
    base: str,
    users: Collection[str],
    received_at: datetime,
    packet_id: int = 0,
    redelivered: bool = False,
) -> Accepted | Refused:
    """Validate one inbound message; never raises for any body.

    `packet_id` and `redelivered` (the DUP flag) identify a message without an id or a time
    of its own (see derived_event_id); 0 and False for QoS 0 and for replays."""
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else bytes(body)
    parts = split_topic(base, topic)
    if parts is None:
        return Refused(None, topic, f"the topic is not of the form {base}/<user>/<message>")
    user, rest = parts
    refuse_user: str | None = user
    if user not in users:
        return Refused(refuse_user, topic, f"'{user[:40]}' is not a configured user")
    kind = rest if rest in EVENT_TOPICS else _nudge_command(rest)
    if kind is None:
        return Refused(user, topic, f"'{rest[:80]}' is not a message this service understands")
    if len(raw) > MAX_BODY:
        return Refused(
            user, topic, f"the message is {len(raw)} bytes; the limit is {MAX_BODY} (64 KiB)"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return Refused(user, topic, "the message is not UTF-8 text")
    if not text.strip():
        text = "{}"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return Refused(
            user, topic, f"the message is not valid JSON (line {exc.lineno}, column {exc.colno})"
        )
    except RecursionError:
        return Refused(user, topic, "the message is not valid JSON: it is nested too deeply")
    except ValueError:  # e.g. an integer of thousands of digits
        return Refused(user, topic, "the message is not valid JSON: a number in it is too long")
    if not isinstance(data, dict):
        return Refused(user, topic, 'the message must be a JSON object, like {"event_id": ...}')
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return Refused(
            user, topic, "the message contains a \\u escape that is not a Unicode character"
        )
    try:
        nul = _has_nul(data)  # PostgreSQL text cannot hold it: one such id failed whole batches
    except RecursionError:
        return Refused(user, topic, "the message is not valid JSON: it is nested too deeply")
    if nul:
        return Refused(user, topic, "the message contains a NUL character (\\u0000)")
    given_id = data.get("event_id") if isinstance(data.get("event_id"), str) else None
    event_id = given_id[:128] if given_id else None
    try:
        event, by_packet, warnings = _build(kind, rest, topic, raw, text, received_at, packet_id)
    except ValidationError as exc:
        return Refused(user, topic, _reasons(exc), event_id)
    except ValueError as exc:
        return Refused(user, topic, str(exc), event_id)
    payload_user = data.get("user")
    if payload_user is not None and payload_user != user:
        return Refused(
            user,
            topic,
            f"the payload names user '{str(payload_user)[:40]}' but was sent on {user}'s topic",
            event_id,
        )
    return Accepted(
        user, topic, event, first_delivery=by_packet and not redelivered, warnings=warnings
    )


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _nudge_command(rest: str) -> str | None:
    parts = rest.split("/")
    if len(parts) == 3 and parts[0] == "nudge" and parts[1] and parts[2] in ("ack", "snooze"):
        return f"nudge/{parts[2]}"
    return None


def _check_time(name: str, at: datetime, received_at: datetime) -> None:
    if at > received_at + FUTURE_SLACK:
        raise ValueError(f"{name} is in the future ({at.isoformat()})")
    if at < received_at - MAX_AGE:
        raise ValueError(f"{name} is more than 14 days old ({at.isoformat()})")


def read_workout_words(
    kind: str, focus: str | None, muscles: list[str]
) -> tuple[WorkoutKind, Focus | None, tuple[str, ...], tuple[str, ...]]:
    """A workout's kind, focus and muscles as the vocabulary reads them, and a warning for
    each word it could not place. A workout that happened is never lost over a name: an
    unknown kind is read as `sport` (a cooldown and sleep still apply), an unknown focus or
    muscle as if it were absent."""
    warnings: list[str] = []
    read_kind_ = vocabulary.read_kind(kind)
    if read_kind_ is None:
        warnings.append(
            f"kind '{kind[:40]}' is not a workout type this service knows: handled as "
            "'sport' (a cooldown and sleep advice, no strength or cardio rules); send "
            "strength, cardio, mixed, class or sport"
        )
    read_focus_ = None
    if focus is not None and focus.strip():
        read_focus_ = vocabulary.read_focus(focus)
        if read_focus_ is None:
            warnings.append(
                f"focus '{focus[:40]}' is not one this service knows: the workout is read "
                "without it; send legs, lower, upper, push, pull, full or core"
            )
    placed: list[str] = []
    for name in muscles:
        if not name.strip():
            continue
        reading = vocabulary.read_muscle(name)
        if reading.group is None:
            warnings.append(
                f"muscle_groups: '{name[:40]}' is not a muscle name this service knows: the "
                "workout is read without it (leg muscles: quads, hamstrings, glutes, calves, "
                "adductors, hip flexors)"
            )
        else:
            placed.append(reading.group)
    return (
        read_kind_ or "sport",
        read_focus_,
        tuple(dict.fromkeys(placed)),
        tuple(warnings),
    )


def _build(
    kind: str, rest: str, topic: str, raw: bytes, text: str, received_at: datetime, packet: int
) -> tuple[Event, bool, tuple[str, ...]]:
    """The event for a JSON object body, whether its id was derived from the packet id, and
    what was read past. Strict types, so `true` is no number and `"7"` no rpe."""
    if kind == "workout/completed":
        w = WorkoutIn.model_validate_json(text, strict=True)
        _check_time("ended_at", w.ended_at, received_at)
        kind, focus, muscles, warnings = read_workout_words(w.kind, w.focus, w.muscle_groups)
        nc = w.next_cardio
        workout = Workout(
            event_id=w.event_id,
            ended_at=w.ended_at,
            kind=kind,
            focus=focus,
            muscle_groups=muscles,
            rpe=w.rpe,
            duration_min=w.duration_min,
            zone=w.zone,
            next_cardio=None
            if nc is None
            else PlannedCardio(nc.planned_at, nc.kind, nc.rpe, nc.key_session),
        )
        return WorkoutCompleted(workout), False, warnings

    def own_id(given: str | None, timed: bool) -> tuple[str, bool]:
        if given:
            return given, False
        return derived_event_id(topic, raw, None if timed else packet), not timed

    if kind in ("gym/checkin", "gym/checkout"):
        g = GymIn.model_validate_json(text, strict=True)
        _check_time("at", g.at, received_at)
        eid, by_packet = own_id(g.event_id, True)
        mark = GymCheckin(eid, g.at) if kind == "gym/checkin" else GymCheckout(eid, g.at)
        return mark, by_packet, ()
    if kind == "cardio/planned":
        c = CardioPlannedIn.model_validate_json(text, strict=True)
        if c.planned_at < received_at - MAX_AGE:
            raise ValueError("planned_at is more than 14 days in the past")
        eid, by_packet = own_id(c.event_id, True)
        plan = PlannedCardio(c.planned_at, c.kind, c.rpe, c.key_session)
        return CardioPlanned(eid, received_at, plan), by_packet, ()
    if kind == "protein/logged":
        p = ProteinIn.model_validate_json(text, strict=True)
        at = p.at or received_at
        _check_time("at", at, received_at)
        eid, by_packet = own_id(p.event_id, p.at is not None)
        return ProteinLogged(eid, at, p.grams), by_packet, ()
    if kind == "soreness":
        s = SorenessIn.model_validate_json(text, strict=True)
        at = s.at or received_at
        _check_time("at", at, received_at)
        eid, by_packet = own_id(s.event_id, s.at is not None)
        return SorenessReported(eid, at, s.level), by_packet, ()
    nudge_id = rest.split("/")[1]
    if kind == "nudge/ack":
        a = AckIn.model_validate_json(text, strict=True)
        eid, by_packet = own_id(a.event_id, False)
        return NudgeAcked(eid, received_at, nudge_id), by_packet, ()
    z = SnoozeIn.model_validate_json(text, strict=True)
    eid, by_packet = own_id(z.event_id, False)
    return NudgeSnoozed(eid, received_at, nudge_id, z.minutes), by_packet, ()
