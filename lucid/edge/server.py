"""The edge's HTTP server (aiohttp): REST → gRPC for every annotated rpc."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
import uuid
from typing import Any

import grpc
from aiohttp import web
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lucid.edge.routes import Route, build_routes, find
from lucid.edge.transcode import (
    build_request,
    envelope,
    local_error,
    parse_json_body,
    to_json,
)
from lucid.runtime.channels import Channels
from lucid.runtime.config import CLUSTERS, Settings
from lucid.runtime.contracts import Catalog, catalog
from lucid.runtime.errors import ErrorCode, ErrorDetails, LucidError
from lucid.runtime.identity import EDGE
from lucid.runtime.registry import create_registry

log = logging.getLogger("lucid.edge")

REQUEST_ID = "x-request-id"
FORWARDED_HEADERS = ("authorization",)
FORWARDED_USER_AGENT = "x-forwarded-user-agent"
"""The client's User-Agent (gRPC sends its own in ``user-agent``)."""


class Edge:
    """Routes REST requests to the clusters."""

    def __init__(self, settings: Settings, contracts: Catalog | None = None) -> None:
        self.settings = settings
        self.catalog = contracts or catalog()
        self.routes = build_routes(self.catalog)
        self.channels = Channels(
            settings, identity=EDGE, registry=create_registry(settings), catalog=self.catalog
        )

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(client_max_size=self.settings.max_request_bytes)
        app.router.add_get("/health", self.health)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        app.on_cleanup.append(self._close)
        return app

    async def _close(self, _: web.Application) -> None:
        await self.channels.close()

    def _error(self, error: LucidError | ErrorDetails, request_id: str) -> web.Response:
        details = local_error(error) if isinstance(error, LucidError) else error
        status, body = envelope(details, request_id=request_id, service="edge")
        headers = {REQUEST_ID: request_id}
        if details.retry_after_s is not None:
            headers["retry-after"] = str(max(1, round(details.retry_after_s)))
        return web.json_response(body, status=status, headers=headers)

    async def _read_body(self, request: web.Request, route: Route) -> Any:
        length = request.content_length
        limit = self.settings.max_request_bytes
        if length is not None and length > limit:
            raise LucidError(
                ErrorCode.ERROR_CODE_PAYLOAD_TOO_LARGE,
                f"request body over {limit} bytes",
            )
        if not route.body:
            return None
        raw = await request.content.read(limit + 1)
        if len(raw) > limit:
            raise LucidError(
                ErrorCode.ERROR_CODE_PAYLOAD_TOO_LARGE, f"request body over {limit} bytes"
            )
        if not raw.strip():
            return None
        if request.content_type not in ("application/json", ""):
            raise LucidError(
                ErrorCode.ERROR_CODE_UNSUPPORTED_MEDIA_TYPE,
                f"expected application/json, got {request.content_type}",
            )
        return parse_json_body(raw)

    def _metadata(self, request: web.Request, request_id: str) -> list[tuple[str, str]]:
        metadata = [(REQUEST_ID, request_id)]
        for name in FORWARDED_HEADERS:
            if value := request.headers.get(name):
                metadata.append((name, value))
        if agent := request.headers.get("user-agent"):
            metadata.append((FORWARDED_USER_AGENT, agent))
        if request.remote:
            metadata.append(("x-forwarded-for", request.remote))
        return metadata

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Transcodes one REST request."""
        given = request.headers.get(REQUEST_ID, "")
        request_id = given if 0 < len(given) <= 128 else str(uuid.uuid4())
        started = time.perf_counter()
        found = find(self.routes, request.method, request.path)
        if found is None:
            return self._error(
                LucidError(
                    ErrorCode.ERROR_CODE_NOT_FOUND, f"no route for {request.method} {request.path}"
                ),
                request_id,
            )
        route, bound = found
        info = route.method
        status = "OK"
        try:
            body = await self._read_body(request, route)
            request_cls = self.catalog.message_class(info.input_type)
            response_cls = self.catalog.message_class(info.output_type)
            query: dict[str, list[str]] = {}
            for key, value in request.query.items():
                query.setdefault(key, []).append(value)
            message = build_request(
                request_cls, body_rule=route.body, body=body, path_values=bound, query=query
            )
            channel = await self.channels.channel(info.cluster)
            metadata = self._metadata(request, request_id)
            if info.server_streaming:
                return await self._stream(
                    request,
                    channel=channel,
                    path=info.path,
                    message=message,
                    response_cls=response_cls,
                    metadata=metadata,
                    request_id=request_id,
                )
            call = channel.unary_unary(
                info.path,
                request_serializer=type(message).SerializeToString,
                response_deserializer=response_cls.FromString,
            )
            reply = await call(message, metadata=metadata)
            return web.json_response(to_json(reply), headers={REQUEST_ID: request_id}, dumps=_dumps)
        except LucidError as exc:
            status = exc.reason
            return self._error(exc, request_id)
        except grpc.aio.AioRpcError as exc:
            status = exc.code().name
            return self._error(ErrorDetails.from_rpc_error(exc), request_id)
        finally:
            log.info(
                "http",
                extra={
                    "http_method": request.method,
                    "path": request.path,
                    "rpc": info.path,
                    "request_id": request_id,
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                },
            )

    async def _stream(
        self,
        request: web.Request,
        *,
        channel: grpc.aio.Channel,
        path: str,
        message: Any,
        response_cls: Any,
        metadata: list[tuple[str, str]],
        request_id: str,
    ) -> web.StreamResponse:
        """A server-streaming rpc as newline-delimited JSON."""
        call = channel.unary_stream(
            path,
            request_serializer=type(message).SerializeToString,
            response_deserializer=response_cls.FromString,
        )(message, metadata=metadata)
        response: web.StreamResponse | None = None
        try:
            async for item in call:
                if response is None:
                    response = web.StreamResponse(
                        headers={"content-type": "application/x-ndjson", REQUEST_ID: request_id}
                    )
                    await response.prepare(request)
                await response.write(_dumps(to_json(item)).encode() + b"\n")
        except grpc.aio.AioRpcError as exc:
            if response is None:
                return self._error(ErrorDetails.from_rpc_error(exc), request_id)
            _, body = envelope(
                ErrorDetails.from_rpc_error(exc), request_id=request_id, service="edge"
            )
            await response.write(_dumps(body).encode() + b"\n")
        if response is None:
            response = web.StreamResponse(
                headers={"content-type": "application/x-ndjson", REQUEST_ID: request_id}
            )
            await response.prepare(request)
        await response.write_eof()
        return response

    async def health(self, request: web.Request) -> web.Response:
        """Aggregated ``grpc.health.v1`` of every cluster: 200 when all serve, else 503."""

        async def check(cluster: str) -> tuple[str, str]:
            try:
                channel = await self.channels.channel(cluster)
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=2
                )
            except grpc.aio.AioRpcError as exc:
                return cluster, f"unreachable: {exc.code().name}"
            except LookupError:
                return cluster, "unknown"
            return cluster, health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

        results = dict(await asyncio.gather(*(check(c) for c in CLUSTERS)))
        healthy = all(v == "SERVING" for v in results.values())
        return web.json_response(
            {"status": "healthy" if healthy else "unhealthy", "clusters": results},
            status=200 if healthy else 503,
        )


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


async def run_edge(settings: Settings, port: int | None = None) -> None:
    """Serves the edge until SIGINT or SIGTERM (``lucid edge``)."""
    edge = Edge(settings)
    runner = web.AppRunner(edge.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, port or settings.edge_port)
    await site.start()
    log.info(
        "edge serving",
        extra={"port": port or settings.edge_port, "routes": sum(map(len, edge.routes.values()))},
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
