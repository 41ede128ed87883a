"""Cluster 06, admin interface: wiring of its server.

The operator console: dashboard, sessions, nodes, anchoring, payouts, configuration,
audit and emergency controls.
Owns the proto package ``lucid.admin.v1`` and the Redis prefix ``lucid:admin:``.
Every rpc of its contract is registered; those not built yet answer UNIMPLEMENTED
(``LUCID_ERR_5011``) after authentication and authorization.
"""

from __future__ import annotations

from lucid.runtime.server import ClusterApp, Runtime


async def build(runtime: Runtime) -> ClusterApp:
    """The admin server."""
    return ClusterApp(servicers=[])
