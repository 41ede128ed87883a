"""What the fuzz suites compare before and after requests: documents per collection
(all of the mesh's, or one cluster's) and a cluster's Redis keys, leaving out what a
timer writes whatever requests arrive."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from tests.support import Mesh
from tests.waiting import eventually

# Time series, not request state: the rdp cluster samples the host's resources every
# 30 s, and the admin dashboard keeps a metrics sample of each overview it serves.
SAMPLED_COLLECTIONS = frozenset({"rdp_resource_metrics", "admin_metric_samples"})
TIMER_WRITTEN: dict[str, dict[str, Any]] = {
    # rdp's host monitor (every resource_interval_s) alerts when the machine is busy
    "rdp_resource_alerts": {"server_id": "", "session_id": ""},
    "rdp_audit_logs": {"action": "limit_exceeded", "resource": "host"},
}
"""Documents a timer writes whatever requests arrive: not counted."""
UNCOUNTED_KEYS = (":rl:", ":rate_limit:")
"""Redis keys every request may touch, refused or not: the runtime rate limiter's buckets
and the nodes cluster's per-caller call logs (spec 05 §5 counts every call)."""


def settled(mesh: Mesh) -> bool:
    """Whether every cluster has stored its schema declaration (a startup write)."""
    return all(
        server.declarer is not None and server.declarer.declared.is_set()
        for server in mesh.servers.values()
        if server.app.declare_schema
    )


FAILED_ACTION = {"result": {"$ne": "failure"}}
"""Audit entries but those of a refused action: the audit trail records who tried what
and why it was refused (``lucid.runtime.audit``), a record of the refusal, not a change."""


async def _count(mesh: Mesh, name: str, failures: bool) -> int:
    db = mesh.servers["auth"].runtime.datastores.db
    query = FAILED_ACTION if not failures and "audit" in name else {}
    timed = await db[name].count_documents(TIMER_WRITTEN[name]) if name in TIMER_WRITTEN else 0
    return int(await db[name].count_documents(query)) - timed


async def counts(
    mesh: Mesh, names: list[str] | None = None, *, audited_failures: bool = True
) -> dict[str, int]:
    """Documents per collection (of ``names``, or every collection of the mesh's
    database), but those written on a timer, once startup writes are done; without the
    audit entries of refused actions unless ``audited_failures``."""
    await eventually(lambda: settled(mesh), timeout_s=60, what="every schema declaration stored")
    if names is None:
        db = mesh.servers["auth"].runtime.datastores.db
        names = sorted(set(await db.list_collection_names()))
    names = [name for name in names if name not in SAMPLED_COLLECTIONS]
    values = await asyncio.gather(*(_count(mesh, name, audited_failures) for name in names))
    return dict(zip(names, values, strict=True))


def collections_of(mesh: Mesh, cluster: str) -> list[str]:
    """The collections a cluster owns (those its app declares)."""
    server = mesh.servers[cluster]
    return sorted(spec.name for spec in server.app.collections)


async def redis_keys(mesh: Mesh, cluster: str) -> set[str]:
    """A cluster's Redis keys (``lucid:<cluster>:…``) but the rate limiter's."""
    redis = mesh.servers[cluster].runtime.datastores.redis
    found: set[str] = set()
    async for key in redis.scan_iter(match=f"lucid:{cluster}:*", count=1000):
        text = key.decode() if isinstance(key, bytes) else str(key)
        if not any(part in text for part in UNCOUNTED_KEYS):
            found.add(text)
    return found


async def added_documents(mesh: Mesh, names: list[str]) -> dict[str, list[dict[str, Any]]]:
    """A few documents of each collection (to say what a change was)."""
    db = mesh.servers["auth"].runtime.datastores.db
    return {name: await db[name].find({}, {"_id": 0}).to_list(5) for name in names}


@dataclass(frozen=True)
class Stored:
    """What one cluster stores, as the fuzz compares it: documents per collection it
    owns (without audited refusals) and its Redis keys."""

    counts: dict[str, int]
    keys: frozenset[str]

    def changed_since(self, before: Stored) -> str:
        """What changed since ``before`` (empty if nothing did)."""
        changed = [name for name in self.counts if self.counts[name] != before.counts.get(name)]
        added = sorted(self.keys - before.keys)
        return " ".join(
            ([f"stored documents changed in {changed}"] if changed else [])
            + ([f"Redis keys added {added}"] if added else [])
        )


async def stored(mesh: Mesh, cluster: str) -> Stored:
    """What ``cluster`` stores now."""
    names = collections_of(mesh, cluster)
    found = await counts(mesh, names, audited_failures=False)
    return Stored(found, frozenset(await redis_keys(mesh, cluster)))
