"""Per-user token buckets for inbound messages: one device flooding its own topic is refused
(and told so) instead of slowing every other user's nudges."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from recovery_coach.app.work import Batch, Work
from recovery_coach.contract.config import RateLimitConfig
from recovery_coach.contract.inbound import Refused
from recovery_coach.contract.topics import Topics
from recovery_coach.contract.transport import Inbound

REPORT_EVERY = 60.0  # seconds between two refusals published to one user's error topic


@dataclass
class _Bucket:
    tokens: float
    at: float  # monotonic seconds of the last refill
    refused: int = 0  # since the last report
    reported_at: float | None = None


class RateLimiter:
    def __init__(self, cfg: RateLimitConfig) -> None:
        self.cfg = cfg
        self.rate = cfg.per_minute / 60.0
        self.burst = float(cfg.burst)
        self._buckets: dict[str, _Bucket] = {}

    def split(
        self, batch: list[Work], topics: Topics, users: Collection[str], at: datetime
    ) -> tuple[list[Work], Batch]:
        """(what may go on, the refused inbound messages as a batch to acknowledge)."""
        limited = Batch(at)
        now = at.timestamp()
        kept: list[Work] = []
        for item in batch:
            if isinstance(item, Inbound) and not Topics.is_ha_status(item.topic):
                user = topics.user_of(item.topic)
                if user is not None and user in users and not self.take(user, now):
                    limited.acks.append((item.mid, item.qos))
                    limited.refused += 1
                    n = self.report(user, now)
                    if n:
                        limited.refusals.append(
                            Refused(
                                user,
                                item.topic,
                                f"too many messages: {n} refused (the limit is "
                                f"{self.cfg.per_minute} a minute after a burst of "
                                f"{self.cfg.burst}; rate_limit in the config)",
                            )
                        )
                    continue
            kept.append(item)
        return kept, limited

    def take(self, user: str, now: float) -> bool:
        """Whether one more message from `user` is allowed at `now` (epoch seconds)."""
        b = self._buckets.get(user)
        if b is None:
            b = self._buckets[user] = _Bucket(self.burst, now)
        # max(): the clock may step back (NTP); a bucket never drains by it.
        b.tokens = min(self.burst, b.tokens + max(0.0, now - b.at) * self.rate)
        b.at = now
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return True
        b.refused += 1
        return False

    def forget_full(self, now: float) -> None:
        """Drop the buckets that are full again by `now` (100,000 quiet users: no memory)."""
        full = [
            u
            for u, b in self._buckets.items()
            if b.refused == 0 and b.tokens + (now - b.at) * self.rate >= self.burst
        ]
        for u in full:
            del self._buckets[u]

    def report(self, user: str, now: float) -> int:
        """How many messages were refused since the last report, when one is due (else 0):
        the first refusal is reported at once, then at most one report per minute."""
        b = self._buckets.get(user)
        if b is None or b.refused == 0:
            return 0
        if b.reported_at is not None and now - b.reported_at < REPORT_EVERY:
            return 0
        n, b.refused, b.reported_at = b.refused, 0, now
        return n
