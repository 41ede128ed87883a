"""The agent's own gRPC endpoint: ``grpc.health.v1`` over mTLS on loopback.

The nodes cluster dials it to check that the node is reachable (registration,
start). It presents the dev CA's operator certificate and requires a client
certificate of the same CA.
"""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from lucid.runtime import tls
from lucid.runtime.config import Settings
from lucid.runtime.identity import OPERATOR


class ProbeServer:
    """A small mTLS server answering health checks."""

    def __init__(self, settings: Settings, port: int = 0) -> None:
        self._settings = settings
        self._port = port
        self._server: grpc.aio.Server | None = None
        self.port = 0

    async def start(self) -> int:
        """Serves; the port it listens on."""
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        credentials = tls.server_credentials(tls.CertPaths.of(self._settings.certs_dir, OPERATOR))
        self.port = server.add_secure_port(f"{self._settings.host}:{self._port}", credentials)
        await server.start()
        self._server = server
        return self.port

    async def stop(self) -> None:
        """Stops serving."""
        if self._server is not None:
            await self._server.stop(grace=0.5)
            self._server = None
