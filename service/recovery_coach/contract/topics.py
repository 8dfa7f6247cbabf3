"""Every topic the service reads or writes, built and parsed here and nowhere else.

CONTRACT.md's tree, under a configurable base: `<base>/<user>/<message>` in, and
`<base>/<user>/{nudge,state,error}`, `<base>/status`, `<base>/diagnostics` out. Sharded
(shards.py), each shard has its own status and diagnostics and each instance its own status,
under `<base>/status/...` and `<base>/diagnostics/...`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from recovery_coach.contract.discovery import HA_STATUS_TOPIC
from recovery_coach.contract.shards import WHOLE, Shard

# What a user's devices publish: events, then commands on a nudge (`+` is its id or `last`).
EVENT_TOPICS = (
    "workout/completed",
    "gym/checkin",
    "gym/checkout",
    "cardio/planned",
    "protein/logged",
    "soreness",
)
COMMAND_TOPICS = ("nudge/+/ack", "nudge/+/snooze")
# Who a person is (people.py): retained, from Home Assistant.
PROFILE_TOPIC = "profile"
# Apple Health workouts as the Health Auto Export app publishes them (health_auto_export.py).
HEALTH_AUTO_EXPORT_TOPIC = "workout/health_auto_export"


def split_topic(base: str, topic: str) -> tuple[str, str] | None:
    """(user, rest) for `<base>/<user>/<rest>`, or None when the topic is not ours."""
    prefix = base + "/"
    if not topic.startswith(prefix):
        return None
    user, _, rest = topic[len(prefix) :].partition("/")
    if not user or not rest:
        return None
    return user, rest


@dataclass(frozen=True)
class Topics:
    base: str
    shard: Shard = WHOLE

    @property
    def service_status(self) -> str:
        """`online` while any instance serves."""
        return f"{self.base}/status"

    @property
    def status(self) -> str:
        """Whether this shard's users are served (the whole service's status unsharded)."""
        if self.shard.sharded:
            return f"{self.base}/status/shards/{self.shard.index}"
        return self.service_status

    @property
    def diagnostics(self) -> str:
        if self.shard.sharded:
            return f"{self.base}/diagnostics/shards/{self.shard.index}"
        return f"{self.base}/diagnostics"

    def instance_status(self, instance: str) -> str:
        return f"{self.base}/status/{instance}"

    def instance_diagnostics(self, instance: str) -> str:
        """Which shards the instance owns (retained; emptied when it stops cleanly)."""
        return f"{self.base}/diagnostics/{instance}"

    def nudge(self, user: str) -> str:
        return f"{self.base}/{user}/nudge"

    def state(self, user: str) -> str:
        return f"{self.base}/{user}/state"

    def error(self, user: str) -> str:
        return f"{self.base}/{user}/error"

    def profile(self, user: str) -> str:
        return f"{self.base}/{user}/profile"

    def profile_user(self, topic: str) -> str | None:
        """The user whose profile `topic` is, None for any other topic."""
        return self._user_on(topic, PROFILE_TOPIC)

    def workout_completed(self, user: str) -> str:
        return f"{self.base}/{user}/workout/completed"

    def health_auto_export_user(self, topic: str) -> str | None:
        """The user whose Health Auto Export `topic` is, None for any other topic."""
        return self._user_on(topic, HEALTH_AUTO_EXPORT_TOPIC)

    def _user_on(self, topic: str, message: str) -> str | None:
        """The user of `<base>/<user>/<message>`, None for any other topic."""
        parts = split_topic(self.base, topic)
        return parts[0] if parts and parts[1] == message else None

    def day(self, user: str) -> str:
        """Not on the wire: the topic a day tick is handled as."""
        return f"{self.base}/{user}/day"

    def subscriptions(self, *, profiles: bool = True) -> list[str]:
        """Everything the service subscribes to: every user's inbound topics (profiles,
        unless they are off), and Home Assistant's birth message (announce again when it
        comes online)."""
        mine = [
            f"{self.base}/+/{t}" for t in (*EVENT_TOPICS, *COMMAND_TOPICS, HEALTH_AUTO_EXPORT_TOPIC)
        ]
        return self._with_profiles_and_ha(mine, profiles)

    def user_subscriptions(self, users: Iterable[str]) -> list[str]:
        """A shard's subscriptions for these users' inbound topics (profiles aside)."""
        return [
            f"{self.base}/{u}/{t}"
            for u in sorted(users)
            for t in (*EVENT_TOPICS, *COMMAND_TOPICS, HEALTH_AUTO_EXPORT_TOPIC)
        ]

    def shard_subscriptions(self, users: Iterable[str], *, profiles: bool = True) -> list[str]:
        """A shard's: its users' topics, everyone's profiles (the shard keeps its own), and
        Home Assistant's birth message."""
        return self._with_profiles_and_ha(self.user_subscriptions(users), profiles)

    def _with_profiles_and_ha(self, mine: list[str], profiles: bool) -> list[str]:
        if profiles:
            mine.append(f"{self.base}/+/{PROFILE_TOPIC}")
        return [*mine, HA_STATUS_TOPIC]

    def user_of(self, topic: str) -> str | None:
        parts = split_topic(self.base, topic)
        return parts[0] if parts else None

    @staticmethod
    def is_ha_status(topic: str) -> bool:
        return topic == HA_STATUS_TOPIC
