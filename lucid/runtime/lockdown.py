"""The lockdown gate: while admin's system mode says *admin only*, a cluster's
pipeline refuses every call made with a user token below admin.

The mode is admin's (``EmergencyService.GetSystemMode``); a cluster never reads
admin's collections. The answer is cached for ``ttl_s`` so a busy cluster asks at
most once per interval. Only the first call waits for admin's answer; after that a
stale answer is refreshed in the background while calls go on with the last one, so
no call waits on admin (a slow or absent admin used to hold one call per interval for
up to ``ASK_TIMEOUT_S``) and a lockdown takes hold within the TTL plus one answer.
While admin cannot be asked, the last answer stands (none yet: not locked), so an
admin outage does not lock everyone out. Which clusters
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
        self._refresh: asyncio.Task[None] | None = None

    async def admin_only(self) -> bool:
        """The last answer; the first call waits for it, later ones refresh a stale one
        in the background."""
        if self._asked_at is None:
            async with self._lock:
                if self._asked_at is None:
                    await self._ask()
        else:
            self._refresh_if_stale()
        return self._admin_only

    def _refresh_if_stale(self) -> None:
        if not self._fresh() and self._refresh is None:
            self._refresh = asyncio.create_task(self._ask())
            self._refresh.add_done_callback(self._refreshed)

    async def admin_only_now(self) -> bool:
        """The answer at most the TTL old, waiting for admin when it is stale: for rare
        calls that must not run a moment into a lockdown, such as creating a payout."""
        if not self._fresh():
            async with self._lock:
                if not self._fresh():
                    await self._ask()
        return self._admin_only

    def _refreshed(self, task: asyncio.Task[None]) -> None:
        self._refresh = None

    async def close(self) -> None:
        """Waits out a refresh in flight (bounded by ``ASK_TIMEOUT_S``)."""
        if self._refresh is not None:
            await asyncio.gather(self._refresh, return_exceptions=True)

    def cached(self) -> bool | None:
        """The last answer without waiting (a stale one is refreshed in the background);
        ``None`` before the first answer, when ``admin_only`` must ask."""
        if self._asked_at is None:
            return None
        self._refresh_if_stale()
        return self._admin_only

    def _fresh(self) -> bool:
        return self._asked_at is not None and self.monotonic() - self._asked_at < self.ttl_s

    async def _ask(self) -> None:
        """Asks admin; the answer's age counts from the question (a failed question
        keeps the last answer and is not repeated before the TTL either)."""
        asked_at = self.monotonic()
        try:
            stub = await self.channels.stub("admin", emergency_pb2_grpc.EmergencyServiceStub)
            reply = await stub.GetSystemMode(
                emergency_pb2.GetSystemModeRequest(), timeout=ASK_TIMEOUT_S
            )
        except (grpc.aio.AioRpcError, UnavailableClusterError, OSError):
            pass  # keep the last answer
        else:
            self._admin_only = reply.status.admin_only
        finally:
            self._asked_at = asked_at
