"""The edge's HTTP server (aiohttp): REST and grpc-web → gRPC for every annotated rpc.

Every request gets a request id, the security headers, CORS for allowed origins,
the front-door policy (rate-limit tier checked with the gateway, chunk cap) and is
reported to the gateway's metrics. HTTPS with the development CA's ``edge-web``
certificate unless ``edge_tls`` is off (plain HTTP on loopback for development).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import signal
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from aiohttp import web
from google.protobuf import message as protobuf_message

from lucid.edge import grpcweb
from lucid.edge.httperrors import EdgeRunner
from lucid.edge.policy import (
    MAX_CHUNK_BYTES,
    UPLOAD_RPCS,
    FrontDoor,
    Verdict,
    choose_tier,
    chunk_too_large,
    route_path,
)
from lucid.edge.routes import Route, build_routes, find
from lucid.edge.traffic import TrafficReporter
from lucid.edge.transcode import (
    HTTP_STATUS,
    build_request,
    envelope,
    local_error,
    parse_json_body,
    to_json,
)
from lucid.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from lucid.lib.clock import Clock
from lucid.lib.sealing import Sealer
from lucid.runtime import tls
from lucid.runtime.channels import Channels
from lucid.runtime.config import Settings
from lucid.runtime.contracts import Catalog, MethodInfo, catalog
from lucid.runtime.errors import (
    STATUS_DETAILS_KEY,
    ErrorCode,
    ErrorDetails,
    FieldViolation,
    LucidError,
)
from lucid.runtime.identity import EDGE
from lucid.runtime.planes import RELAYED_HEADER, RELAYED_VALUE
from lucid.runtime.registry import create_registry

log = logging.getLogger("lucid.edge")

REQUEST_ID = "x-request-id"
REQUEST_ID_KEY = web.RequestKey("request_id", str)
ROUTE_KEY = web.RequestKey("route", str)
REASON_KEY = web.RequestKey("reason", str)
HTTP_STATUS_KEY = web.RequestKey("http_status", int)
GRPC_WEB_KEY = web.RequestKey("grpc_web", bool)
"""What the edge notes about a request while serving it (for its log line and metrics)."""
FORWARDED_HEADERS = ("authorization", "user-agent", "x-user-agent")
FORWARDED_USER_AGENT = "x-forwarded-user-agent"
"""The client's User-Agent, for the audit of the clusters behind the edge."""
MAX_CHUNK_JSON_BYTES = (MAX_CHUNK_BYTES + 2) // 3 * 4 + 64 * 1024
"""The largest JSON body that can still hold a 10 MiB chunk (base64 plus other fields)."""
MAX_CHUNK_FRAME_BYTES = MAX_CHUNK_BYTES + 64 * 1024
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
HSTS = "max-age=63072000; includeSubDomains"
CORS_ALLOW_HEADERS = (
    "authorization",
    "content-type",
    "grpc-timeout",
    "keep-alive",
    "x-grpc-web",
    "x-request-id",
    "x-user-agent",
)
CORS_EXPOSE_HEADERS = (
    "grpc-message",
    "grpc-status",
    "grpc-status-details-bin",
    "retry-after",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "x-request-id",
)
CORS_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
_TIMEOUT = re.compile(r"^(\d{1,8})([HMSmun])$")
_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def grpc_timeout(header: str) -> float | None:
    """``grpc-timeout`` (``10S``, ``500m``, …) in seconds; ``None`` when absent or malformed."""
    found = _TIMEOUT.match(header)
    return int(found.group(1)) * _TIMEOUT_UNITS[found.group(2)] if found else None


