"""The call pipeline every Lucid rpc passes through, in the order of ARCHITECTURE.md:

    request id → log → authentication → plane policy → authorization → validation
              → servicer                          └── error mapping on the way out

Around them it counts the call (``metrics``: by method and status, with its latency) and,
when tracing is on, makes its span (``tracing``: a child of the caller's trace context).

grpc.aio interceptors cannot see a call's outcome without wrapping its handler,
so the pipeline wraps each Lucid handler and runs these stages around it. It wraps
them once, as the servicers are added (``PipelinedServer``), rather than as a
``ServerInterceptor``: an interceptor costs every call an extra coroutine and the
server's slow path to find its handler (a fifth of a bare call's throughput).
``intercept_service`` still serves a server built with the pipeline as interceptor.
Health and reflection are not Lucid rpcs and pass straight through.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
import protovalidate
from grpc.aio import AbortError

from lucid.runtime import tls, tracing
from lucid.runtime.authz import authorize
from lucid.runtime.context import Principal, principal_var, request_id_var
from lucid.runtime.contracts import Catalog, MethodInfo
from lucid.runtime.envelope import (
    STREAM_ERRORS_HEADER,
    envelope_trailers,
    stream_error_marker,
)
from lucid.runtime.errors import (
    STATUS_DETAILS_KEY,
    ErrorCode,
    ErrorDetails,
    FieldViolation,
    LucidError,
)
from lucid.runtime.identity import EDGE, ServiceIdentity
from lucid.runtime.lockdown import LockdownGate
from lucid.runtime.metrics import Metrics
from lucid.runtime.planes import RELAYED_HEADER, Decision, PlanePolicy, audit, default_policy
from lucid.runtime.storeerrors import is_transient
from lucid.runtime.tokens import TokenVerifier
from lucid.runtime.wire import holds_times, out_of_range_times

log = logging.getLogger("lucid.rpc")

REQUEST_ID_HEADER = "x-request-id"
STORE_RETRY_AFTER_S = 1.0
"""What a call that met a busy store tells its caller to wait (UNAVAILABLE 5003)."""
XFCC_HEADER = "x-forwarded-client-cert"
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_REQUEST_ID_PREFIX = str(uuid.uuid4())[:24]
"""Request ids made here keep the uuid4 layout: this random process prefix and a 48-bit
counter, unique without a uuid4 (and its urandom call) per rpc."""
_request_ids = itertools.count(1)


def _field_path(violation: Any) -> str:
    parts = []
    path = violation.proto.field
    for element in path.elements if path is not None else ():  # None: a message-level rule
        part = element.field_name
        subscript = element.subscript  # index or map key of repeated/map fields
        if subscript is not None:
            part += (
                f"[{subscript.value!r}]"
                if isinstance(subscript.value, str)
                else f"[{subscript.value}]"
            )
        parts.append(part)
    return ".".join(parts)


def validate(message: Any) -> None:
    """Raises ``LucidError`` (1001, with field violations) unless the message keeps its rules;
    1004 for a ``Timestamp`` or ``Duration`` out of its type's range (no handler could
    convert it)."""
    if times := out_of_range_times(message):
        found = [FieldViolation(path, f"must be {problem}") for path, problem in times]
        raise LucidError(
            ErrorCode.ERROR_CODE_OUT_OF_RANGE,
            f"{found[0].field} out of range: {found[0].description}",
            field_violations=found,
        )
    try:
        violations = protovalidate.collect_violations(message)
    except protovalidate.CompilationError as exc:  # a broken rule in a proto: our bug
        raise RuntimeError(f"validation rules of {message.DESCRIPTOR.full_name}: {exc}") from exc
    if violations:
        found = [FieldViolation(_field_path(v), v.proto.message) for v in violations]
        first = found[0]
        raise LucidError(
            ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
            f"invalid {first.field or 'request'}: {first.description}",
            field_violations=found,
        )


@dataclass(frozen=True)
class MalformedRequest:
    """What the request deserializer hands on for bytes that are not the request message,
    so that the pipeline, not grpc's handler runner, answers (INVALID_ARGUMENT)."""

    type_name: str
    detail: str


