"""The thirteen rules of the rule book (docs/rules.md) as pure functions of (facts, profile,
now), one module per family, and the table and precedence that apply them.

Each rule reads the user's timeline (`Context`: sessions, planned cardio, logs) and yields
`Draft`s: the nudge it wants, with due time and expiry taken from the facts' own times
(never from when a message arrived), and a `words` function that writes the title, message
and speech as they read at a given moment. `coach` places drafts (never in the past, never in
the sleep window) and words them at their delivery time. Wording follows RULES.md and the
article: cardio after leg day is fine at low to moderate effort, cardio is never said to
speed recovery, and no advice goes below 8 h of sleep or outside 1.2-2.0 g/kg unless the
user set it.
"""

from __future__ import annotations

from datetime import timedelta

from recovery_coach.core.rules.after_workout import r1_cooldown, r2_cardio_cap, r3_gains_myth
from recovery_coach.core.rules.cardio_and_strength import (
    r4_power_caveat,
    r5_endurance_separation,
    r6_hybrid_racer,
    r7_hard_cardio_warning,
)
from recovery_coach.core.rules.context import Context, Draft, Rule
from recovery_coach.core.rules.protein import r8_protein
from recovery_coach.core.rules.sleep import r9_bedtime
from recovery_coach.core.rules.soreness import r11_soreness, r12_too_much_too_fast
from recovery_coach.core.rules.walk_while_you_can import r13_walk_while_you_can
from recovery_coach.core.rules.zone2 import r10_zone2

RULES: tuple[Rule, ...] = (
    r1_cooldown,
    r2_cardio_cap,
    r3_gains_myth,
    r4_power_caveat,
    r5_endurance_separation,
    r6_hybrid_racer,
    r7_hard_cardio_warning,
    r8_protein,
    r9_bedtime,
    r10_zone2,
    r11_soreness,
    r12_too_much_too_fast,
    r13_walk_while_you_can,
)


def one_voice(drafts: list[Draft], ctx: Context) -> list[Draft]:
    """Nudges never contradict: where R4, R5 or R6 advise keeping cardio apart from strength
    (in this derivation, or in a nudge already sent), R13 does not urge doing the cardio
    soon. A sent one counts once its own draft is gone: a key run's time has passed, but a
    later session's R13 would still contradict what the person was told."""
    apart = [d.separation for d in drafts if d.separation is not None]
    advanced = ctx.profile.running_experience == "advanced"
    apart += [
        n.due_at
        for n in ctx.state.recent_nudges
        if n.rule in ("R4", "R5") or (n.rule == "R6" and not advanced)
    ]
    if not apart:
        return drafts
    window = timedelta(hours=24)
    return [
        d
        for d in drafts
        if not (
            d.rule == "R13"
            and d.anchor is not None
            and any(abs(d.anchor - a) <= window for a in apart)
        )
    ]


def apply_rules(ctx: Context) -> list[Draft]:
    """Every rule's drafts for the user's timeline at `ctx.now`, in rule order, composed."""
    return one_voice([d for rule in RULES for d in rule(ctx)], ctx)
