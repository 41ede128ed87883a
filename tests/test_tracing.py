"""Traces: one request's spans link across clusters. A client's ``traceparent`` reaches
the Envoy edge, whose span (exported over OTLP/HTTP to a receiver here) is the parent of
the sessions span, whose call to the chain carries its context; every cluster span
names the request id. Tracing is off unless a provider is
installed; ``configure`` exports over OTLP/HTTP to the configured endpoint."""

from __future__ import annotations

import asyncio
import http.server
import os
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from lucid.auth.v1 import auth_pb2, auth_pb2_grpc
from lucid.runtime import tracing
from lucid.sessions.v1 import sessions_pb2
from lucid.supervisor.envoy import running_edge
from tests.sessionkit import SessionsEnv, start_env
from tests.support import Mesh, https_client
from tests.waiting import eventually

PROOF = "/lucid.sessions.v1.ChunkService/GetChunkProof"
CHAIN_PROOF = "/lucid.blockchain.v1.AnchoringService/GetAnchoringProof"


@pytest.fixture
def recorded() -> Iterator[tuple[InMemorySpanExporter, TracerProvider]]:
    """Tracing on, into the SDK's in-memory exporter, for one test."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter, provider
    finally:
        tracing.install(None)
        provider.shutdown()


@pytest.fixture
async def env(mesh: Mesh) -> AsyncIterator[SessionsEnv]:
    env = await start_env(mesh, mesh.settings)
    try:
        yield env
    finally:
        await env.mesh.stop_all()


class _Collector(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP trace receiver: keeps each export request it is sent."""

    received: list[tuple[str, str, bytes]] = []

    def _body(self) -> bytes:
        if self.headers["content-length"] is not None:
            return self.rfile.read(int(self.headers["content-length"]))
        body = b""  # chunked, as Envoy sends it
        while size := int(self.rfile.readline().strip().split(b";")[0], 16):
            body += self.rfile.read(size)
            self.rfile.readline()
        self.rfile.readline()
        return body

    def do_POST(self) -> None:
        body = self._body()
        self.received.append((self.path, self.headers["content-type"], body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()
        self.wfile.write(trace_service_pb2.ExportTraceServiceResponse().SerializeToString())

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def collector() -> Iterator[str]:
    """An OTLP/HTTP receiver on loopback; yields its traces URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Collector.received.clear()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    finally:
        server.shutdown()
        server.server_close()


def exported(service: str) -> list[Any]:
    """The spans the collector was sent by ``service``."""
    return [
        span
        for path, kind, body in list(_Collector.received)
        if path == "/v1/traces" and kind == "application/x-protobuf"
        for resource in trace_service_pb2.ExportTraceServiceRequest.FromString(body).resource_spans
        if any(
            a.key == "service.name" and a.value.string_value == service
            for a in resource.resource.attributes
        )
        for scope in resource.scope_spans
        for span in scope.spans
    ]


def _id(raw: bytes) -> int:
    return int.from_bytes(raw, "big")


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


async def _completed_chunk(env: SessionsEnv) -> tuple[Any, str, str]:
    md = await env.token()
    session_id = await env.recording(md)
    chunk = await env.upload(md, session_id, 1, os.urandom(2048))
    stop = sessions_pb2.StopRecordingRequest(session_id=session_id)
    await env.sessions.StopRecording(stop, metadata=md)
    await env.wait_state(md, session_id, {sessions_pb2.SESSION_STATE_COMPLETED})
    return md, session_id, chunk.chunk_id


async def test_one_request_links_edge_sessions_and_chain(
    env: SessionsEnv, recorded: tuple[InMemorySpanExporter, TracerProvider], collector: str
) -> None:
    exporter, provider = recorded
    md, session_id, chunk_id = await _completed_chunk(env)
    exporter.clear()
    request_id = str(uuid.uuid4())
    client = provider.get_tracer("tests.client")
    traced = env.settings.replace(otlp_endpoint=collector)  # the edge's spans go there
    async with running_edge(traced) as edge, https_client(env.settings) as http:
        with client.start_as_current_span("GET chunk proof", kind=SpanKind.CLIENT) as root:
            headers = {"authorization": dict(md)["authorization"], "x-request-id": request_id}
            TraceContextTextMapPropagator().inject(headers)
            url = f"{edge.url}/api/v1/sessions/{session_id}/chunks/{chunk_id}/proof"
            async with http.get(url, headers=headers) as response:
                assert response.status == 200, await response.text()
                body = await response.json()
        trace_id = root.get_span_context().trace_id
        edge_spans = await eventually(
            lambda: [s for s in exported("lucid-edge") if _id(s.trace_id) == trace_id],
            timeout_s=30,
            what="the edge's span exported",
        )
    assert body["proof"]["chunk_id"] == chunk_id
    assert body["proof"]["session_id"] == session_id

    await eventually(
        lambda: named(exporter, PROOF) and named(exporter, CHAIN_PROOF),
        timeout_s=10,
        what="the sessions and chain spans",
    )
    (served,) = named(exporter, PROOF)
    (chained,) = named(exporter, CHAIN_PROOF)
    # client → edge: Envoy's span of the request is the child of the client's
    (edge_span,) = [
        s for s in edge_spans if _id(s.parent_span_id) == root.get_span_context().span_id
    ]
    assert edge_span.kind == 2  # SPAN_KIND_SERVER: the request as the edge received it
    # the edge's own calls for this request (its rate-limit check) are its children
    assert any(_id(s.parent_span_id) == _id(edge_span.span_id) for s in edge_spans)
    # edge → sessions: Envoy passed its own span's context on as gRPC metadata
    assert served.context.trace_id == trace_id
    assert served.parent is not None
    assert served.parent.span_id == _id(edge_span.span_id)
    assert served.kind == SpanKind.SERVER
    # sessions → blockchain: the chain's span is a child of the sessions span
    assert chained.context.trace_id == trace_id
    assert chained.parent is not None
    assert chained.parent.span_id == served.context.span_id
    # the request id travels with them
    assert served.attributes is not None and chained.attributes is not None
    assert served.attributes[tracing.REQUEST_ID_ATTRIBUTE] == request_id
    assert chained.attributes[tracing.REQUEST_ID_ATTRIBUTE] == request_id
    assert served.attributes[tracing.CLUSTER_ATTRIBUTE] == "sessions"
    assert chained.attributes[tracing.CLUSTER_ATTRIBUTE] == "blockchain"
    assert served.attributes["rpc.grpc.status_code"] == "OK"
    assert served.status.status_code != StatusCode.ERROR


async def test_a_refused_call_ends_its_span_as_an_error(
    mesh: Mesh, recorded: tuple[InMemorySpanExporter, TracerProvider]
) -> None:
    exporter, provider = recorded
    with provider.get_tracer("tests.client").start_as_current_span("caller") as caller:
        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(carrier)
    async with mesh.channel("auth") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await auth_pb2_grpc.AuthServiceStub(channel).GetProfile(
                auth_pb2.GetProfileRequest(),
                metadata=(*carrier.items(), ("authorization", "Basic nope")),
                timeout=5,
            )
    assert failed.value.code() == grpc.StatusCode.UNAUTHENTICATED
    (span,) = named(exporter, "/lucid.auth.v1.AuthService/GetProfile")
    assert span.parent is not None
    assert span.parent.span_id == caller.get_span_context().span_id
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["rpc.grpc.status_code"] == "UNAUTHENTICATED"
    assert span.attributes["lucid.reason"] == "LUCID_ERR_2001"


async def test_tracing_is_off_by_default(mesh: Mesh) -> None:
    assert not tracing.active()
    assert tracing.configure(mesh.settings, "auth") is None  # no endpoint: stays off
    assert not tracing.active()
    metadata: list[tuple[str, str]] = []
    tracing.inject(metadata)
    assert metadata == []


async def test_configured_spans_are_exported_over_otlp_http(mesh: Mesh, collector: str) -> None:
    provider = tracing.configure(mesh.settings.replace(otlp_endpoint=collector), "auth")
    assert provider is not None and tracing.active()
    try:
        async with mesh.channel("auth") as channel:
            await auth_pb2_grpc.AuthServiceStub(channel).GetJwks(
                auth_pb2.GetJwksRequest(), timeout=5
            )
        assert await asyncio.to_thread(provider.force_flush, 10_000)
    finally:
        tracing.install(None)
        provider.shutdown()
    assert "/lucid.auth.v1.AuthService/GetJwks" in {s.name for s in exported("lucid-auth")}
