"""The one back-off policy the broker link, the batch retry, the job store and the start-up
wait share."""

from __future__ import annotations

from recovery_coach.core.backoff import Backoff


def test_waits_double_up_to_the_cap_and_start_again_after_a_reset() -> None:
    b = Backoff()
    assert [b.next() for _ in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    b.reset()
    assert b.next() == 1.0


def test_a_policy_of_its_own_does_not_share_state() -> None:
    a, b = Backoff(first=0.5, most=1.0), Backoff()
    assert [a.next(), a.next(), a.next()] == [0.5, 1.0, 1.0]
    assert b.next() == 1.0