def tolerant_deserializer(
    deserializer: Callable[[bytes], Any] | None, type_name: str
) -> Callable[[bytes], Any] | None:
    """Wraps a request deserializer so that a malformed message becomes ``MalformedRequest``
    instead of an exception grpc would log with its traceback and send as UNKNOWN."""
    if deserializer is None:
        return None

    def parse(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except Exception as exc:  # DecodeError, or anything a generated parser raises
            return MalformedRequest(type_name, f"{type(exc).__name__}: {exc}"[:200])

    return parse


RULES_PACKAGE = "buf.validate."
_CHECKED: dict[type, bool] = {}
"""Per request class: whether it can break a rule at all (``needs_checks``)."""


def _declares_rules(options: Any) -> bool:
    return any(f.full_name.startswith(RULES_PACKAGE) for f, _ in options.ListFields())


def has_rules(desc: Any) -> bool:
    """Whether messages of ``desc`` carry a protovalidate rule anywhere: on the message,
    a oneof or a field, here or in any message type reachable through its fields."""
    seen: set[str] = set()
    stack = [desc]
    while stack:
        found = stack.pop()
        if found.full_name in seen:
            continue
        seen.add(found.full_name)
        if _declares_rules(found.GetOptions()):
            return True
        if any(_declares_rules(oneof.GetOptions()) for oneof in found.oneofs):
            return True
        for item in found.fields:
            if _declares_rules(item.GetOptions()):
                return True
            if item.message_type is not None:
                stack.append(item.message_type)
    return False


def needs_checks(message: Any) -> bool:
    """Whether ``validate`` can refuse a message of this class: it has rules or can hold a
    ``Timestamp``/``Duration`` (decided once per class: a message without either skips
    validation, which would find nothing)."""
    kind = type(message)
    found = _CHECKED.get(kind)
    if found is None:
        desc = message.DESCRIPTOR
        found = _CHECKED[kind] = bool(has_rules(desc) or holds_times(desc))
    return found


def check_request(message: Any, call: Call) -> None:
    """Refuses a malformed message (1009, one WARNING line), then validates its rules."""
    if type(message) in _CHECKED and not _CHECKED[type(message)]:
        return  # a message class with nothing to check (the usual case after the first)
    if isinstance(message, MalformedRequest):
        log.warning(
            "malformed request message",
            extra={
                "method": call.path,
                "request_id": call.request_id,
                "detail": message.detail,
            },
        )
        short = message.type_name.rsplit(".", 1)[-1]
        raise LucidError(
            ErrorCode.ERROR_CODE_MALFORMED_BODY,
            f"request is not a valid {short} message",
            field_violations=[FieldViolation("body", f"not a {short} in protobuf encoding")],
        )
    if needs_checks(message):
        validate(message)


def _as_lucid(exc: BaseException, request_id: str) -> LucidError:
    """The ``LucidError`` a failed call answers with (itself if it is one)."""
    if isinstance(exc, LucidError):
        return exc
    if is_transient(exc):  # busy or unreachable: the caller may retry
        return LucidError(
            ErrorCode.ERROR_CODE_DATABASE_UNAVAILABLE,
            "the database is busy or unreachable; try again",
            retry_after_s=STORE_RETRY_AFTER_S,
        )
    return LucidError(
        ErrorCode.ERROR_CODE_INTERNAL, f"internal error; quote request id {request_id}"
    )


def _locked_down() -> LucidError:
    return LucidError(
        ErrorCode.ERROR_CODE_NOT_ALLOWED,
        "the system is in lockdown: only admins may call",
        metadata={"mode": "lockdown"},
    )


def _bare_upstream(exc: grpc.aio.AioRpcError) -> LucidError:
    """A downstream failure without a rich status (a dead or slow upstream), described."""
    code = {
        grpc.StatusCode.UNAVAILABLE: ErrorCode.ERROR_CODE_UPSTREAM_UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED: ErrorCode.ERROR_CODE_DEADLINE_EXCEEDED,
    }.get(exc.code(), ErrorCode.ERROR_CODE_UNKNOWN)
    return LucidError(code, f"upstream call failed: {exc.code().name}")


class Call:
    """One call as the pipeline tracks it."""

    __slots__ = (
        "info",
        "metadata",
        "path",
        "principal",
        "reason",
        "request_id",
        "span",
        "started",
        "status",
    )

    def __init__(
        self, info: MethodInfo, path: str, request_id: str, metadata: dict[str, Any]
    ) -> None:
        self.info = info
        self.path = path
        """``info.path``, made once per method."""
        self.request_id = request_id
        self.metadata = metadata
        self.started = time.perf_counter()
        self.principal: Principal | None = None
        self.status = grpc.StatusCode.OK
        self.reason = ""
        self.span: Any = None
        """Its trace span while tracing is on."""


ADMITTED_CACHE_SIZE = 10_000
"""Callers (peer, token, relayed mark, rpc) whose admission is kept (``CallPipeline._admit``)."""


class CallPipeline(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Runs the stages around every Lucid handler of one server."""

    def __init__(
        self,
        *,
        cluster: str,
        catalog: Catalog,
        verifier: TokenVerifier,
        metrics: Metrics,
        unimplemented: Iterable[str] = (),
        extra_methods: Iterable[MethodInfo] = (),
        planes: PlanePolicy | None = None,
        forwarded_by: ServiceIdentity | None = None,
        lockdown: LockdownGate | None = None,
    ) -> None:
        self.cluster = cluster
        self.lockdown = lockdown
        """Set where a lockdown is enforced: then only admins' user calls pass during one."""
        self.planes = planes or default_policy()
        self.forwarded_by = forwarded_by
        """The local sidecar's identity, whose ``x-forwarded-client-cert`` names the caller."""
        self.domain = f"lucid.{cluster}"
        self.catalog = catalog
        self.verifier = verifier
        self.metrics = metrics
        self.unimplemented = frozenset(unimplemented)
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}
        self.methods = {**catalog.methods, **{m.path: m for m in extra_methods}}
        self._admitted: dict[tuple[Any, ...], tuple[Principal, Decision]] = {}
        """``_admission_key`` → the principal admitted and its plane decision: a caller seen
        before skips authentication, the plane policy and the access rule (all fixed by the
        key); its token's expiry and revocation and the lockdown are still checked."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        return self.handler_for(details.method, await continuation(details))

    def handler_for(
        self, method: str, handler: grpc.RpcMethodHandler | None
    ) -> grpc.RpcMethodHandler | None:
        """The pipeline around the handler of a Lucid rpc (cached); others unchanged."""
        info = self.methods.get(method)
        if handler is None or info is None:
            return handler
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            wrapped = self._wrapped[method] = self._wrap(handler, info)
        return wrapped

    # -- stages -------------------------------------------------------------------

    def _begin(self, info: MethodInfo, path: str, context: grpc.aio.ServicerContext) -> Call:
        metadata = dict(context.invocation_metadata() or ())
        given = metadata.get(REQUEST_ID_HEADER, "")
        if not (given and _REQUEST_ID_OK.match(given)):
            given = f"{_REQUEST_ID_PREFIX}{next(_request_ids) & 0xFFFFFFFFFFFF:012x}"
        request_id_var.set(given)
        principal_var.set(None)
        self.metrics.active += 1
        call = Call(info, path, given, metadata)
        if tracing.active():
            call.span = tracing.server_span(path, metadata, given, self.cluster)
        return call

    def _peer(
        self, context: grpc.aio.ServicerContext, metadata: dict[str, Any] | None = None
    ) -> ServiceIdentity | None:
        """The caller: the mTLS peer, or behind our sidecar the identity it forwards."""
        peer = tls.peer_identity(context.auth_context())
        if self.forwarded_by is not None and peer == self.forwarded_by:
            if metadata is None:
                metadata = dict(context.invocation_metadata() or ())
            forwarded = tls.forwarded_identity(str(metadata.get(XFCC_HEADER, "")))
            if forwarded is not None:
                return forwarded
        return peer

    def _admission_key(
        self, call: Call, context: grpc.aio.ServicerContext
    ) -> tuple[Any, ...] | None:
        """What decides a call's admission: the peer certificate's identities, the identity
        our sidecar forwards, the token, the relayed mark and the rpc (``None`` for a peer
        without identities: never kept)."""
        ids = context.peer_identities()
        if not ids:
            return None
        metadata = call.metadata
        return (
            tuple(ids),
            metadata.get(XFCC_HEADER, "") if self.forwarded_by is not None else "",
            metadata.get("authorization", ""),
            bool(metadata.get(RELAYED_HEADER)),
            call.path,
        )

    def _admit_kept(self, call: Call, key: tuple[Any, ...] | None) -> bool:
        """Admits a call the way a call with the same key was admitted before, when
        nothing needs a wait: its token (if any) is kept by the verifier, unexpired and
        unrevoked as pushed, and the lockdown answer is fresh. False: take ``_admit``."""
        if key is None:
            return False
        kept = self._admitted.get(key)
        if kept is None:
            return False
        principal, decision = kept
        user = principal.user
        if user is not None:
            if self.verifier.kept(principal.token) is not user:
                return False  # expired, revoked, or not kept: the full path says which
            if self.lockdown is not None and not principal.is_admin:
                locked = self.lockdown.cached()
                if locked is None:
                    return False
                if locked:
                    raise _locked_down()
        call.principal = principal
        principal_var.set(principal)
        audit(decision, principal.peer, call.info, call.request_id)
        return True

    async def _admit(
        self, call: Call, context: grpc.aio.ServicerContext, key: tuple[Any, ...] | None
    ) -> None:
        """Authentication, plane policy, access rule and lockdown; a caller admitted is
        kept under ``key`` for ``_admit_kept``."""
        metadata = call.metadata
        peer = self._peer(context, metadata)
        if peer is None:
            raise LucidError(ErrorCode.ERROR_CODE_PEER_IDENTITY_INVALID, "no service identity")
        header = str(metadata.get("authorization", ""))
        relayed = bool(metadata.get(RELAYED_HEADER))  # the mark only ever takes powers away
        try:
            principal, decision = await self._decide(call, peer, header, relayed)
        except BaseException:
            if key is not None:
                self._admitted.pop(key, None)
            raise
        if key is not None:
            if len(self._admitted) >= ADMITTED_CACHE_SIZE:
                self._admitted.pop(next(iter(self._admitted)))
            self._admitted[key] = (principal, decision)
        user = principal.user
        if (
            self.lockdown is not None
            and user is not None
            and not principal.is_admin
            and await self.lockdown.admin_only()
        ):
            raise _locked_down()

    async def _decide(
        self, call: Call, peer: ServiceIdentity, header: str, relayed: bool
    ) -> tuple[Principal, Decision]:
        """Authentication, plane policy and the access rule; raises ``LucidError`` when
        refused."""
        user = None
        token = ""
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token:
                raise LucidError(ErrorCode.ERROR_CODE_UNAUTHENTICATED, "expected a Bearer token")
            token = token.strip()
            user = await self.verifier.verify(token)
        principal = Principal(peer=peer, user=user, token=token, relayed=relayed)
        call.principal = principal
        principal_var.set(principal)
        decision = self.planes.decide(peer, call.info)
        audit(decision, peer, call.info, call.request_id)
        if not decision.allowed:
            raise LucidError(
                ErrorCode.ERROR_CODE_PLANE_POLICY_DENIED,
                f"plane policy: {peer.spiffe_id} may not call {call.path} ({decision.rule})",
                metadata={"peer": peer.spiffe_id, "rule": decision.rule},
            )
        authorize(call.info.access, principal, call.path)
        return principal, decision

    def _built(self, call: Call) -> None:
        """Refuses rpcs of the contract whose servicer method does not exist yet."""
        if call.path in self.unimplemented:
            raise LucidError(
                ErrorCode.ERROR_CODE_NOT_IMPLEMENTED,
                f"{call.path} is part of the contract but not built yet",
            )

    async def _fail(
        self, call: Call, exc: BaseException, context: grpc.aio.ServicerContext
    ) -> None:
        """Maps an exception to the status sent; always raises."""
        if isinstance(exc, asyncio.CancelledError | GeneratorExit):
            call.status = grpc.StatusCode.CANCELLED
            raise exc
        if isinstance(exc, AbortError):
            call.status = context.code() or grpc.StatusCode.UNKNOWN
            raise exc
        if isinstance(exc, grpc.aio.AioRpcError):
            exc = await self._pass_through(call, exc, context)
        error = _as_lucid(exc, call.request_id)
        if error is not exc and is_transient(exc):  # busy or unreachable: the caller may retry
            log.warning(
                "store busy",
                extra={"request_id": call.request_id, "method": call.path, "error": str(exc)},
            )
        elif error is not exc:
            log.error(
                "unexpected error",
                exc_info=exc,
                extra={"request_id": call.request_id, "method": call.path},
            )
        call.status, call.reason = error.grpc_status, error.reason
        status = error.to_status(
            domain=self.domain, request_id=call.request_id, service=self.cluster
        )
        await context.abort(
            error.grpc_status,
            error.message,
            trailing_metadata=(
                (STATUS_DETAILS_KEY, status.SerializeToString()),
                (REQUEST_ID_HEADER, call.request_id),
                *self._envelope(context, ErrorDetails.from_status(status), call.request_id),
            ),
        )

    def _envelope(
        self, context: grpc.aio.ServicerContext, details: ErrorDetails, request_id: str
    ) -> tuple[tuple[str, str], ...]:
        """For a call relayed by the edge: the JSON envelope its HTTP caller gets."""
        peer = self._peer(context)
        if peer is None or peer.name != EDGE:
            return ()
        return envelope_trailers(details, request_id=request_id, service=self.cluster)

    async def _pass_through(
        self, call: Call, exc: grpc.aio.AioRpcError, context: grpc.aio.ServicerContext
    ) -> LucidError:
        """A downstream failure the servicer did not handle: forward its rich status as is,
        or describe a bare one (a dead or slow upstream) with a Lucid code."""
        call.status = exc.code()
        details = [(k, v) for k, v in (exc.trailing_metadata() or ()) if k == STATUS_DETAILS_KEY]
        if not details:
            return _bare_upstream(exc)
        rich = ErrorDetails.from_rpc_error(exc)
        await context.abort(
            exc.code(),
            exc.details() or "",
            trailing_metadata=(
                *details,
                (REQUEST_ID_HEADER, call.request_id),
                *self._envelope(context, rich, call.request_id),
            ),
        )
        raise exc  # not reached: abort raises

    def _stream_error(
        self, call: Call, exc: BaseException, context: grpc.aio.ServicerContext, kind: type
    ) -> Any | None:
        """For a REST call of a server stream (marked by the edge) that fails after its
        first message: the last message, carrying the error envelope the client reads as
        the final NDJSON line (``envelope.stream_error_marker``). ``None`` otherwise."""
        if isinstance(exc, asyncio.CancelledError | GeneratorExit | AbortError):
            return None
        if not call.metadata.get(STREAM_ERRORS_HEADER):
            return None
        peer = self._peer(context)
        if peer is None or peer.name != EDGE:
            return None
        trailers = exc.trailing_metadata() if isinstance(exc, grpc.aio.AioRpcError) else None
        if isinstance(exc, grpc.aio.AioRpcError) and any(
            k == STATUS_DETAILS_KEY for k, _ in trailers or ()
        ):
            details = ErrorDetails.from_rpc_error(exc)
        else:
            error = (
                _bare_upstream(exc)
                if isinstance(exc, grpc.aio.AioRpcError)
                else _as_lucid(exc, call.request_id)
            )
            status = error.to_status(
                domain=self.domain, request_id=call.request_id, service=self.cluster
            )
            details = ErrorDetails.from_status(status)
        return stream_error_marker(kind, details, request_id=call.request_id, service=self.cluster)

    def _end(self, call: Call) -> None:
        self.metrics.active -= 1
        duration_ms = (time.perf_counter() - call.started) * 1000
        self.metrics.record(call.path, call.status.name, duration_ms)
        if call.span is not None:
            tracing.end_span(call.span, call.status.name, call.reason)
        if not log.isEnabledFor(logging.INFO):
            return
        log.info(
            "rpc",
            extra={
                "method": call.path,
                "request_id": call.request_id,
                "principal": call.principal.display if call.principal else "",
                "status": call.status.name,
                "reason": call.reason,
                "duration_ms": round(duration_ms, 3),
            },
        )

    # -- handler shapes ---------------------------------------------------------------

    def _wrap(self, handler: grpc.RpcMethodHandler, info: MethodInfo) -> grpc.RpcMethodHandler:
        args = {
            "request_deserializer": tolerant_deserializer(
                handler.request_deserializer, info.input_type
            ),
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._unary_unary(handler.unary_unary, info), **args
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._unary_stream(handler.unary_stream, info), **args
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._stream_unary(handler.stream_unary, info), **args
            )
        return grpc.stream_stream_rpc_method_handler(
            self._stream_stream(handler.stream_stream, info), **args
        )

    def _trailers(self, call: Call, context: grpc.aio.ServicerContext) -> None:
        context.set_trailing_metadata(((REQUEST_ID_HEADER, call.request_id),))

    async def _validated(self, requests: AsyncIterator[Any], call: Call) -> AsyncIterator[Any]:
        async for request in requests:
            check_request(request, call)
            yield request

    def _unary_unary(self, inner: Any, info: MethodInfo) -> Any:
        path = info.path

        async def behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
            call = self._begin(info, path, context)
            try:
                key = self._admission_key(call, context)
                if not self._admit_kept(call, key):
                    await self._admit(call, context, key)
                check_request(request, call)
                self._built(call)
                response = await inner(request, context)
                self._trailers(call, context)
                return response
            except BaseException as exc:
                await self._fail(call, exc, context)
            finally:
                self._end(call)

        return behavior

    def _unary_stream(self, inner: Any, info: MethodInfo) -> Any:
        path = info.path

        async def behavior(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            call = self._begin(info, path, context)
            kind: type | None = None  # the response type, once a message went out
            try:
                key = self._admission_key(call, context)
                if not self._admit_kept(call, key):
                    await self._admit(call, context, key)
                check_request(request, call)
                self._built(call)
                async for response in inner(request, context):
                    kind = type(response)
                    yield response
                self._trailers(call, context)
            except BaseException as exc:
                marker = None if kind is None else self._stream_error(call, exc, context, kind)
                if marker is not None:
                    yield marker
                await self._fail(call, exc, context)
            finally:
                self._end(call)

        return behavior

    def _stream_unary(self, inner: Any, info: MethodInfo) -> Any:
        path = info.path

        async def behavior(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
            call = self._begin(info, path, context)
            try:
                key = self._admission_key(call, context)
                if not self._admit_kept(call, key):
                    await self._admit(call, context, key)
                self._built(call)
                response = await inner(self._validated(requests, call), context)
                self._trailers(call, context)
                return response
            except BaseException as exc:
                await self._fail(call, exc, context)
            finally:
                self._end(call)

        return behavior

    def _stream_stream(self, inner: Any, info: MethodInfo) -> Any:
        path = info.path

        async def behavior(
            requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
        ) -> AsyncIterator[Any]:
            call = self._begin(info, path, context)
            try:
                key = self._admission_key(call, context)
                if not self._admit_kept(call, key):
                    await self._admit(call, context, key)
                self._built(call)
                async for response in inner(self._validated(requests, call), context):
                    yield response
                self._trailers(call, context)
            except BaseException as exc:
                await self._fail(call, exc, context)
            finally:
                self._end(call)

        return behavior


class _PipelinedHandlers(grpc.GenericRpcHandler):  # type: ignore[misc]
    """A generic handler whose Lucid handlers come wrapped in the pipeline."""

    def __init__(self, inner: grpc.GenericRpcHandler, pipeline: CallPipeline) -> None:
        self._inner = inner
        self._pipeline = pipeline

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        return self._pipeline.handler_for(details.method, self._inner.service(details))


class PipelinedServer:
    """What the generated ``add_…Servicer_to_server`` functions are given: it adds their
    handlers to ``server`` already wrapped in ``pipeline``."""

    def __init__(self, server: grpc.aio.Server, pipeline: CallPipeline) -> None:
        self._server = server
        self._pipeline = pipeline

    def add_generic_rpc_handlers(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        """Adds generic handlers, each answering with wrapped handlers."""
        self._server.add_generic_rpc_handlers(
            tuple(_PipelinedHandlers(h, self._pipeline) for h in handlers)
        )

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        """Adds the handlers of one service by method name, wrapped."""
        wrapped = {
            name: self._pipeline.handler_for(f"/{service}/{name}", handler)
            for name, handler in handlers.items()
        }
        self._server.add_registered_method_handlers(service, wrapped)
