"""Cluster 01, API gateway: wiring of its server.

Its own rpcs (service info, version, aggregated health, metrics) and the front-door
policy (rate limits) consulted by the edge.
Owns the proto package ``lucid.gateway.v1`` and the Redis prefix ``lucid:gateway:``.
Every rpc of its contract is registered; those not built yet answer UNIMPLEMENTED
(``LUCID_ERR_5011``) after authentication and authorization.
"""

from __future__ import annotations

from lucid.runtime.server import ClusterApp, Runtime


async def build(runtime: Runtime) -> ClusterApp:
    """The gateway server."""
    return ClusterApp(servicers=[])
