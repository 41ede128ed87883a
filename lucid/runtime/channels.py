"""Client channels to other clusters: mTLS, deadlines, retries, request-id propagation.

``Channels`` resolves a cluster through the registry (passing instances only)
and keeps one channel per cluster over that address set, with gRPC's
``round_robin`` policy spreading calls across the instances; when the set
changes (an instance drops out or comes back) the next call gets a channel over
the new set and the old one drains. Every channel presents this process's
certificate, checks that the server is the cluster it meant to reach (its
``<cluster>.lucid.internal`` name), sets a default deadline, forwards the
current ``x-request-id``, and retries UNAVAILABLE with exponential backoff —
only for rpcs the contract marks idempotent (``idempotency_level``), so a write is never sent twice.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from lucid.runtime import tls
from lucid.runtime.config import Settings
from lucid.runtime.context import current_request_id
from lucid.runtime.contracts import Catalog
from lucid.runtime.registry import Registry, channel_target

StubT = TypeVar("StubT")

REQUEST_ID_HEADER = "x-request-id"
RETRY_ATTEMPTS = 3
RETRY_INITIAL_BACKOFF_S = 1.0
RETRY_MAX_BACKOFF_S = 10.0
RETRY_MULTIPLIER = 2.0
SLOW_CLUSTERS = {"blockchain": 60.0}
"""Default deadlines longer than ``call_timeout_s`` (spec 01 §4: chain 60 s)."""


class UnavailableClusterError(LookupError):
    """The registry knows no endpoint for the cluster."""


def service_config(catalog: Catalog, cluster: str, timeout_s: float) -> str:
    """The gRPC service config of a channel to ``cluster``: retries for idempotent rpcs."""
    idempotent = [
        {"service": m.service, "method": m.name}
        for m in catalog.methods.values()
        if m.cluster == cluster and m.idempotent and not m.client_streaming
    ]
    configs: list[dict[str, Any]] = [{"name": [{}], "timeout": f"{timeout_s:.3f}s"}]
    if idempotent:
        configs.append(
            {
                "name": idempotent,
                "timeout": f"{timeout_s:.3f}s",
                "retryPolicy": {
                    "maxAttempts": RETRY_ATTEMPTS,
                    "initialBackoff": f"{RETRY_INITIAL_BACKOFF_S}s",
                    "maxBackoff": f"{RETRY_MAX_BACKOFF_S}s",
                    "backoffMultiplier": RETRY_MULTIPLIER,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        )
    return json.dumps({"loadBalancingConfig": [{"round_robin": {}}], "methodConfig": configs})


def _with_request_id(details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
    request_id = current_request_id()
    metadata = list(details.metadata or ())
    if request_id and not any(k == REQUEST_ID_HEADER for k, _ in metadata):
        metadata.append((REQUEST_ID_HEADER, request_id))
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


class _RequestIdUnary(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return await continuation(_with_request_id(details), request)


class _RequestIdUnaryStream(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return await continuation(_with_request_id(details), request)


class _RequestIdStreamUnary(grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_unary(
        self, continuation: Callable[..., Any], details: Any, requests: Any
    ) -> Any:
        return await continuation(_with_request_id(details), requests)


class _RequestIdStreamStream(grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_stream(
        self, continuation: Callable[..., Any], details: Any, requests: Any
    ) -> Any:
        return await continuation(_with_request_id(details), requests)


def channel_options(settings: Settings, cluster: str, config: str) -> list[tuple[str, Any]]:
    """Options of every Lucid channel to ``cluster``."""
    return [
        ("grpc.ssl_target_name_override", tls.dns_name(cluster)),
        ("grpc.service_config", config),
        ("grpc.enable_retries", 1),
        ("grpc.max_send_message_length", settings.max_request_bytes + 1024 * 1024),
        ("grpc.max_receive_message_length", settings.max_request_bytes + 1024 * 1024),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 5_000),
    ]


class Channels:
    """One mTLS channel per cluster, for the identity this process runs as."""

    DRAIN_S = 30.0
    """How long a replaced channel keeps serving the calls already on it."""

    def __init__(
        self,
        settings: Settings,
        *,
        identity: str,
        registry: Registry,
        catalog: Catalog,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.catalog = catalog
        self.credentials = tls.channel_credentials(tls.CertPaths.of(settings.certs_dir, identity))
        self._channels: dict[str, tuple[str, grpc.aio.Channel]] = {}
        self._draining: set[asyncio.Task[None]] = set()

    async def channel(self, cluster: str) -> grpc.aio.Channel:
        """The channel to ``cluster``'s passing instances (a new one when they change)."""
        current = self._channels.get(cluster)
        try:
            endpoints = await self.registry.resolve(cluster)
        except Exception:
            if current is None:
                raise
            return current[1]  # the registry is unreachable: keep the last known set
        if not endpoints:
            raise UnavailableClusterError(f"no endpoint known for cluster {cluster!r}")
        target = channel_target(endpoints)
        if current is not None and current[0] == target:
            return current[1]
        timeout = SLOW_CLUSTERS.get(cluster, self.settings.call_timeout_s)
        options = channel_options(
            self.settings, cluster, service_config(self.catalog, cluster, timeout)
        )
        interceptors = [
            _RequestIdUnary(),
            _RequestIdUnaryStream(),
            _RequestIdStreamUnary(),
            _RequestIdStreamStream(),
        ]
        channel = (
            # Behind an Envoy sidecar, its outbound listener on loopback does the mTLS.
            grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
            if self.settings.sidecar
            else grpc.aio.secure_channel(
                target, self.credentials, options=options, interceptors=interceptors
            )
        )
        self._channels[cluster] = (target, channel)
        if current is not None:
            task = asyncio.create_task(current[1].close(grace=self.DRAIN_S))
            self._draining.add(task)
            task.add_done_callback(self._draining.discard)
        return channel

    async def stub(self, cluster: str, stub_class: Callable[[grpc.aio.Channel], StubT]) -> StubT:
        """A generated stub bound to ``cluster``'s channel."""
        return stub_class(await self.channel(cluster))

    async def close(self) -> None:
        """Closes every channel."""
        for _, channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        for task in list(self._draining):
            task.cancel()
        await asyncio.gather(*self._draining, return_exceptions=True)
