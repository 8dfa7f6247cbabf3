"""The same facts give the same advice, whatever order and delay they arrive in.

Hypothesis builds a user and a few days of messages (generated_weeks), replays them once
with each message arriving at its own time, and once shuffled with sync delays from 0 s to
12 h (some overnight). Once every fact has arrived, both runs must call for the same nudges,
worded the same; and in every run no nudge contradicts one before it, and none lands in the
sleep window except the bedtime nudge at bedtime.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from recovery_coach.contract.config import Config
from recovery_coach.core import coach
from recovery_coach.core.local_time import night_around
from recovery_coach.core.rules.zone2 import SETTLE
from recovery_coach.runtime.simulate import Simulation, read_events

from tests.support.generated_weeks import activity_spans, awake_then, scenario

CHECK = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DELAYS = [0, 0, 0, 5 * 60, 20 * 60, 90 * 60, 5 * 3600, 9 * 3600, 12 * 3600]
# Tied to the moment a message arrives, by design: the cooldown timer starts when the person
# is told, and "cool down, then sleep" only follows a late workout reported within minutes.
RECEIPT_BOUND = {("R1", "cooldown_start"), ("R1", "cooldown_done")}


def own_time(m: dict[str, Any]) -> datetime:
    body = m["payload"]
    for key in ("ended_at", "at", "planned_at"):
        if key in body:
            t = datetime.fromisoformat(body[key])
            if key == "planned_at":  # a plan is made some time before; use its arrival
                return datetime.fromisoformat(m.get("received_at") or body[key])
            return t
    raise AssertionError(m)


def facts_only(lines: list[str]) -> list[dict[str, Any]]:
    """The messages that are facts (acks and snoozes act on what was sent: order matters)."""
    out = []
    for line in lines:
        m = json.loads(line)
        if "/nudge/" in m["topic"]:
            continue
        m["received_at"] = own_time(m).isoformat()
        out.append(m)
    return out


def delayed(msgs: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for m in msgs:
        m = dict(m)
        m["received_at"] = (own_time(m) + timedelta(seconds=rng.choice(DELAYS))).isoformat()
        out.append(m)
    rng.shuffle(out)  # the order in the file does not matter either
    return out


def run(cfg: Config, msgs: list[dict[str, Any]]) -> Simulation:
    sim = Simulation(cfg)
    sim.run(read_events(json.dumps(m) for m in msgs), timedelta(hours=36))
    return sim


def called_for(sim: Simulation, at: datetime) -> dict[str, tuple[str, datetime, str, str]]:
    """What the user's final facts call for at `at`: id -> (kind, due, title, message)."""
    profile = sim.profiles["alex"]
    placed, _ = coach.derive(profile, sim.repo.load("alex"), at)
    soon = at + SETTLE  # R13 waits this long after a fact arrives: due "now", in effect
    return {
        p.nudge.nudge_id: (p.nudge.kind, max(p.nudge.due_at, soon), p.nudge.title, p.nudge.message)
        for p in placed
        if (p.nudge.rule, p.nudge.kind) not in RECEIPT_BOUND and not p.draft.key.startswith("late:")
    }


def separation(n: dict[str, Any]) -> bool:
    """Advice to keep cardio apart from strength (R4, R5, R6 for beginners/intermediates)."""
    if n["rule"] in ("R4", "R5"):
        return True
    return bool(n["rule"] == "R6" and n["data"].get("running_experience") != "advanced")


def check_published(sim: Simulation, lines: list[dict[str, Any]]) -> None:
    p = sim.profiles["alex"]
    nudges = sim.published
    spans = activity_spans([json.dumps(m) for m in lines])
    apart: list[datetime] = []  # separation advice published so far
    for n in nudges:  # in the order they went out
        due = datetime.fromisoformat(n["due_at"])
        # one voice: once keeping cardio apart is advised, R13 never urges it soon after. A
        # fact arriving in the very instant an R13 goes out may land either side of it, so
        # the order they went out in decides, not their due times (which may be equal).
        if n["rule"] == "R13":
            assert not any(a <= due <= a + timedelta(hours=24) for a in apart), n["message"]
        if separation(n):
            apart.append(due)
        night = night_around(p, due)
        if night.contains(due) and n["kind"] != "bedtime":
            assert awake_then(p, spans, n), n


@CHECK
@given(scenario(), st.integers(0, 2**32))
def test_the_same_facts_give_the_same_nudges_in_any_order_and_delay(
    case: tuple[Config, list[str]], seed: int
) -> None:
    cfg, lines = case
    msgs = facts_only(lines)
    if not msgs:
        return
    # A plan sent again for the same slot replaces the one before it (the newest stands):
    # which one is newest is a matter of arrival order, so no two plans share a slot here.
    slots = [
        (m["payload"].get("next_cardio") or m["payload"]).get("planned_at")
        for m in msgs
        if "planned" in m["topic"] or m["payload"].get("next_cardio")
    ]
    assume(len(slots) == len(set(slots)))
    on_time = run(cfg, msgs)
    late_msgs = delayed(msgs, seed)
    late = run(cfg, late_msgs)
    last = max(datetime.fromisoformat(m["received_at"]) for m in late_msgs)
    assert called_for(on_time, last) == called_for(late, last)
    check_published(on_time, msgs)
    check_published(late, late_msgs)
