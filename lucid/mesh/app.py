"""Cluster 10, service mesh: wiring of its server.

Registration and discovery, certificates, traffic and security policy, and events on Redis Streams.
Owns the proto package ``lucid.mesh.v1`` and the Redis prefix ``lucid:mesh:``.
Every rpc of its contract is registered; those not built yet answer UNIMPLEMENTED
(``LUCID_ERR_5011``) after authentication and authorization.
"""

from __future__ import annotations

from lucid.runtime.server import ClusterApp, Runtime


async def build(runtime: Runtime) -> ClusterApp:
    """The mesh server."""
    return ClusterApp(servicers=[])
