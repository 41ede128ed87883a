"""The lockdown gate: while admin's system mode says *admin only*, a cluster's
pipeline refuses every call made with a user token below admin.

The mode is admin's (``EmergencyService.GetSystemMode``); a cluster never reads
admin's collections. The answer is cached for ``ttl_s`` so a busy cluster asks at
most once per interval. While admin cannot be asked, the last answer stands (none
yet: not locked), so an admin outage does not lock everyone out. Which clusters
enforce it is contract data: the callers ``GetSystemMode`` names.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import grpc

from lucid.admin.v1 import emergency_pb2, emergency_pb2_grpc
from lucid.common.v1 import access_pb2
from lucid.runtime.channels import Channels, UnavailableClusterError
from lucid.runtime.contracts import Catalog
from lucid.runtime.identity import EDGE

MODE_METHOD = "/lucid.admin.v1.EmergencyService/GetSystemMode"
ASK_TIMEOUT_S = 1.0
TTL_S = 1.0


def enforcing_clusters(catalog: Catalog) -> frozenset[str]:
    """The clusters whose pipelines enforce a lockdown (GetSystemMode's callers)."""
    info = catalog.methods.get(MODE_METHOD)
    if info is None:
        return frozenset()
    names = {
        access_pb2.Cluster.Name(caller).removeprefix("CLUSTER_").lower()
        for caller in info.access.service_callers
    }
    return frozenset(names - {EDGE})


class LockdownGate:
    """Whether only admins may call, as admin last said."""

    def __init__(
        self,
        channels: Channels,
        *,
        ttl_s: float = TTL_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.channels = channels
        self.ttl_s = ttl_s
        self.monotonic = monotonic
        self._admin_only = False
        self._asked_at: float | None = None
        self._lock = asyncio.Lock()

    async def admin_only(self) -> bool:
        """The cached answer, refreshed when older than the TTL."""
        if self._fresh():
            return self._admin_only
        async with self._lock:
            if not self._fresh():
                await self._ask()
        return self._admin_only

    def cached(self) -> bool | None:
        """The answer while it is fresh; ``None`` when ``admin_only`` must ask first."""
        return self._admin_only if self._fresh() else None

    def _fresh(self) -> bool:
        return self._asked_at is not None and self.monotonic() - self._asked_at < self.ttl_s

    async def _ask(self) -> None:
        self._asked_at = self.monotonic()
        try:
            stub = await self.channels.stub("admin", emergency_pb2_grpc.EmergencyServiceStub)
            reply = await stub.GetSystemMode(
                emergency_pb2.GetSystemModeRequest(), timeout=ASK_TIMEOUT_S
            )
        except (grpc.aio.AioRpcError, UnavailableClusterError, OSError):
            return  # keep the last answer
        self._admin_only = reply.status.admin_only
