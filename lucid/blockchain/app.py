"""Cluster 02, blockchain core (lucid_blocks): wiring of its server.

The chain: blocks, transactions, session anchoring, PoOT consensus between validator
processes, Merkle trees. It never touches TRON.
Owns the proto package ``lucid.blockchain.v1`` and the Redis prefix ``lucid:blockchain:``.
Every rpc of its contract is registered; those not built yet answer UNIMPLEMENTED
(``LUCID_ERR_5011``) after authentication and authorization.
"""

from __future__ import annotations

from lucid.runtime.server import ClusterApp, Runtime


async def build(runtime: Runtime) -> ClusterApp:
    """The blockchain server."""
    return ClusterApp(servicers=[])
