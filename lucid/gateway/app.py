"""Cluster 01, API gateway: wiring of its server.

Its own rpcs (service info, version, the mesh's aggregated health — ``health``, which
the edge's ``/health`` delegates to —, metrics of what the edge served) and the
front-door policy: the rate limiter the edge consults (``CheckRateLimit``) and
production Envoy asks through Envoy's rate-limit service protocol. Owns the proto
package ``lucid.gateway.v1`` and the Redis prefix ``lucid:gateway:``. It serves
without Redis (limits fall back to memory, health reads degraded) and needs no
collection of its own.
"""

from __future__ import annotations

from envoy.service.ratelimit.v3 import rls_pb2_grpc

from lucid.gateway.health import HealthAggregator
from lucid.gateway.servicers.envoy_rls import ENVOY_SHOULD_RATE_LIMIT, EnvoyRateLimitServicer
from lucid.gateway.servicers.gateway import GatewayServicer
from lucid.gateway.servicers.rate_limit import RateLimitServicer
from lucid.gateway.tiers import Tiers
from lucid.gateway.traffic import TrafficLog
from lucid.gateway.v1 import gateway_pb2_grpc
from lucid.runtime.limits import RateLimiter
from lucid.runtime.server import ClusterApp, Runtime


async def build(runtime: Runtime) -> ClusterApp:
    """The gateway server."""
    stores = runtime.datastores
    limiter = RateLimiter(stores.cache, runtime.clock, "gateway")
    health = HealthAggregator(
        runtime, {d.name: d for d in stores.dependencies()}, lambda: limiter.redis_ok
    )
    tiers = Tiers(limiter)
    gateway = GatewayServicer(runtime.settings.environment, runtime.clock, TrafficLog(), health)
    return ClusterApp(
        servicers=[
            (gateway_pb2_grpc.add_GatewayServiceServicer_to_server, gateway),
            (gateway_pb2_grpc.add_RateLimitServiceServicer_to_server, RateLimitServicer(tiers)),
            (
                rls_pb2_grpc.add_RateLimitServiceServicer_to_server,
                EnvoyRateLimitServicer(tiers, runtime.clock),
            ),
        ],
        requires_mongo=False,
        requires_redis=False,
        extra_methods=[ENVOY_SHOULD_RATE_LIMIT],
    )
