"""Distributed traces: an OpenTelemetry span per rpc served, its context carried between
clusters in gRPC metadata (W3C ``traceparent``/``tracestate``), with the request id.

Off by default: until a tracer provider is installed no span is made, and the pipeline
pays one check per call. ``configure`` installs one that exports over OTLP/HTTP when
``Settings.otlp_endpoint`` is set (``lucid serve`` calls it); tests ``install`` an SDK
provider with the SDK's in-memory exporter. The pipeline starts a SERVER span for each
Lucid rpc (``server_span``), its parent the context the caller sent — the edge passes a
client's ``traceparent`` header on as metadata — and the channel layer adds the span's
context to every outgoing call (``inject``), so one request's spans form one trace across
clusters. Each span carries ``lucid.request_id`` and ``lucid.cluster``.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableSequence
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from lucid.runtime.config import Settings

REQUEST_ID_ATTRIBUTE = "lucid.request_id"
CLUSTER_ATTRIBUTE = "lucid.cluster"
_propagator = TraceContextTextMapPropagator()
_span_var: ContextVar[Span | None] = ContextVar("lucid_span", default=None)


class _State:
    tracer: Tracer | None = None


def install(provider: trace.TracerProvider | None) -> None:
    """Turns tracing on with ``provider`` (off with None)."""
    _State.tracer = None if provider is None else provider.get_tracer("lucid.runtime.pipeline")


def configure(settings: Settings, cluster: str) -> TracerProvider | None:
    """Turns tracing on for a cluster process when ``otlp_endpoint`` is set: spans are
    batched and sent over OTLP/HTTP (protobuf) as service ``lucid-<cluster>``."""
    if not settings.otlp_endpoint:
        return None
    provider = TracerProvider(resource=Resource.create({"service.name": f"lucid-{cluster}"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(settings.otlp_endpoint)))
    install(provider)
    return provider


def active() -> bool:
    """Whether spans are made."""
    return _State.tracer is not None


def server_span(
    method: str, metadata: Mapping[str, Any], request_id: str, cluster: str
) -> Span | None:
    """Starts the span of an rpc being served (None while tracing is off), as a child of
    the context in its metadata, and makes it the current call's span."""
    tracer = _State.tracer
    if tracer is None:
        return None
    parent = _propagator.extract(carrier={k: str(v) for k, v in metadata.items()})
    span = tracer.start_span(
        method,
        context=parent,
        kind=SpanKind.SERVER,
        attributes={
            "rpc.system": "grpc",
            "rpc.method": method,
            REQUEST_ID_ATTRIBUTE: request_id,
            CLUSTER_ATTRIBUTE: cluster,
        },
    )
    _span_var.set(span)
    return span


def end_span(span: Span, status: str, reason: str = "") -> None:
    """Ends an rpc's span with its gRPC status (an error unless OK or CANCELLED)."""
    span.set_attribute("rpc.grpc.status_code", status)
    if reason:
        span.set_attribute("lucid.reason", reason)
    if status not in {"OK", "CANCELLED"}:
        span.set_status(Status(StatusCode.ERROR, reason or status))
    span.end()


def inject(metadata: MutableSequence[tuple[str, str]]) -> None:
    """Adds the current call's trace context to an outgoing call's metadata."""
    if _State.tracer is None:
        return
    span = _span_var.get()
    if span is None:
        return
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=trace.set_span_in_context(span))
    present = {key for key, _ in metadata}
    metadata.extend((k, v) for k, v in carrier.items() if k not in present)
