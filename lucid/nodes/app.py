"""Cluster 05, node management: wiring of its server.

Worker nodes, pools, PoOT validation, work credits and payout amounts.
Owns the proto package ``lucid.nodes.v1`` and the Redis prefix ``lucid:nodes:``.
Every rpc of its contract is registered; those not built yet answer UNIMPLEMENTED
(``LUCID_ERR_5011``) after authentication and authorization.
"""

from __future__ import annotations

from lucid.runtime.server import ClusterApp, Runtime


async def build(runtime: Runtime) -> ClusterApp:
    """The nodes server."""
    return ClusterApp(servicers=[])
