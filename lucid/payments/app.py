"""Cluster 07, TRON payments: wiring of its server.

The wallet plane: USDT-TRC20 payouts, wallets and staking on TRON; isolated from the chain.
Owns the proto package ``lucid.payments.v1`` and the Redis prefix ``lucid:payments:``.
Every rpc of its contract is registered; those not built yet answer UNIMPLEMENTED
(``LUCID_ERR_5011``) after authentication and authorization.
"""

from __future__ import annotations

from lucid.runtime.server import ClusterApp, Runtime


async def build(runtime: Runtime) -> ClusterApp:
    """The payments server."""
    return ClusterApp(servicers=[])
