"""Client channels to other clusters: mTLS, deadlines, retries, request-id propagation.

``Channels`` resolves a cluster through the registry (passing instances only) and keeps
one channel per cluster over that address set, with gRPC's ``round_robin`` policy
spreading calls across the instances; when the set changes (an instance drops out or
comes back) the next call gets a channel over the new set and the old one drains. Every
channel presents this process's certificate, checks that the server is the cluster it
meant to reach (its ``<cluster>.lucid.internal`` name), sets a default deadline,
forwards the current ``x-request-id`` and trace context (``tracing``), and retries
UNAVAILABLE with exponential backoff — only for rpcs the contract marks idempotent
(``idempotency_level``), so a write is never sent twice. Each cluster's calls pass its
circuit breaker (``breaker``): while it is open they fail at once with UNAVAILABLE
``LUCID_ERR_5007`` without reaching the upstream. Health checks (``HEALTH_METHODS``)
bypass the breaker. A channel reconnects to an upstream that went away within half a
second of it listening again.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from lucid.lib.clock import Clock
from lucid.runtime import tls, tracing
from lucid.runtime.breaker import Breakers, CircuitBreaker, CircuitOpenError, Ticket
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
RECONNECT_BACKOFF_MS = (100, 500)
"""First and largest pause between reconnection attempts to an upstream that went away."""
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
    tracing.inject(metadata)
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


HEALTH_METHODS = frozenset(
    {
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/lucid.gateway.v1.GatewayService/GetHealth",
    }
)
"""Health checks: they bypass the breaker (never refused by it, never counted by it), so
that health reports what the upstream says, not what the breaker remembers."""


def _method_name(details: grpc.aio.ClientCallDetails) -> str:
    method = details.method
    return method.decode() if isinstance(method, bytes) else str(method)


class _Guard:
    """What every outgoing call passes: request-id propagation and the cluster's breaker."""

    def __init__(self, breaker: CircuitBreaker, caller: str) -> None:
        self.breaker = breaker
        self.caller = caller

    def admit(self, details: grpc.aio.ClientCallDetails) -> Ticket | None:
        """The breaker's ticket for the call (``None``: a health check, not guarded)."""
        if _method_name(details) in HEALTH_METHODS:
            return None
        try:
            return self.breaker.acquire()
        except CircuitOpenError:
            raise self.breaker.open_error(self.caller) from None

    async def settle(self, call: Any, ticket: Ticket | None) -> Any:
        """Waits for a call that returns one response and counts its outcome."""
        if ticket is None:
            return call
        try:
            code = await call.code()
        except asyncio.CancelledError:  # the caller's task was cancelled: cancel the call too
            call.cancel()
            self.breaker.record(grpc.StatusCode.CANCELLED, ticket)
            raise
        self.breaker.record(code, ticket)
        return call

    def watch(self, call: Any, ticket: Ticket | None) -> Any:
        """Counts the outcome of a streaming call when it ends."""
        if ticket is None:
            return call

        def done(finished: Any) -> None:
            task = asyncio.ensure_future(self.settle(finished, ticket))
            _PENDING.add(task)
            task.add_done_callback(_PENDING.discard)

        call.add_done_callback(done)
        return call


_PENDING: set[asyncio.Future[Any]] = set()


class _GuardUnary(_Guard, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        ticket = self.admit(details)
        call = await continuation(_with_request_id(details), request)
        return await self.settle(call, ticket)


class _GuardUnaryStream(_Guard, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        ticket = self.admit(details)
        return self.watch(await continuation(_with_request_id(details), request), ticket)


class _GuardStreamUnary(_Guard, grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_unary(
        self, continuation: Callable[..., Any], details: Any, requests: Any
    ) -> Any:
        ticket = self.admit(details)
        return self.watch(await continuation(_with_request_id(details), requests), ticket)


class _GuardStreamStream(_Guard, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_stream(
        self, continuation: Callable[..., Any], details: Any, requests: Any
    ) -> Any:
        ticket = self.admit(details)
        return self.watch(await continuation(_with_request_id(details), requests), ticket)


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
        # gRPC's default reconnect backoff grows to 120 s; on a mesh whose upstreams
        # restart in about a second, reconnect within half a second instead.
        ("grpc.initial_reconnect_backoff_ms", RECONNECT_BACKOFF_MS[0]),
        ("grpc.min_reconnect_backoff_ms", RECONNECT_BACKOFF_MS[0]),
        ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MS[1]),
    ]


class Channels:
    """One mTLS channel per cluster, for the identity this process runs as."""

    def __init__(
        self,
        settings: Settings,
        *,
        identity: str,
        registry: Registry,
        catalog: Catalog,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self.identity = identity
        self.breakers = Breakers(clock)
        self.registry = registry
        self.catalog = catalog
        self.credentials = tls.channel_credentials(tls.CertPaths.of(settings.certs_dir, identity))
        self._channels: dict[str, tuple[str, grpc.aio.Channel]] = {}
        self._direct: dict[tuple[str, str], grpc.aio.Channel] = {}
        self._draining: set[asyncio.Task[None]] = set()

    DRAIN_S = 30.0
    """How long a replaced channel keeps serving the calls already on it."""

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
        breaker = self.breakers.of(cluster)
        options = channel_options(
            self.settings, cluster, service_config(self.catalog, cluster, timeout)
        )
        interceptors = [
            kind(breaker, self.identity)
            for kind in (_GuardUnary, _GuardUnaryStream, _GuardStreamUnary, _GuardStreamStream)
        ]
        channel = self._open(target, options, interceptors)
        self._channels[cluster] = (target, channel)
        if current is not None:
            task = asyncio.create_task(current[1].close(grace=self.DRAIN_S))
            self._draining.add(task)
            task.add_done_callback(self._draining.discard)
        return channel

    def _open(
        self, target: str, options: list[tuple[str, Any]], interceptors: list[Any]
    ) -> grpc.aio.Channel:
        if self.settings.sidecar:
            # Behind an Envoy sidecar, its outbound listener on loopback does the mTLS.
            return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
        return grpc.aio.secure_channel(
            target, self.credentials, options=options, interceptors=interceptors
        )

    def direct(self, cluster: str, target: str) -> grpc.aio.Channel:
        """A channel to one instance of ``cluster`` at ``target`` (``host:port``), not
        through the registry nor a breaker: for probing instances one by one (health of
        each chain validator)."""
        key = (cluster, target)
        channel = self._direct.get(key)
        if channel is None:
            timeout = SLOW_CLUSTERS.get(cluster, self.settings.call_timeout_s)
            options = channel_options(
                self.settings, cluster, service_config(self.catalog, cluster, timeout)
            )
            channel = self._direct[key] = self._open(target, options, [])
        return channel

    async def stub(self, cluster: str, stub_class: Callable[[grpc.aio.Channel], StubT]) -> StubT:
        """A generated stub bound to ``cluster``'s channel."""
        return stub_class(await self.channel(cluster))

    async def close(self) -> None:
        """Closes every channel."""
        for channel in [c for _, c in self._channels.values()] + list(self._direct.values()):
            await channel.close()
        self._channels.clear()
        self._direct.clear()
        for task in list(self._draining):
            task.cancel()
        await asyncio.gather(*self._draining, return_exceptions=True)
