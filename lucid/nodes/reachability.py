"""Reachability probes: the cluster dials a node agent's gRPC endpoint over mTLS.

A node agent serves ``grpc.health.v1`` on loopback with a certificate of the
mesh CA (``lucid.nodeagent``); a node is reachable when that endpoint answers
SERVING within the timeout. Used at registration (+0.2 of the verification
score) and when a node starts (an unreachable node ends in ``error``).
"""

from __future__ import annotations

from typing import Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lucid.runtime.identity import OPERATOR
from lucid.runtime.tls import dns_name

AGENT_SERVER_NAME = dns_name(OPERATOR)
"""The name in the agents' server certificate (the operator identity of the dev CA)."""


class Prober(Protocol):
    """Tells whether a node agent answers on a port."""

    async def reachable(self, port: int) -> bool:
        """Whether the agent on ``port`` answers SERVING."""
        ...


class AgentProber:
    """Probes agents on the mesh host with the cluster's own client certificate."""

    def __init__(
        self, host: str, credentials: grpc.ChannelCredentials, timeout_s: float = 2.0
    ) -> None:
        self._host = host
        self._credentials = credentials
        self._timeout_s = timeout_s
        self._channels: dict[int, grpc.aio.Channel] = {}

    async def reachable(self, port: int) -> bool:
        # Channels are kept per port (a TLS handshake per probe is the dearest part);
        # one that fails is dropped so the next probe dials afresh.
        channel = self._channels.get(port)
        if channel is None:
            channel = self._channels[port] = grpc.aio.secure_channel(
                f"{self._host}:{port}",
                self._credentials,
                options=[("grpc.ssl_target_name_override", AGENT_SERVER_NAME)],
            )
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=self._timeout_s
            )
        except grpc.aio.AioRpcError:
            await self._channels.pop(port, channel).close()
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    async def close(self) -> None:
        """Closes the kept channels."""
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
