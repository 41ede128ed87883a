"""The front-door policy the edge applies before forwarding: who is calling, which
rate-limit tier counts the request, the gateway's verdict, and the chunk size cap.

The caller's token is verified here only to pick the tier and the identifier (a
forged token must not buy another bucket); the owning cluster verifies it again and
decides access. Tier order of spec 01 §4: admin routes for admins → admin; chunk
uploads → bandwidth per session (counted in bytes, after the chunk is read); chain
block queries → blockchain query; no valid token → public per IP; else
authenticated per user. The gateway counts (``CheckRateLimit``); while it cannot be
reached the edge counts in its own memory with the same tiers rather than letting
everything through.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import grpc
from lucid.common.v1 import access_pb2
from lucid.gateway.v1 import gateway_pb2, gateway_pb2_grpc

from lucid.lib.clock import Clock, SystemClock
from lucid.lib.ratelimit import TIERS, MemoryLimiter
from lucid.runtime.channels import Channels
from lucid.runtime.context import UserClaims
from lucid.runtime.contracts import MethodInfo
from lucid.runtime.errors import ErrorCode, LucidError
from lucid.runtime.server import RemoteJwks
from lucid.runtime.tokens import TokenVerifier

log = logging.getLogger("lucid.edge.policy")

MAX_CHUNK_BYTES = 10 * 1024 * 1024
"""Spec 01 §9: a chunk holds at most 10 MiB (10,485,760 B)."""
UPLOAD_RPCS = {"/lucid.sessions.v1.ChunkService/UploadChunk": "data"}
"""Rpcs that carry one chunk, and the field holding its bytes."""
CHECK_TIMEOUT_S = 2.0

Tier = gateway_pb2.RateLimitTier
ADMIN_PREFIXES = ("/api/v1/admin/", "/api/v1/meta/metrics", "/api/v1/meta/rate-limits")
CHAIN_QUERY_PREFIX = "/api/v1/chain/blocks"


@dataclass(frozen=True)
class Verdict:
    """The limiter's answer for one request, as the edge reports it."""

    tier: int
    allowed: bool
    limit: int
    remaining: int
    reset_at: int
    retry_after_s: int

    def headers(self) -> dict[str, str]:
        """``x-ratelimit-*`` (and ``retry-after`` when refused)."""
        headers = {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(self.remaining),
            "x-ratelimit-reset": str(self.reset_at),
        }
        if not self.allowed:
            headers["retry-after"] = str(max(1, self.retry_after_s))
        return headers

    def error(self) -> LucidError:
        """The 429 of a refused request: 3004 for bandwidth, else 3001."""
        bandwidth = self.tier == gateway_pb2.RATE_LIMIT_TIER_CHUNK_UPLOAD_BANDWIDTH
        return LucidError(
            ErrorCode.ERROR_CODE_BANDWIDTH_EXCEEDED
            if bandwidth
            else ErrorCode.ERROR_CODE_RATE_LIMITED,
            "upload bandwidth of the session exceeded"
            if bandwidth
            else "too many requests; slow down",
            metadata={"tier": _tier_name(self.tier), "limit": str(self.limit)},
            retry_after_s=max(1, self.retry_after_s),
            domain="lucid.gateway",
        )


def _tier_name(tier: int) -> str:
    return Tier.Name(tier).removeprefix("RATE_LIMIT_TIER_").lower()  # type: ignore[arg-type]


def route_path(info: MethodInfo, path: str | None) -> str:
    """The REST path a request is judged by (grpc-web calls: the rpc's first route)."""
    if path is not None:
        return path
    return info.routes[0].template if info.routes else info.path


def choose_tier(info: MethodInfo, path: str, user: UserClaims | None) -> int:
    """The request tier of spec 01 §4 (the bandwidth tier is chosen by ``UPLOAD_RPCS``)."""
    if user is not None and user.role >= access_pb2.ROLE_ADMIN and path.startswith(ADMIN_PREFIXES):
        return gateway_pb2.RATE_LIMIT_TIER_ADMIN
    if path.startswith(CHAIN_QUERY_PREFIX):
        return gateway_pb2.RATE_LIMIT_TIER_BLOCKCHAIN_QUERY
    if user is None:
        return gateway_pb2.RATE_LIMIT_TIER_PUBLIC
    return gateway_pb2.RATE_LIMIT_TIER_AUTHENTICATED


def chunk_too_large(size: int) -> LucidError:
    """``LUCID_ERR_4006``."""
    return LucidError(
        ErrorCode.ERROR_CODE_CHUNK_TOO_LARGE,
        f"chunk of {size} bytes is over the {MAX_CHUNK_BYTES}-byte limit",
        metadata={"max_bytes": str(MAX_CHUNK_BYTES)},
    )


class FrontDoor:
    """Identifies callers and asks the gateway whether their requests may pass."""

    def __init__(self, channels: Channels, clock: Clock | None = None) -> None:
        self.channels = channels
        self.clock = clock or SystemClock()
        self.verifier = TokenVerifier(
            RemoteJwks(channels),
            revocations=None,
            clock=self.clock,
            refresh_s=channels.settings.jwks_refresh_s,
        )
        self.memory = MemoryLimiter()
        self.local_decisions = 0

    async def caller(self, authorization: str) -> UserClaims | None:
        """The verified user of a bearer token; ``None`` for none or an invalid one."""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        try:
            return await self.verifier.verify(token.strip())
        except (LucidError, grpc.aio.AioRpcError, LookupError):
            return None

    async def check(self, tier: int, identifier: str, cost: int, route: str) -> Verdict:
        """The gateway's verdict (or this process's, while the gateway is unreachable)."""
        identifier = identifier[:128] or "unknown"
        try:
            stub = await self.channels.stub("gateway", gateway_pb2_grpc.RateLimitServiceStub)
            reply = await stub.CheckRateLimit(
                gateway_pb2.CheckRateLimitRequest(
                    tier=tier,  # type: ignore[arg-type]
                    identifier=identifier,
                    cost=cost,
                    route=route[:512],
                ),
                timeout=CHECK_TIMEOUT_S,
            )
        except (grpc.aio.AioRpcError, LookupError) as exc:
            return self._local(tier, identifier, cost, exc)
        return Verdict(
            tier=tier,
            allowed=reply.allowed,
            limit=reply.limit,
            remaining=reply.remaining,
            reset_at=math.ceil(reply.reset_time.ToNanoseconds() / 1e9),
            retry_after_s=reply.retry_after_seconds,
        )

    def _local(self, tier: int, identifier: str, cost: int, exc: Exception) -> Verdict:
        self.local_decisions += 1
        if self.local_decisions == 1 or self.local_decisions % 1000 == 0:
            log.warning("gateway unreachable; limiting in the edge", extra={"error": str(exc)})
        policy = TIERS[_tier_name(tier)]
        decision = self.memory.check(
            f"{_tier_name(tier)}:{identifier}", policy, self.clock.timestamp(), max(1, cost)
        )
        return Verdict(
            tier=tier,
            allowed=decision.allowed,
            limit=decision.limit,
            remaining=decision.remaining,
            reset_at=math.ceil(decision.reset_at),
            retry_after_s=math.ceil(decision.retry_after_s),
        )
