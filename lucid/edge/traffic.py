"""What the edge served, reported to the gateway for GetMetrics.

Every finished request adds a sample (method, route template, HTTP status, latency);
a background task sends them in batches about once a second with the number of
requests in flight. Samples wait in a bounded queue: if the gateway is down the
oldest are dropped rather than memory growing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque

import grpc
from google.protobuf import timestamp_pb2
from lucid.gateway.v1 import gateway_pb2, gateway_pb2_grpc

from lucid.runtime.channels import Channels

log = logging.getLogger("lucid.edge.traffic")

MAX_PENDING = 100_000
FLUSH_S = 1.0


class TrafficReporter:
    """Collects samples and ships them to the gateway."""

    def __init__(self, channels: Channels) -> None:
        self.channels = channels
        self.pending: deque[gateway_pb2.TrafficSample] = deque(maxlen=MAX_PENDING)
        self.active = 0
        self.edge_id = f"edge-{uuid.uuid4().hex[:8]}"

    def record(self, method: str, route: str, http_status: int, latency_ms: float) -> None:
        """Keeps one finished request."""
        finished = timestamp_pb2.Timestamp()
        finished.FromNanoseconds(time.time_ns())
        self.pending.append(
            gateway_pb2.TrafficSample(
                method=method[:16],
                route=route[:512],
                http_status=http_status,
                latency_ms=latency_ms,
                finish_time=finished,
            )
        )

    async def flush(self) -> None:
        """Sends what is pending (kept for the next try if the gateway does not answer)."""
        batch = list(self.pending)
        try:
            stub = await self.channels.stub("gateway", gateway_pb2_grpc.GatewayServiceStub)
            await stub.ReportTraffic(
                gateway_pb2.ReportTrafficRequest(
                    samples=batch, active_connections=self.active, edge_id=self.edge_id
                ),
                timeout=5,
            )
        except (grpc.aio.AioRpcError, LookupError) as exc:
            log.debug("traffic report failed", extra={"error": str(exc)})
            return
        for _ in range(len(batch)):
            self.pending.popleft()

    async def run(self) -> None:
        """Flushes forever."""
        while True:
            await asyncio.sleep(FLUSH_S)
            if self.pending or self.active:
                with contextlib.suppress(Exception):
                    await self.flush()
