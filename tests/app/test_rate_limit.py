"""The per-user token bucket: a burst, then the rate; refusals reported once a minute."""

from __future__ import annotations

from recovery_coach.app.rate_limit import REPORT_EVERY, RateLimiter
from recovery_coach.contract.config import RateLimitConfig


def test_a_burst_then_the_rate_and_each_user_has_their_own_bucket() -> None:
    lim = RateLimiter(RateLimitConfig(per_minute=60, burst=5))
    assert [lim.take("alex", 0.0) for _ in range(7)] == [True] * 5 + [False] * 2
    assert lim.take("sam", 0.0)  # alex's flood is not sam's
    assert not lim.take("alex", 0.5)
    assert lim.take("alex", 1.6)  # one a second comes back
    assert not lim.take("alex", 1.7)


def test_refusals_are_reported_at_once_then_at_most_once_a_minute() -> None:
    lim = RateLimiter(RateLimitConfig(per_minute=60, burst=1))
    lim.take("alex", 0.0)
    assert not lim.take("alex", 0.0)
    assert lim.report("alex", 0.0) == 1
    for _ in range(3):
        lim.take("alex", 0.1)
    assert lim.report("alex", 0.1) == 0  # within the minute: counted, not reported
    assert lim.report("alex", REPORT_EVERY + 0.1) == 3
    assert lim.report("sam", 0.0) == 0


def test_full_buckets_are_forgotten() -> None:
    lim = RateLimiter(RateLimitConfig(per_minute=60, burst=3))
    for user in ("alex", "sam"):
        lim.take(user, 0.0)
    lim.forget_full(0.5)
    assert len(lim._buckets) == 2  # not yet full again
    lim.forget_full(1.0)
    assert lim._buckets == {}
    assert [lim.take("alex", 1.0) for _ in range(4)] == [True] * 3 + [False]