class Edge:
    """Routes REST and grpc-web requests to the clusters."""

    def __init__(
        self, settings: Settings, contracts: Catalog | None = None, clock: Clock | None = None
    ) -> None:
        self.settings = settings
        self.catalog = contracts or catalog()
        self.routes = build_routes(self.catalog)
        self.channels = Channels(
            settings,
            identity=EDGE,
            registry=create_registry(settings),
            catalog=self.catalog,
            clock=clock,
        )
        self.door = FrontDoor(self.channels, clock)
        self.traffic = TrafficReporter(self.channels)
        origins = {o.strip() for o in settings.edge_cors_origins.split(",") if o.strip()}
        self.cors_any = "*" in origins
        self.cors_origins = origins - {"*"}
        self._tasks: list[asyncio.Task[None]] = []

    # -- application -----------------------------------------------------------------

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(
            client_max_size=self.settings.max_request_bytes, middlewares=[self._around]
        )
        app.router.add_get("/health", self.health)
        app.router.add_route("*", r"/{tail:[\s\S]*}", self.handle)  # any path, newlines too
        app.on_response_prepare.append(self._headers)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._close)
        return app

    async def _start(self, _: web.Application) -> None:
        self._tasks.append(asyncio.create_task(self.traffic.run()))

    async def _close(self, _: web.Application) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.traffic.flush()
        await self.channels.close()

    def _allowed_origin(self, origin: str) -> bool:
        return bool(origin) and (self.cors_any or origin in self.cors_origins)

    @web.middleware
    async def _around(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        """Request id, CORS preflight, in-flight count, the log line and the traffic sample."""
        given = request.headers.get(REQUEST_ID, "")
        request[REQUEST_ID_KEY] = given if 0 < len(given) <= 128 else str(uuid.uuid4())
        request[ROUTE_KEY] = "unmatched"
        started = time.perf_counter()
        self.traffic.active += 1
        status = 500
        try:
            response: web.StreamResponse
            if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
                response = self._preflight(request)
            else:
                response = await self._envelope_http_errors(request, handler)
            status = response.status
            return response
        finally:
            self.traffic.active -= 1
            latency_ms = (time.perf_counter() - started) * 1000
            status = request.get(HTTP_STATUS_KEY, status)
            method = "GRPC-WEB" if request.get(GRPC_WEB_KEY) else request.method
            self.traffic.record(method, request[ROUTE_KEY], status, latency_ms)
            log.info(
                "http",
                extra={
                    "http_method": request.method,
                    "path": request.path,
                    "route": request[ROUTE_KEY],
                    "request_id": request[REQUEST_ID_KEY],
                    "status": status,
                    "reason": request.get(REASON_KEY, ""),
                    "duration_ms": round(latency_ms, 3),
                },
            )

    async def _envelope_http_errors(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        """aiohttp's own refusals (no such path, body too large) as the JSON envelope."""
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code = {
                404: ErrorCode.ERROR_CODE_NOT_FOUND,
                413: ErrorCode.ERROR_CODE_PAYLOAD_TOO_LARGE,
            }.get(exc.status, ErrorCode.ERROR_CODE_INVALID_ARGUMENT)
            return self._error(request, LucidError(code, exc.reason or "bad request"))

    async def _headers(self, request: web.Request, response: web.StreamResponse) -> None:
        """Security headers, the request id and CORS on every response (streams too)."""
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if self.settings.edge_tls:
            response.headers["Strict-Transport-Security"] = HSTS
        response.headers.setdefault(REQUEST_ID, request.get(REQUEST_ID_KEY, ""))
        origin = request.headers.get("Origin", "")
        if self._allowed_origin(origin):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = ", ".join(CORS_EXPOSE_HEADERS)
            response.headers.add("Vary", "Origin")

    def _preflight(self, request: web.Request) -> web.Response:
        origin = request.headers.get("Origin", "")
        asked = request.headers.get("Access-Control-Request-Headers", "")
        wanted = [h.strip().lower() for h in asked.split(",") if h.strip()]
        refused = [h for h in wanted if h not in CORS_ALLOW_HEADERS]
        method = request.headers["Access-Control-Request-Method"]
        for field, wrong in (
            ("origin", not self._allowed_origin(origin)),
            ("access-control-request-method", method not in CORS_METHODS),
            ("access-control-request-headers", bool(refused)),
        ):
            if wrong:
                return self._error(
                    request,
                    LucidError(
                        ErrorCode.ERROR_CODE_PERMISSION_DENIED,
                        f"CORS: {field} not allowed",
                        field_violations=[FieldViolation(field, "not allowed")],
                    ),
                )
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Methods": CORS_METHODS,
                "Access-Control-Allow-Headers": ", ".join(CORS_ALLOW_HEADERS),
                "Access-Control-Max-Age": "600",
            },
        )

    # -- shared steps ----------------------------------------------------------------

    def _error(
        self,
        request: web.Request,
        error: LucidError | ErrorDetails,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        details = local_error(error) if isinstance(error, LucidError) else error
        request_id = request[REQUEST_ID_KEY]
        domain = error.domain if isinstance(error, LucidError) else None
        service = (domain or "lucid.edge").removeprefix("lucid.")
        status, body = envelope(details, request_id=request_id, service=service or "edge")
        request[REASON_KEY] = body["error"]["code"]
        out = {REQUEST_ID: request_id, **(headers or {})}
        if details.retry_after_s is not None:
            out.setdefault("retry-after", str(max(1, round(details.retry_after_s))))
        return web.json_response(body, status=status, headers=out)

    def _metadata(self, request: web.Request) -> list[tuple[str, str]]:
        """What a relayed call carries: always the relay mark (the client's headers are
        never copied wholesale, so it cannot drop it), then the headers we forward."""
        metadata = [(RELAYED_HEADER, RELAYED_VALUE), (REQUEST_ID, request[REQUEST_ID_KEY])]
        for name in FORWARDED_HEADERS:
            if value := request.headers.get(name):
                metadata.append((name, value))
        if agent := request.headers.get("user-agent"):  # gRPC sends its own as user-agent
            metadata.append((FORWARDED_USER_AGENT, agent))
        if request.remote:
            metadata.append(("x-forwarded-for", request.remote))
        return metadata

    async def _admit(
        self, request: web.Request, info: MethodInfo, path: str | None, label: str
    ) -> Verdict | None:
        """The request-tier verdict (``None`` for uploads: they are counted in bytes)."""
        if info.path in UPLOAD_RPCS:
            return None
        user = await self.door.caller(request.headers.get("authorization", ""))
        tier = choose_tier(info, route_path(info, path), user)
        identifier = user.user_id if user else (request.remote or "unknown")
        return await self.door.check(tier, identifier, 1, label)

    async def _admit_upload(self, info: MethodInfo, message: Any, label: str) -> Verdict | None:
        """Refuses a chunk over 10 MiB (4006) and counts its bytes per session."""
        field = UPLOAD_RPCS.get(info.path)
        if field is None:
            return None
        size = len(getattr(message, field))
        if size > MAX_CHUNK_BYTES:
            raise chunk_too_large(size)
        session = str(getattr(message, "session_id", "")) or "unknown"
        return await self.door.check(
            gateway_pb2.RATE_LIMIT_TIER_CHUNK_UPLOAD_BANDWIDTH, session, size, label
        )

    async def _read(self, request: web.Request, limit: int) -> bytes:
        length = request.content_length
        if length is not None and length > limit:
            raise body_too_large(limit)
        raw = bytearray()
        while len(raw) <= limit:
            piece = await request.content.read(min(1 << 20, limit + 1 - len(raw)))
            if not piece:
                break
            raw += piece
        if len(raw) > limit:
            raise body_too_large(limit)
        return bytes(raw)

    # -- REST ------------------------------------------------------------------------

    async def _read_json(self, request: web.Request, route: Route) -> Any:
        limit = self.settings.max_request_bytes
        if route.method.path in UPLOAD_RPCS:
            length = request.content_length or 0
            if length > MAX_CHUNK_JSON_BYTES and length <= limit:
                raise chunk_too_large(length * 3 // 4)
        if not route.body:
            await self._read(request, limit)
            return None
        raw = await self._read(request, limit)
        if not raw.strip():
            return None
        if request.content_type not in ("application/json", ""):
            raise LucidError(
                ErrorCode.ERROR_CODE_UNSUPPORTED_MEDIA_TYPE,
                f"expected application/json, got {request.content_type}",
                field_violations=[FieldViolation("content-type", "not application/json")],
            )
        return parse_json_body(raw)

    async def handle(self, request: web.Request) -> web.StreamResponse:  # noqa: PLR0911
        """One REST (or grpc-web) request."""
        if request.method == "POST" and request.content_type in grpcweb.CONTENT_TYPES:
            return await self.grpc_web(request)
        found = find(self.routes, request.method, request.path)
        if found is None or not found[0].method.client_callable:
            return self._error(
                request,
                not_for_clients(found[0].method)
                if found
                else LucidError(
                    ErrorCode.ERROR_CODE_NOT_FOUND, f"no route for {request.method} {request.path}"
                ),
            )
        route, bound = found
        info = route.method
        request[ROUTE_KEY] = route.template
        label = f"{request.method} {route.template}"
        limits: dict[str, str] = {}
        try:
            verdict = await self._admit(request, info, request.path, label)
            if verdict is not None:
                limits = verdict.headers()
                if not verdict.allowed:
                    return self._error(request, verdict.error(), limits)
            body = await self._read_json(request, route)
            request_cls = self.catalog.message_class(info.input_type)
            response_cls = self.catalog.message_class(info.output_type)
            query: dict[str, list[str]] = {}
            for key, value in request.query.items():
                query.setdefault(key, []).append(value)
            message = build_request(
                request_cls, body_rule=route.body, body=body, path_values=bound, query=query
            )
            upload = await self._admit_upload(info, message, label)
            if upload is not None:
                limits = upload.headers()
                if not upload.allowed:
                    return self._error(request, upload.error(), limits)
            channel = await self.channels.channel(info.cluster)
            metadata = self._metadata(request)
            if info.server_streaming:
                return await self._stream(
                    request,
                    channel=channel,
                    path=info.path,
                    message=message,
                    response_cls=response_cls,
                    metadata=metadata,
                    headers=limits,
                )
            call = channel.unary_unary(
                info.path,
                request_serializer=type(message).SerializeToString,
                response_deserializer=response_cls.FromString,
            )
            reply = await call(message, metadata=metadata)
            payload: Any = to_json(reply)
            if route.response_body:
                payload = payload.get(route.response_body)
            return web.json_response(payload, headers=limits, dumps=_dumps)
        except LucidError as exc:
            return self._error(request, exc, limits)
        except grpc.aio.AioRpcError as exc:
            return self._error(request, ErrorDetails.from_rpc_error(exc), limits)
        except LookupError as exc:
            return self._error(
                request,
                LucidError(ErrorCode.ERROR_CODE_UPSTREAM_UNAVAILABLE, str(exc)),
                limits,
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
        headers: dict[str, str],
    ) -> web.StreamResponse:
        """A server-streaming rpc as newline-delimited JSON; a failure after the first
        message ends the stream with one error-envelope line."""
        call = channel.unary_stream(
            path,
            request_serializer=type(message).SerializeToString,
            response_deserializer=response_cls.FromString,
        )(message, metadata=metadata)
        response: web.StreamResponse | None = None
        ndjson = {"content-type": "application/x-ndjson", **headers}
        try:
            async for item in call:
                if response is None:
                    response = web.StreamResponse(headers=ndjson)
                    await response.prepare(request)
                await response.write(_dumps(to_json(item)).encode() + b"\n")
        except grpc.aio.AioRpcError as exc:
            details = ErrorDetails.from_rpc_error(exc)
            if response is None:
                return self._error(request, details, headers)
            _, body = envelope(details, request_id=request[REQUEST_ID_KEY], service="edge")
            request[HTTP_STATUS_KEY] = HTTP_STATUS.get(details.status, 500)
            await response.write(_dumps(body).encode() + b"\n")
        if response is None:
            response = web.StreamResponse(headers=ndjson)
            await response.prepare(request)
        await response.write_eof()
        return response

    # -- grpc-web ----------------------------------------------------------------------

    async def _web_trailers(
        self,
        request: web.Request,
        response: web.StreamResponse | None,
        *,
        code: grpc.StatusCode,
        message: str,
        trailing: list[tuple[str, str | bytes]],
        headers: dict[str, str],
    ) -> web.StreamResponse:
        text = grpcweb.is_text(request.content_type)
        if response is None:
            response = web.StreamResponse(
                status=200,
                headers={"content-type": grpcweb.response_type(request.content_type), **headers},
            )
            await response.prepare(request)
        trailing = [(k, v) for k, v in trailing if k != REQUEST_ID]
        trailing.append((REQUEST_ID, request[REQUEST_ID_KEY]))
        payload = grpcweb.trailers(code, message, trailing)
        await response.write(grpcweb.encode(grpcweb.frame(grpcweb.TRAILERS, payload), text))
        await response.write_eof()
        request[HTTP_STATUS_KEY] = HTTP_STATUS.get(code, 500)
        return response

    async def _web_error(
        self,
        request: web.Request,
        error: LucidError,
        headers: dict[str, str],
        response: web.StreamResponse | None = None,
    ) -> web.StreamResponse:
        status = error.to_status(
            domain=error.domain or "lucid.edge",
            request_id=request[REQUEST_ID_KEY],
            service=(error.domain or "lucid.edge").removeprefix("lucid."),
        )
        request[REASON_KEY] = error.reason
        return await self._web_trailers(
            request,
            response,
            code=error.grpc_status,
            message=error.message,
            trailing=[(STATUS_DETAILS_KEY, status.SerializeToString())],
            headers=headers,
        )

    async def grpc_web(self, request: web.Request) -> web.StreamResponse:  # noqa: PLR0911
        """One grpc-web call (unary or server streaming), binary or base64 text."""
        request[GRPC_WEB_KEY] = True
        request[ROUTE_KEY] = request.path
        info = self.catalog.methods.get(request.path)
        limits: dict[str, str] = {}
        if info is None or info.client_streaming or not info.client_callable:
            return await self._web_error(
                request,
                LucidError(
                    ErrorCode.ERROR_CODE_NOT_IMPLEMENTED,
                    f"{request.path} is not an rpc grpc-web can call",
                )
                if info is None or info.client_streaming
                else not_for_clients(info),
                limits,
            )
        label = f"GRPC-WEB {info.path}"
        try:
            verdict = await self._admit(request, info, None, label)
            if verdict is not None:
                limits = verdict.headers()
                if not verdict.allowed:
                    return await self._web_error(request, verdict.error(), limits)
            raw = await self._read(request, self.settings.max_request_bytes)
            text = grpcweb.is_text(request.content_type)
            body = grpcweb.decode_text(raw) if text else raw
            declared = grpcweb.first_frame_length(body)
            if info.path in UPLOAD_RPCS and declared and declared > MAX_CHUNK_FRAME_BYTES:
                raise chunk_too_large(declared)
            frames = grpcweb.parse_frames(body)
            data = [payload for flag, payload in frames if flag == grpcweb.DATA]
            if len(data) != 1:
                raise LucidError(
                    ErrorCode.ERROR_CODE_MALFORMED_BODY,
                    f"expected one request message, got {len(data)}",
                )
            payload = data[0]
            if info.path in UPLOAD_RPCS:
                message = self.catalog.message_class(info.input_type).FromString(payload)
                upload = await self._admit_upload(info, message, label)
                if upload is not None:
                    limits = upload.headers()
                    if not upload.allowed:
                        return await self._web_error(request, upload.error(), limits)
            channel = await self.channels.channel(info.cluster)
        except grpcweb.FrameError as exc:
            error = LucidError(ErrorCode.ERROR_CODE_MALFORMED_BODY, str(exc))
            return await self._web_error(request, error, limits)
        except protobuf_message.DecodeError:
            error = LucidError(ErrorCode.ERROR_CODE_MALFORMED_BODY, "request is not the message")
            return await self._web_error(request, error, limits)
        except LucidError as exc:
            return await self._web_error(request, exc, limits)
        except LookupError as exc:
            error = LucidError(ErrorCode.ERROR_CODE_UPSTREAM_UNAVAILABLE, str(exc))
            return await self._web_error(request, error, limits)
        return await self._web_call(request, channel, info, payload, limits)

    async def _web_call(
        self,
        request: web.Request,
        channel: grpc.aio.Channel,
        info: MethodInfo,
        payload: bytes,
        limits: dict[str, str],
    ) -> web.StreamResponse:
        text = grpcweb.is_text(request.content_type)
        timeout = grpc_timeout(request.headers.get("grpc-timeout", ""))
        metadata = self._metadata(request)
        response: web.StreamResponse | None = None
        try:
            if info.server_streaming:
                call: Any = channel.unary_stream(info.path)(
                    payload, metadata=metadata, timeout=timeout
                )
                async for item in call:
                    if response is None:
                        response = web.StreamResponse(
                            status=200,
                            headers={
                                "content-type": grpcweb.response_type(request.content_type),
                                **limits,
                            },
                        )
                        await response.prepare(request)
                    await response.write(grpcweb.encode(grpcweb.frame(grpcweb.DATA, item), text))
            else:
                call = channel.unary_unary(info.path)(payload, metadata=metadata, timeout=timeout)
                reply = await call
                response = web.StreamResponse(
                    status=200,
                    headers={"content-type": grpcweb.response_type(request.content_type), **limits},
                )
                await response.prepare(request)
                await response.write(grpcweb.encode(grpcweb.frame(grpcweb.DATA, reply), text))
            trailing = list(await call.trailing_metadata() or ())
            return await self._web_trailers(
                request,
                response,
                code=grpc.StatusCode.OK,
                message="",
                trailing=trailing,
                headers=limits,
            )
        except grpc.aio.AioRpcError as exc:
            request[REASON_KEY] = ErrorDetails.from_rpc_error(exc).reason
            return await self._web_trailers(
                request,
                response,
                code=exc.code(),
                message=exc.details() or "",
                trailing=list(exc.trailing_metadata() or ()),
                headers=limits,
            )

    # -- health ------------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        """The gateway's aggregated health (``GetHealth``, cached there, never through a
        breaker): 200 when healthy or degraded, 503 with the error envelope when not."""
        request[ROUTE_KEY] = "/health"
        try:
            stub = await self.channels.stub("gateway", gateway_pb2_grpc.GatewayServiceStub)
            reply = await stub.GetHealth(
                gateway_pb2.GetHealthRequest(), metadata=self._metadata(request), timeout=5
            )
        except grpc.aio.AioRpcError as exc:
            return self._error(request, ErrorDetails.from_rpc_error(exc))
        except LookupError as exc:
            return self._error(
                request, LucidError(ErrorCode.ERROR_CODE_UPSTREAM_UNAVAILABLE, str(exc))
            )
        return web.json_response(to_json(reply), dumps=_dumps)


def body_too_large(limit: int) -> LucidError:
    """``LUCID_ERR_1010`` (413)."""
    return LucidError(
        ErrorCode.ERROR_CODE_PAYLOAD_TOO_LARGE,
        f"request body over {limit} bytes",
        field_violations=[FieldViolation("body", f"over {limit} bytes")],
    )


def not_for_clients(info: MethodInfo) -> LucidError:
    """The refusal of an rpc clients may not call (service-only or without a public route):
    the edge never relays it."""
    return LucidError(
        ErrorCode.ERROR_CODE_PLANE_POLICY_DENIED,
        f"{info.path} is not an rpc clients may call",
        metadata={"method": info.path},
    )


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """TLS 1.3 with the edge's ``edge-web`` certificate (issued by the dev CA if missing)."""
    paths = tls.ensure_web_certificate(
        settings.certs_dir,
        Sealer(settings.sealing_passphrase()),
        settings.edge_hostnames.split(","),
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(paths.cert, paths.key)
    context.set_alpn_protocols(["http/1.1"])
    return context


def edge_url(settings: Settings, port: int | None = None) -> str:
    """The URL the edge serves (``https://localhost:8080`` by default)."""
    scheme = "https" if settings.edge_tls else "http"
    host = "localhost" if settings.host in {"127.0.0.1", "localhost"} else settings.host
    return f"{scheme}://{host}:{port or settings.edge_port}"


async def run_edge(settings: Settings, port: int | None = None) -> None:
    """Serves the edge until SIGINT or SIGTERM (``lucid edge``)."""
    edge = Edge(settings)
    runner = EdgeRunner(edge.app(), access_log=None)
    await runner.setup()
    context = ssl_context(settings) if settings.edge_tls else None
    site = web.TCPSite(runner, settings.host, port or settings.edge_port, ssl_context=context)
    await site.start()
    log.info(
        "edge serving",
        extra={
            "url": edge_url(settings, port),
            "routes": sum(map(len, edge.routes.values())),
        },
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
