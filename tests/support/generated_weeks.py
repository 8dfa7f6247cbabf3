"""Generated weeks for property tests: a random user and a few days of inbound messages.

A user in any of a handful of zones (two with DST changes in the sampled weeks, one with a
30-minute DST), any goal, weight, sleep need and wake times; messages of every inbound
kind at any time of day, some reported late; replayed through `simulate`.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st
from recovery_coach.contract.config import Config, parse_config
from recovery_coach.core.local_time import night_around
from recovery_coach.core.models import Profile
from recovery_coach.runtime.simulate import simulate

ZONES = ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "UTC"]
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
clock = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(4, 11), st.sampled_from([0, 15, 30]))
user_config = st.fixed_dictionaries(
    {
        "timezone": st.sampled_from(ZONES),
        "goal": st.sampled_from(
            ["hypertrophy", "strength", "endurance", "power", "hybrid", "general"]
        ),
        "running_experience": st.sampled_from(["beginner", "intermediate", "advanced"]),
        "sleep_hours": st.sampled_from([8, 8.5, 9, 10]),
        "wake_time": clock | st.fixed_dictionaries({d: clock for d in WEEKDAYS}),
        "protein_g_per_kg": st.sampled_from([1.2, 1.45, 1.6, 2.0, 2.4]),  # 2.4: set above the range
        "weekly_plan": st.fixed_dictionaries(
            {},
            optional={
                d: st.sampled_from(["legs", "upper", "full", "cardio", "rest"]) for d in WEEKDAYS
            },
        ),
    },
    optional={"weight_kg": st.floats(25, 400).map(lambda w: round(w, 1))},
)
# the ends of the settings' ranges too, where a count is one (a 1-minute cooldown)
user_config = st.tuples(
    user_config,
    st.fixed_dictionaries(
        {},
        optional={
            "cooldown_minutes": st.sampled_from([1, 2, 5, 60]),
            "few_hours": st.sampled_from([0.5, 1, 3, 12]),
            "severe_soreness_days": st.sampled_from([2, 3, 14]),
        },
    ),
).map(lambda pair: {**pair[0], "settings": pair[1]})
# March and late October: both DST changes in Europe and the US fall in these weeks
starts = st.sampled_from(
    [
        datetime(2026, 3, 6, tzinfo=UTC),
        datetime(2026, 3, 27, tzinfo=UTC),
        datetime(2026, 10, 23, tzinfo=UTC),
    ]
)
rpe = st.none() | st.integers(0, 10)


@st.composite
def message(draw: st.DrawFn, start: datetime, n: int) -> dict[str, Any]:
    at = start + timedelta(minutes=draw(st.integers(0, 4 * 24 * 60)))
    late = timedelta(minutes=draw(st.sampled_from([0, 0, 0, 20, 90])))
    iso = at.isoformat()
    topic = draw(
        st.sampled_from(
            ["workout", "workout", "workout", "plan", "protein", "soreness", "gym", "ack", "snooze"]
        )
    )
    if topic == "workout":
        planned = at + timedelta(minutes=draw(st.integers(0, 30 * 60)))
        payload: dict[str, Any] = {
            "event_id": f"w{n}",
            "ended_at": iso,
            "kind": draw(st.sampled_from(["strength", "cardio", "mixed", "class", "sport"])),
            "focus": draw(st.sampled_from(["legs", "lower", "upper", "full", "core", None])),
            "rpe": draw(rpe),
            "duration_min": draw(st.sampled_from([20, 45, 60, 90])),
        }
        if draw(st.booleans()):
            payload["zone"] = draw(st.integers(1, 5))  # a watch's heart-rate zone
        if draw(st.booleans()):
            payload["next_cardio"] = {
                "planned_at": planned.isoformat(),
                "kind": "run",
                "rpe": draw(rpe),
                "key_session": draw(st.booleans()),
            }
        return {
            "topic": "workout/completed",
            "payload": payload,
            "received_at": (at + late).isoformat(),
        }
    if topic == "plan":
        planned = at + timedelta(minutes=draw(st.integers(-180, 30 * 60)))
        payload = {
            "planned_at": planned.isoformat(),
            "kind": "run",
            "rpe": draw(rpe),
            "key_session": draw(st.booleans()),
        }
        return {"topic": "cardio/planned", "payload": payload, "received_at": iso}
    if topic == "protein":
        return {
            "topic": "protein/logged",
            "payload": {"grams": draw(st.integers(1, 500)), "at": iso},
        }
    if topic == "soreness":
        return {"topic": "soreness", "payload": {"level": draw(st.integers(0, 10)), "at": iso}}
    if topic == "gym":
        out = at + timedelta(minutes=draw(st.integers(20, 120)))
        return {"topic": "gym/checkin+out", "payload": {"in": iso, "out": out.isoformat()}}
    minutes = draw(st.integers(1, 600))
    rest = "nudge/last/ack" if topic == "ack" else "nudge/last/snooze"
    return {"topic": rest, "payload": {"minutes": minutes}, "received_at": iso}


@st.composite
def scenario(draw: st.DrawFn) -> tuple[Config, list[str]]:
    user = draw(user_config)
    cfg = parse_config({"users": {"alex": user}})
    start = draw(starts)
    items = draw(st.lists(st.integers(), min_size=1, max_size=14).map(len))
    lines: list[str] = []
    for n in range(items):
        m = draw(message(start, n))
        if m["topic"] == "gym/checkin+out":
            p = m["payload"]
            for kind, at in (("checkin", p["in"]), ("checkout", p["out"])):
                body = {"at": at, "event_id": f"gym{n}-{kind}"}
                lines.append(
                    json.dumps({"topic": f"recovery_coach/alex/gym/{kind}", "payload": body})
                )
            continue
        m["topic"] = f"recovery_coach/alex/{m['topic']}"
        lines.append(json.dumps(m))
    return cfg, lines


@dataclass
class Replayed:
    config: Config
    nudges: list[dict[str, Any]]


def replay(cfg: Config, lines: list[str]) -> Replayed:
    out, err = io.StringIO(), io.StringIO()
    simulate(cfg, lines, 36, out, err)
    return Replayed(cfg, [json.loads(line) for line in out.getvalue().splitlines()])


def awake_then(p: Profile, spans: list[tuple[datetime, datetime]], n: dict[str, Any]) -> bool:
    """Whether a nudge due inside a sleep window follows what the person did (RULES.md:
    reported activity proves they are awake): activity ending in the later half of that
    night, or a cooldown begun before the window, whose "done" comes a little into it."""
    due = datetime.fromisoformat(n["due_at"])
    if n["kind"] == "cooldown_done":
        start = due - timedelta(minutes=n["data"]["cooldown_minutes"])
        if not night_around(p, start).contains(start):
            return True
        due = start
    night = night_around(p, due)
    mid = night.bedtime + (night.wake - night.bedtime) / 2
    return any(start <= due and mid <= end < night.wake for start, end in spans)


def activity_spans(lines: list[str]) -> list[tuple[datetime, datetime]]:
    """(start, end) of everything the person did, from the replayed messages' own times."""
    spans = []
    checkins: list[datetime] = []
    msgs = [json.loads(line) for line in lines]
    gym = [m for m in msgs if "/gym/" in m["topic"]]
    gym.sort(key=lambda m: (m["payload"]["at"], m["topic"].endswith("checkout")))
    for m in [m for m in msgs if "/gym/" not in m["topic"]] + gym:
        body = m["payload"]
        if m["topic"].endswith("workout/completed"):
            end = datetime.fromisoformat(body["ended_at"])
            spans.append((end - timedelta(minutes=body.get("duration_min") or 0), end))
        elif m["topic"].endswith("gym/checkin"):
            checkins.append(datetime.fromisoformat(body["at"]))
        elif m["topic"].endswith("gym/checkout"):
            end = datetime.fromisoformat(body["at"])
            spans.append((checkins.pop() if checkins else end, end))
    return spans
