"""Every word of a nudge is true when it is read: relative days, protein and zone-2 figures.

Generated weeks are replayed with each fact arriving at its own time (snoozes and acks too),
and every published nudge is checked against the user's day at its delivery moment:
"tomorrow at 07:30" names tomorrow as seen then, "so far today" counts that day's protein,
"this week" counts that ISO week's zone-2 minutes, "today's leg day" was that day's.
"""

from __future__ import annotations

import contextlib
import json
import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from recovery_coach.contract.config import Config, parse_config
from recovery_coach.core.local_time import day_word, iso_week, local_date
from recovery_coach.runtime.simulate import Simulation, read_events

from tests.support.generated_weeks import scenario

CHECK = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DAY_CLOCK = re.compile(
    r"\b(today|tomorrow|yesterday|Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
    r" at (\d\d:\d\d)"
)
LOGGED = re.compile(r"You've logged (\d+) g so far today")
ZONE2 = re.compile(r"(?:You have|That's) (\d+) (?:of \d+ )?minutes of zone-2")
LEG_DAY = re.compile(r"\b(today|yesterday|\w+day)'s leg day")
ONE_WITH_A_PLURAL = re.compile(r"(?<![\d.])1 (?:\w+ )?(?:minutes|hours|days|nights|grams)\b")


def on_time(lines: list[str]) -> list[dict[str, Any]]:
    out = []
    for line in lines:
        m = json.loads(line)
        body = m["payload"]
        own = body.get("ended_at") or body.get("at")
        if own and "received_at" not in m:
            m["received_at"] = own
        out.append(m)
    return out


def times_in(data: dict[str, Any]) -> list[datetime]:
    found = []
    for v in data.values():
        if isinstance(v, str):
            with contextlib.suppress(ValueError):
                found.append(datetime.fromisoformat(v))
    return found


def arrived(m: dict[str, Any], at: datetime, same_instant: bool) -> bool:
    """Known at `at`: a message that arrives in the very instant a nudge goes out may be
    handled just before or just after it, so both readings are checked."""
    received = datetime.fromisoformat(m["received_at"])
    return received < at or (same_instant and received == at)


def zone2_minutes(
    msgs: list[dict[str, Any]], cfg: Config, at: datetime, tz: ZoneInfo, same_instant: bool
) -> int:
    s = cfg.profiles()["alex"].settings
    total = 0.0
    for m in msgs:
        b = m["payload"]
        if not m["topic"].endswith("workout/completed") or b["kind"] not in ("cardio", "class"):
            continue
        if not arrived(m, at, same_instant):
            continue
        end = datetime.fromisoformat(b["ended_at"])
        if end > at or iso_week(end, tz) != iso_week(at, tz) or not b.get("duration_min"):
            continue
        # The rule book reads effort on its 0-10 scale (R10: 3-6 is moderate); an unrated
        # session by its heart-rate zone (2-3 moderate).
        rpe, zone = b.get("rpe"), b.get("zone")
        moderate = (
            s.zone2_rpe_min <= rpe <= s.moderate_rpe_max if rpe is not None else zone in (2, 3)
        )
        total += b["duration_min"] if moderate else 0
    return round(total)


@CHECK
@given(scenario())
def test_every_word_is_true_at_delivery(case: tuple[Config, list[str]]) -> None:
    cfg, lines = case
    msgs = on_time(lines)
    sim = Simulation(cfg)
    sim.run(read_events(json.dumps(m) for m in msgs), timedelta(hours=36))
    tz = sim.profiles["alex"].tz
    ends = {
        m["payload"]["event_id"]: datetime.fromisoformat(m["payload"]["ended_at"])
        for m in msgs
        if m["topic"].endswith("workout/completed")
    }
    for n in sim.published:
        at = datetime.fromisoformat(n["due_at"])
        text = n["message"]
        for words in (n["title"], text, n["speech"]):
            assert not ONE_WITH_A_PLURAL.search(words), words
        known = times_in(n["data"])
        for word, clock in DAY_CLOCK.findall(text):
            assert any(
                t.astimezone(tz).strftime("%H:%M") == clock and day_word(t, tz, at) == word
                for t in known
            ), f"{word} at {clock} is not true at {n['due_at']}: {text}"
        for grams in LOGGED.findall(text):
            day = local_date(at, tz)
            readings = set()
            for same in (False, True):
                # the same log sent twice (same grams and time, no event_id) is one fact
                logs = {
                    (m["payload"]["at"], m["payload"]["grams"])
                    for m in msgs
                    if m["topic"].endswith("protein/logged")
                    and arrived(m, at, same)
                    and local_date(datetime.fromisoformat(m["payload"]["at"]), tz) == day
                    and datetime.fromisoformat(m["payload"]["at"]) <= at
                }
                readings.add(round(sum(g for _, g in logs)))
            assert int(grams) in readings, text
            assert n["data"]["protein_remaining_g"] > 0, "a met target is no reminder"
        for minutes in ZONE2.findall(text):
            readings = {zone2_minutes(msgs, cfg, at, tz, same) for same in (False, True)}
            assert int(minutes) in readings, text
        for word in LEG_DAY.findall(text):
            end = ends.get(n["source_event_id"])
            if end is not None:
                assert day_word(end, tz, at) == word, text
        # A planned session read once it has begun is no longer a plan to move.
        begun = [
            datetime.fromisoformat(n["data"][k])
            for k in ("cardio_at", "planned_at")
            if isinstance(n["data"].get(k), str)
        ]
        if any(start <= at for start in begun):
            assert "planned" not in text, text
            assert "move" not in text, text


def test_a_count_of_one_reads_singular() -> None:
    """Settings at the ends of their ranges: a 1-minute cooldown, hard cardio planned within
    the 1 hour after leg day."""
    cfg = parse_config(
        {
            "users": {
                "alex": {
                    "timezone": "Europe/Berlin",
                    "wake_time": "07:00",
                    "settings": {"cooldown_minutes": 1, "few_hours": 1},
                }
            }
        }
    )
    legs = {"event_id": "w1", "ended_at": "2026-03-06T10:00:00+00:00", "kind": "strength"}
    plan = {"event_id": "p1", "planned_at": "2026-03-06T10:30:00+00:00", "kind": "run", "rpe": 9}
    lines = [
        {"topic": "recovery_coach/alex/workout/completed", "payload": {**legs, "focus": "legs"}},
        {
            "topic": "recovery_coach/alex/cardio/planned",
            "payload": plan,
            "received_at": "2026-03-06T10:05:00+00:00",
        },
    ]
    sim = Simulation(cfg)
    sim.run(
        read_events(json.dumps(m) for m in on_time([json.dumps(x) for x in lines])),
        timedelta(hours=12),
    )
    words = [w for n in sim.published for w in (n["title"], n["message"], n["speech"])]
    assert any("1 easy minute " in w for w in words), words  # the case is exercised
    assert any("1 hour " in w for w in words), words
    assert [w for w in words if ONE_WITH_A_PLURAL.search(w)] == []
