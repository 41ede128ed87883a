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

import importlib
from collections.abc import Mapping, MutableSequence
from contextvars import ContextVar
from types import ModuleType
from typing import Any

from lucid.runtime.config import Settings

REQUEST_ID_ATTRIBUTE = "lucid.request_id"
CLUSTER_ATTRIBUTE = "lucid.cluster"
_span_var: ContextVar[Any] = ContextVar("lucid_span", default=None)


class _State:
    """Tracing's state; OpenTelemetry itself is imported only when tracing is turned on
    (its import reads package metadata and takes a noticeable part of a second)."""

    tracer: Any = None
    trace: ModuleType | None = None
    propagator: Any = None


def install(provider: Any) -> None:
    """Turns tracing on with ``provider`` (an OpenTelemetry ``TracerProvider``; off with
    None)."""
    if provider is None:
        _State.tracer = None
        return
    _State.trace = importlib.import_module("opentelemetry.trace")
    tracecontext = importlib.import_module("opentelemetry.trace.propagation.tracecontext")
    _State.propagator = tracecontext.TraceContextTextMapPropagator()
    _State.tracer = provider.get_tracer("lucid.runtime.pipeline")


def configure(settings: Settings, cluster: str) -> Any:
    """Turns tracing on for a cluster process when ``otlp_endpoint`` is set: spans are
    batched and sent over OTLP/HTTP (protobuf) as service ``lucid-<cluster>``. Returns the
    SDK's ``TracerProvider`` (to shut down at exit), or None. The SDK and the exporter are
    imported only then: they take seconds to import, which a process tracing nothing
    should not pay."""
    if not settings.otlp_endpoint:
        return None
    sdk = importlib.import_module("opentelemetry.sdk.trace")
    export = importlib.import_module("opentelemetry.sdk.trace.export")
    resources = importlib.import_module("opentelemetry.sdk.resources")
    otlp = importlib.import_module("opentelemetry.exporter.otlp.proto.http.trace_exporter")
    provider = sdk.TracerProvider(
        resource=resources.Resource.create({"service.name": f"lucid-{cluster}"})
    )
    provider.add_span_processor(
        export.BatchSpanProcessor(otlp.OTLPSpanExporter(settings.otlp_endpoint))
    )
    install(provider)
    return provider


def active() -> bool:
    """Whether spans are made."""
    return _State.tracer is not None


def server_span(method: str, metadata: Mapping[str, Any], request_id: str, cluster: str) -> Any:
    """Starts the span of an rpc being served (None while tracing is off), as a child of
    the context in its metadata, and makes it the current call's span."""
    tracer, api = _State.tracer, _State.trace
    if tracer is None or api is None:
        return None
    parent = _State.propagator.extract(carrier={k: str(v) for k, v in metadata.items()})
    span = tracer.start_span(
        method,
        context=parent,
        kind=api.SpanKind.SERVER,
        attributes={
            "rpc.system": "grpc",
            "rpc.method": method,
            REQUEST_ID_ATTRIBUTE: request_id,
            CLUSTER_ATTRIBUTE: cluster,
        },
    )
    _span_var.set(span)
    return span


def end_span(span: Any, status: str, reason: str = "") -> None:
    """Ends an rpc's span with its gRPC status (an error unless OK or CANCELLED)."""
    span.set_attribute("rpc.grpc.status_code", status)
    if reason:
        span.set_attribute("lucid.reason", reason)
    api = _State.trace
    if api is not None and status not in {"OK", "CANCELLED"}:
        span.set_status(api.Status(api.StatusCode.ERROR, reason or status))
    span.end()


def inject(metadata: MutableSequence[tuple[str, str]]) -> None:
    """Adds the current call's trace context to an outgoing call's metadata."""
    api = _State.trace
    if _State.tracer is None or api is None:
        return
    span = _span_var.get()
    if span is None:
        return
    carrier: dict[str, str] = {}
    _State.propagator.inject(carrier, context=api.set_span_in_context(span))
    present = {key for key, _ in metadata}
    metadata.extend((k, v) for k, v in carrier.items() if k not in present)
