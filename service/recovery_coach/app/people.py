"""People set up over MQTT: `<base>/<user>/profile` (CONTRACT.md addition).

A retained JSON object with the keys of one user in the YAML, validated by the same pydantic
model (`config.UserConfig`). A valid profile creates or updates the user; an invalid one is
refused with every problem named by its field, and the previous profile stays in force; an
empty message removes the user. A user of the YAML belongs to the YAML. What this module
decides is applied by the worker in the batch's transaction (worker.py, unit_of_work.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from recovery_coach.contract.config import (
    RESERVED_USER_IDS,
    USER_ID,
    Config,
    Problem,
    UserConfig,
    problems_of,
    profile_from,
)
from recovery_coach.contract.inbound import Refused
from recovery_coach.core.models import Profile

MAX_PROFILE_BYTES = 16_384


@dataclass(frozen=True)
class ProfileSet:
    """A valid profile for a new or changed user; `text` is what the store keeps."""

    user: str
    profile: Profile
    text: str
    new: bool


@dataclass(frozen=True)
class ProfileCleared:
    """An empty profile message: the user goes."""

    user: str


ProfileChange = ProfileSet | ProfileCleared


class People:
    """Who is set up over MQTT, beside the YAML's users, in the one `profiles` mapping that
    every piece of the shell reads."""

    def __init__(self, cfg: Config, profiles: dict[str, Profile]) -> None:
        self.cfg = cfg
        self.profiles = profiles
        self.yaml_users = frozenset(cfg.users)
        self.texts: dict[str, str] = {}  # each MQTT user's profile as stored

    @property
    def enabled(self) -> bool:
        return self.cfg.mqtt_profiles

    def load(self, stored: dict[str, str]) -> list[str]:
        """At start: the stored profiles join the YAML's users. Returns the ids whose stored
        profile is no longer used (the YAML now defines them, or it no longer validates)."""
        dropped = []
        for user, text in sorted(stored.items()):
            if user in self.yaml_users or not self.enabled:
                dropped.append(user)
                continue
            try:
                model = UserConfig.model_validate(json.loads(text))
            except (ValueError, ValidationError):
                dropped.append(user)
                continue
            self.profiles[user] = profile_from(user, model, self.cfg)
            self.texts[user] = text
        return dropped

    def read(self, topic: str, user: str, body: bytes) -> ProfileChange | Refused | None:
        """What a profile message asks; None when it changes nothing (the same profile
        again, as the broker's retained copy at every connect)."""

        def refuse(reason: str, problems: tuple[Problem, ...] = ()) -> Refused:
            return Refused(user if USER_ID.fullmatch(user) else None, topic, reason, None, problems)

        if not USER_ID.fullmatch(user) or user in RESERVED_USER_IDS:
            return refuse(f"'{user}' is not a valid user id: 1 to 32 characters of a-z, 0-9, _")
        if user in self.yaml_users:
            return refuse(
                f"user '{user}' is defined in the service's YAML config, which owns it: "
                "change it there, or remove it there to set it up over MQTT"
            )
        if not body.strip():
            return ProfileCleared(user) if user in self.texts else None
        if len(body) > MAX_PROFILE_BYTES:
            return refuse(f"a profile is at most {MAX_PROFILE_BYTES} bytes")
        try:
            data: Any = json.loads(body)
        except (UnicodeDecodeError, ValueError) as exc:
            return refuse(f"the profile is not valid JSON: {exc}")
        if not isinstance(data, dict):
            return refuse("the profile must be a JSON object with the keys of a user")
        try:
            model = UserConfig.model_validate(data)
        except ValidationError as exc:
            problems = tuple(problems_of(exc))
            listed = "; ".join(str(p) for p in problems)
            return refuse(f"invalid profile, the previous one stays: {listed}", problems)
        text = json.dumps(model.model_dump(mode="json", exclude_unset=True), sort_keys=True)
        if self.texts.get(user) == text:
            return None
        new = user not in self.texts
        if new and len(self.texts) >= self.cfg.max_users:
            return refuse(
                f"the service has {len(self.texts)} profiles, its limit (max_users in its "
                "config): this one is not set up"
            )
        return ProfileSet(user, profile_from(user, model, self.cfg), text, new)

    def apply(self, change: ProfileChange) -> tuple[Profile | None, str | None]:
        """Make the change (the worker's batch); returns what to `undo` it with."""
        before = (self.profiles.get(change.user), self.texts.get(change.user))
        if isinstance(change, ProfileSet):
            self.profiles[change.user] = change.profile
            self.texts[change.user] = change.text
        else:
            self.profiles.pop(change.user, None)
            self.texts.pop(change.user, None)
        return before

    def undo(self, user: str, before: tuple[Profile | None, str | None]) -> None:
        """The batch failed: the user is as before it."""
        profile, text = before
        if profile is None:
            self.profiles.pop(user, None)
        else:
            self.profiles[user] = profile
        if text is None:
            self.texts.pop(user, None)
        else:
            self.texts[user] = text
