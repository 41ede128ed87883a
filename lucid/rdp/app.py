"""Cluster 04, RDP services: wiring of its server.

Per-user XRDP server instances, their ports, client sessions and resource monitoring.
Owns the proto package ``lucid.rdp.v1`` and the Redis prefix ``lucid:rdp:``.
Every rpc of its contract is registered; those not built yet answer UNIMPLEMENTED
(``LUCID_ERR_5011``) after authentication and authorization.
"""

from __future__ import annotations

from lucid.runtime.server import ClusterApp, Runtime


async def build(runtime: Runtime) -> ClusterApp:
    """The rdp server."""
    return ClusterApp(servicers=[])
