"""Cluster 03, session management: wiring of its server.

Recording sessions: the state machine, chunk upload (compress, seal, hash, store),
manifests and Merkle roots, anchoring through the chain, chunk proofs.
Owns the proto package ``lucid.sessions.v1`` and the Redis prefix ``lucid:sessions:``.
Every rpc of its contract is registered; those not built yet answer UNIMPLEMENTED
(``LUCID_ERR_5011``) after authentication and authorization.
"""

from __future__ import annotations

from lucid.runtime.server import ClusterApp, Runtime


async def build(runtime: Runtime) -> ClusterApp:
    """The sessions server."""
    return ClusterApp(servicers=[])
