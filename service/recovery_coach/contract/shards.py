"""Shards: users divided among processes on one PostgreSQL and one broker (docs/scaling.md).

The arithmetic of it, pure: a user's shard, a shard's names, fair shares and the rebalance.
The leases and the fence on PostgreSQL are store/shard_leases.py.

Each user belongs to one of `shards` shards by a stable hash of the id. An instance owns a
shard while it holds both

- the shard's advisory lock on the instance's lease connection: released by PostgreSQL the
  moment that connection closes (the process died, or was ended); and
- the shard's lease row, which says who owns it with a fencing token that every takeover
  bumps, and which the owner renews every HEARTBEAT_S; a row not renewed for LEASE_S is
  stale.

A stalled process keeps its connection, and so its locks, open: an instance whose heartbeat
is stale has its backends ended (`pg_terminate_backend`) by the one taking its shards. Every
write of a shard checks, in its own transaction, that the token is still the one it took the
shard with (`Fence`); the check holds a row lock that the next taker's token bump waits for,
so once a takeover has committed, no write of the old owner can.
"""

from __future__ import annotations

import os
import re
import socket
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

LEASE_S: Final = 10.0  # a lease (or an instance's heartbeat) not renewed for this long is stale
HEARTBEAT_S: Final = 1.0  # how often an instance renews its leases and rebalances
LOCK_SPACE: Final = 0x5243  # "RC": the first key of pg_try_advisory_lock(int, int)
SCHEMA_LOCK: Final = -1  # the second key of the lock the schema is made and changed under
INSTANCE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def shard_of(user: str, count: int) -> int:
    """The shard a user belongs to: CRC-32 of the id, the same in every process and release."""
    return zlib.crc32(user.encode()) % count


def default_instance() -> str:
    """The host and process id: unique among the instances that run at once."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}"


def application_name(instance: str) -> str:
    """What every PostgreSQL connection of an instance is named, so a taker can end them."""
    return f"recovery-coach:{instance}"


@dataclass(frozen=True)
class Shard:
    """One shard's names. `Shard(0, 1)` is the whole service as one process (no sharding)."""

    index: int
    count: int

    @property
    def sharded(self) -> bool:
        return self.count > 1

    def owns(self, user: str) -> bool:
        return not self.sharded or shard_of(user, self.count) == self.index

    @property
    def jobs_table(self) -> str:
        # APScheduler's job store reads its whole table: each shard's scheduler has its own.
        return f"rc_jobs_shard_{self.index}" if self.sharded else "apscheduler_jobs"

    def client_id(self, base_id: str) -> str:
        return f"{base_id}-shard-{self.index}" if self.sharded else base_id

    def meta_key(self, key: str) -> str:
        return f"{key}:shard-{self.index}" if self.sharded else key


WHOLE: Final = Shard(0, 1)


def fair_share(live: Sequence[str], me: str, count: int) -> int:
    """How many shards `me` aims at among the live instances (their targets sum to count)."""
    ranked = sorted(set(live) | {me})
    base, extra = divmod(count, len(ranked))
    return base + (1 if ranked.index(me) < extra else 0)


def rebalance(
    me: str, count: int, live: Sequence[str], owned: Iterable[int], owners: Mapping[int, str | None]
) -> tuple[list[int], list[int]]:
    """(shards to release, free shards to try to take), toward `me`'s fair share. A shard is
    free when its owner of record is nobody, an instance that is not live, or `me` itself
    (this instance lost it and may take it again)."""
    target = fair_share(live, me, count)
    mine = sorted(owned)
    if len(mine) >= target:
        return mine[target:], []
    free = [
        k
        for k in range(count)
        if k not in mine and (owners.get(k) is None or owners[k] == me or owners[k] not in live)
    ]
    # Instances starting together try different shards first.
    offset = shard_of(me, count)
    free.sort(key=lambda k: (k - offset) % count)
    return [], free[: target - len(mine)]
