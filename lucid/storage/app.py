"""Cluster 08, storage and database: wiring of its server.

The data cluster: schema declarations and validation, database health and stats,
backups, cache administration, volumes, search.
Owns the proto package ``lucid.storage.v1`` and the Redis prefix ``lucid:storage:``.
Every rpc of its contract is registered; those not built yet answer UNIMPLEMENTED
(``LUCID_ERR_5011``) after authentication and authorization.
"""

from __future__ import annotations

from lucid.runtime.server import ClusterApp, Runtime


async def build(runtime: Runtime) -> ClusterApp:
    """The storage server."""
    return ClusterApp(servicers=[])
