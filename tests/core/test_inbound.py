"""The inbound edge: every topic validated; each refusal is one error with a readable reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from recovery_coach.app.message_handler import MessageHandler
from recovery_coach.contract.inbound import MAX_BODY, Accepted, Refused, parse
from recovery_coach.core import coach
from recovery_coach.core.models import (
    CardioPlanned,
    GymCheckin,
    GymCheckout,
    NudgeAcked,
    NudgeSnoozed,
    ProteinLogged,
    SorenessReported,
    WorkoutCompleted,
)

from tests.support.core_builders import MemoryRepository, profile

NOW = datetime(2026, 3, 2, 17, 30, tzinfo=UTC)  # 18:30 in Berlin
BASE = "recovery_coach"
USERS = {"alex", "sam"}
WHEN = "2026-03-02T18:00:00+01:00"
WORKOUT = {"event_id": "w1", "ended_at": WHEN, "kind": "strength", "focus": "legs"}
TOPICS = [
    "workout/completed",
    "gym/checkin",
    "gym/checkout",
    "cardio/planned",
    "protein/logged",
    "soreness",
    "nudge/abc/ack",
    "nudge/abc/snooze",
]


def parse_at(rest: str, body: Any, user: str = "alex") -> Accepted | Refused:
    raw = body if isinstance(body, bytes | str) else json.dumps(body)
    return parse(f"{BASE}/{user}/{rest}", raw, base=BASE, users=USERS, received_at=NOW)


# ------------------------------------------------------------------ accepted

ACCEPTED = [
    ("workout/completed", WORKOUT, WorkoutCompleted),
    (
        "workout/completed",
        {
            **WORKOUT,
            "muscle_groups": ["quads"],
            "rpe": 8,
            "duration_min": 60,
            "zone": 3,
            "next_cardio": {"planned_at": WHEN, "kind": "run", "rpe": 5, "key_session": True},
            "someone_elses_field": [1, 2],
        },
        WorkoutCompleted,
    ),
    ("gym/checkin", {"at": WHEN}, GymCheckin),
    ("gym/checkout", {"at": WHEN, "event_id": "out"}, GymCheckout),
    ("cardio/planned", {"planned_at": "2026-03-03T07:00:00+01:00", "kind": "run"}, CardioPlanned),
    ("protein/logged", {"grams": 40}, ProteinLogged),
    ("protein/logged", {"grams": 500, "at": WHEN, "user": "alex"}, ProteinLogged),
    ("soreness", {"level": 0}, SorenessReported),
    ("soreness", {"level": 10, "at": "2026-03-02T17:00:00Z"}, SorenessReported),
    ("nudge/abc/ack", b"", NudgeAcked),
    ("nudge/abc/snooze", {"minutes": 10}, NudgeSnoozed),
]


@pytest.mark.parametrize(
    ("rest", "body", "kind"), ACCEPTED, ids=[f"{a[0]} {a[1]}" for a in ACCEPTED]
)
def test_valid_messages_become_events(rest: str, body: Any, kind: type) -> None:
    parsed = parse_at(rest, body)
    assert isinstance(parsed, Accepted), parsed
    assert isinstance(parsed.event, kind)
    assert parsed.event.event_id
    assert parsed.event.at.tzinfo is not None


def test_a_message_without_event_id_gets_one_stable_across_redeliveries() -> None:
    a = parse_at("protein/logged", {"grams": 40, "at": WHEN})
    b = parse_at("protein/logged", {"grams": 40, "at": WHEN})
    assert isinstance(a, Accepted)
    assert isinstance(b, Accepted)
    assert a.event.event_id == b.event.event_id


@pytest.mark.parametrize(
    ("rest", "body"),
    [
        ("protein/logged", {"grams": 30}),
        ("soreness", {"level": 4}),
        ("nudge/last/snooze", {"minutes": 10}),
        ("nudge/last/ack", {}),
    ],
)
def test_a_message_without_id_or_time_is_told_apart_by_its_packet_id(
    rest: str, body: dict[str, Any]
) -> None:
    """The same bytes in two packets are two messages; the broker's redelivery of one
    packet (same packet id, DUP set) is the same message."""
    raw = json.dumps(body).encode()
    topic = f"{BASE}/alex/{rest}"

    def at(packet: int, dup: bool) -> Accepted:
        p = parse(
            topic, raw, base=BASE, users=USERS, received_at=NOW, packet_id=packet, redelivered=dup
        )
        assert isinstance(p, Accepted)
        return p

    first, second, again = at(7, False), at(8, False), at(7, True)
    assert first.event.event_id != second.event.event_id
    assert again.event.event_id == first.event.event_id
    assert first.first_delivery
    assert second.first_delivery
    assert not again.first_delivery
    # With a time or an id of its own, the content is the identity, whatever the packet.
    timed = {**body, "event_id": "e1"}
    a = parse(topic, json.dumps(timed), base=BASE, users=USERS, received_at=NOW, packet_id=1)
    b = parse(topic, json.dumps(timed), base=BASE, users=USERS, received_at=NOW, packet_id=2)
    assert isinstance(a, Accepted)
    assert isinstance(b, Accepted)
    assert a.event.event_id == b.event.event_id == "e1"
    assert not a.first_delivery


def test_a_packet_id_that_comes_round_again_is_a_new_message_not_a_duplicate() -> None:
    """Packet ids wrap after 65,535: a first delivery (DUP 0) whose derived id was handled
    long ago is applied; only a redelivery (DUP 1) is dropped as a duplicate."""
    repo = MemoryRepository()
    handler = MessageHandler(BASE, {"alex": profile()}, repo)
    topic, raw = f"{BASE}/alex/protein/logged", b'{"grams": 30}'
    outs = [
        handler.handle_parsed(
            handler.parse(topic, raw, NOW + timedelta(minutes=i), packet_id=5, redelivered=dup), NOW
        )
        for i, dup in enumerate([False, True, False, True])
    ]
    assert [o.duplicate for o in outs] == [False, True, False, True]
    assert sum(p.grams for p in repo.load("alex").protein) == 60


# ------------------------------------------------------------------ refused

REFUSED = [
    # (row, topic rest, body, words in the reason, user on the refusal)
    (
        "workout without event_id",
        "workout/completed",
        {**WORKOUT, "event_id": None},
        "event_id must be text",
    ),
    (
        "workout missing kind",
        "workout/completed",
        {"event_id": "w1", "ended_at": WHEN},
        "kind is required",
    ),
    (
        "naive ended_at",
        "workout/completed",
        {**WORKOUT, "ended_at": "2026-03-02T18:00:00"},
        "time-zone offset",
    ),
    ("ended_at as a number", "workout/completed", {**WORKOUT, "ended_at": 1772470800}, "ISO 8601"),
    ("ended_at not a time", "workout/completed", {**WORKOUT, "ended_at": "yesterday"}, "ISO 8601"),
    (
        "ended_at in the future",
        "workout/completed",
        {**WORKOUT, "ended_at": "2026-03-03T18:00:00+01:00"},
        "in the future",
    ),
    (
        "ended_at 3 weeks ago",
        "workout/completed",
        {**WORKOUT, "ended_at": "2026-02-09T18:00:00+01:00"},
        "more than 14 days old",
    ),
    ("rpe 11", "workout/completed", {**WORKOUT, "rpe": 11}, "rpe must be at most 10"),
    ("rpe -1", "workout/completed", {**WORKOUT, "rpe": -1}, "rpe must be at least 0"),
    ("rpe as text", "workout/completed", {**WORKOUT, "rpe": "7"}, "rpe must be a number"),
    ("rpe true", "workout/completed", {**WORKOUT, "rpe": True}, "rpe must be a number"),
    ("zone 6", "workout/completed", {**WORKOUT, "zone": 6}, "zone must be at most 5"),
    (
        "duration 0",
        "workout/completed",
        {**WORKOUT, "duration_min": 0},
        "duration_min must be above 0",
    ),
    (
        "muscle_groups a string",
        "workout/completed",
        {**WORKOUT, "muscle_groups": "quads"},
        "must be a list",
    ),
    (
        "next_cardio without planned_at",
        "workout/completed",
        {**WORKOUT, "next_cardio": {"kind": "run"}},
        "next_cardio.planned_at is required",
    ),
    (
        "next_cardio key_session 1",
        "workout/completed",
        {**WORKOUT, "next_cardio": {"planned_at": WHEN, "kind": "run", "key_session": 1}},
        "true or false",
    ),
    ("checkin without at", "gym/checkin", {"event_id": "in"}, "at is required"),
    ("checkout naive", "gym/checkout", {"at": "2026-03-02T18:00"}, "time-zone offset"),
    ("planned without kind", "cardio/planned", {"planned_at": WHEN}, "kind is required"),
    (
        "planned rpe 12",
        "cardio/planned",
        {"planned_at": WHEN, "kind": "run", "rpe": 12},
        "rpe must be at most 10",
    ),
    ("protein 0 g", "protein/logged", {"grams": 0}, "grams must be above 0"),
    ("protein 501 g", "protein/logged", {"grams": 501}, "grams must be at most 500"),
    ("protein true", "protein/logged", {"grams": True}, "grams must be a number"),
    ("protein missing", "protein/logged", {}, "grams is required"),
    ("soreness 11", "soreness", {"level": 11}, "level must be at most 10"),
    ("soreness 5.5", "soreness", {"level": 5.5}, "level must be a whole number"),
    ("snooze 0 min", "nudge/abc/snooze", {"minutes": 0}, "minutes must be at least 1"),
    (
        "another user in the payload",
        "protein/logged",
        {"grams": 40, "user": "sam"},
        "names user 'sam' but was sent on alex's topic",
    ),
    ("not JSON", "protein/logged", b"{grams: 40", "not valid JSON (line 1, column 2)"),
    ("a JSON list", "protein/logged", b"[40]", "must be a JSON object"),
    ("a JSON string", "protein/logged", b'"40 g"', "must be a JSON object"),
    ("not UTF-8", "protein/logged", b'{"grams": 40, "x": "\xff"}', "not UTF-8"),
    (
        "a lone surrogate escape",
        "protein/logged",
        b'{"grams": 40, "event_id": "\\ud800"}',
        "not a Unicode character",
    ),
    (
        "a NUL in the event_id (PostgreSQL text cannot hold it)",
        "workout/completed",
        {**WORKOUT, "event_id": "w\u0000"},
        "NUL character",
    ),
    (
        "a NUL escape in a protein log's id",
        "protein/logged",
        b'{"grams": 40, "event_id": "p\\u0000"}',
        "NUL character",
    ),
    ("a 5000-digit number", "protein/logged", b'{"grams": ' + b"9" * 5000 + b"}", "too long"),
    ("nested 20000 deep", "protein/logged", b"[" * 20000 + b"]" * 20000, "nested too deeply"),
    (
        "over 64 KiB",
        "protein/logged",
        json.dumps({"grams": 40, "pad": "x" * MAX_BODY}),
        "limit is 65536 (64 KiB)",
    ),
    ("an unknown message", "weight/logged", {"kg": 80}, "not a message this service understands"),
]


@pytest.mark.parametrize(("row", "rest", "body", "words"), REFUSED, ids=[r[0] for r in REFUSED])
def test_each_bad_message_gives_one_readable_refusal(
    row: str, rest: str, body: Any, words: str
) -> None:
    parsed = parse_at(rest, body)
    assert isinstance(parsed, Refused), parsed
    assert words in parsed.reason
    assert "Input should" not in parsed.reason  # our words, not pydantic's
    assert parsed.user == "alex"
    assert parsed.payload() == {
        "topic": f"{BASE}/alex/{rest}",
        "reason": parsed.reason,
        "event_id": parsed.event_id,
    }


def test_the_refusal_carries_the_event_id_when_known() -> None:
    parsed = parse_at("workout/completed", {**WORKOUT, "rpe": 11})
    assert isinstance(parsed, Refused)
    assert parsed.event_id == "w1"


@pytest.mark.parametrize(
    ("topic", "user", "words"),
    [
        (f"{BASE}/bob/protein/logged", "bob", "'bob' is not a configured user"),
        ("other/alex/protein/logged", None, "not of the form recovery_coach/<user>/<message>"),
        (f"{BASE}/alex", None, "not of the form"),
    ],
)
def test_unknown_users_and_foreign_topics(topic: str, user: str | None, words: str) -> None:
    parsed = parse(topic, b'{"grams": 40}', base=BASE, users=USERS, received_at=NOW)
    assert isinstance(parsed, Refused)
    assert parsed.user == user
    assert words in parsed.reason


# ------------------------------------------------------------------ properties

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda kids: (
        st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=12), kids, max_size=5)
    ),
    max_leaves=20,
)
anything = json_values | st.datetimes().map(lambda d: d.isoformat()) | st.just(WHEN)
KEYS = [
    "event_id", "ended_at", "kind", "focus", "muscle_groups", "rpe", "duration_min", "zone",
    "next_cardio", "at", "planned_at", "key_session", "grams", "level", "minutes", "user",
]  # fmt: skip
wrong_typed = st.dictionaries(st.sampled_from(KEYS), anything, max_size=len(KEYS))
topics = st.sampled_from(TOPICS)


def assert_sound(parsed: Accepted | Refused) -> None:
    """Refused: a non-empty reason and no event. Accepted: an event the rules can trust."""
    if isinstance(parsed, Refused):
        assert parsed.reason.strip()
        assert not hasattr(parsed, "event")
        json.dumps(parsed.payload(), ensure_ascii=False).encode("utf-8")
        return
    e = parsed.event
    assert e.event_id
    assert e.at.tzinfo is not None
    e.event_id.encode("utf-8")
    if isinstance(e, WorkoutCompleted):
        w = e.workout
        assert w.kind in ("strength", "cardio", "mixed", "class", "sport")
        assert w.rpe is None or 0 <= w.rpe <= 10
        assert w.duration_min is None or 0 < w.duration_min <= 1440
    if isinstance(e, ProteinLogged):
        assert 0 < e.grams <= 500
    if isinstance(e, SorenessReported):
        assert isinstance(e.level, int)
        assert 0 <= e.level <= 10


@settings(max_examples=300)
@given(rest=topics, body=st.binary(max_size=300))
def test_random_bytes_never_crash(rest: str, body: bytes) -> None:
    assert_sound(parse_at(rest, body))


@settings(max_examples=300)
@given(rest=topics, body=json_values)
def test_random_json_never_crashes(rest: str, body: Any) -> None:
    assert_sound(parse_at(rest, json.dumps(body)))


@settings(max_examples=500)
@given(rest=topics, body=wrong_typed)
def test_right_keys_wrong_types_never_crash(rest: str, body: dict[str, Any]) -> None:
    assert_sound(parse_at(rest, json.dumps(body)))


@settings(max_examples=200)
@given(rest=topics, body=st.text(max_size=200))
def test_random_text_never_crashes(rest: str, body: str) -> None:
    assert_sound(parse_at(rest, body))


@settings(max_examples=100)
@given(rest=topics, body=wrong_typed | json_values)
def test_nothing_refused_reaches_the_rules(rest: str, body: Any) -> None:
    """The handler calls the core only for accepted messages; refusals change no state."""
    repo = MemoryRepository()
    handler = MessageHandler(BASE, {"alex": profile()}, repo)
    with patch.object(coach, "decide", wraps=coach.decide) as decide:
        out = handler.handle(f"{BASE}/alex/{rest}", json.dumps(body), NOW + timedelta(seconds=1))
    if isinstance(parse_at(rest, body), Refused):  # refused at the edge, not by the core
        assert out.refused is not None
        assert decide.call_count == 0
        assert out.scheduled == []
        assert repo.states == {}
        assert repo.events == set()
