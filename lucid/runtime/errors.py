"""Errors as the mesh sends them: ``google.rpc.Status`` with a Lucid code.

Servicers raise ``LucidError(ErrorCode.ERROR_CODE_…, "message")``; the call
pipeline turns it into a gRPC status whose details carry
``ErrorInfo{reason: "LUCID_ERR_NNNN", domain: "lucid.<cluster>"}``, a
``BadRequest`` for field violations and a ``RetryInfo`` for rate limits. The
gRPC status of each code is declared in ``lucid/common/v1/errors.proto``.
Clients (other clusters, the edge, tests) read it back with ``ErrorDetails``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2

from lucid.common.v1 import errors_pb2

ErrorCode = errors_pb2.ErrorCode
STATUS_DETAILS_KEY = "grpc-status-details-bin"
_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


def reason_of(code: int) -> str:
    """``4001`` → ``LUCID_ERR_4001``."""
    return f"LUCID_ERR_{code:04d}"


@cache
def status_of(code: int) -> grpc.StatusCode:
    """The gRPC status declared for an ``ErrorCode`` in the proto registry."""
    value = ErrorCode.DESCRIPTOR.values_by_number.get(code)
    if value is None:
        raise ValueError(f"{code} is not in the Lucid error registry")
    return _BY_NUMBER[value.GetOptions().Extensions[errors_pb2.status]]


@dataclass(frozen=True)
class FieldViolation:
    """One broken field rule: the field path and what is wrong with it."""

    field: str
    description: str


class LucidError(Exception):
    """A failure with a Lucid code; the pipeline sends it as a ``google.rpc.Status``."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        field_violations: Sequence[FieldViolation] = (),
        metadata: Mapping[str, str] | None = None,
        retry_after_s: float | None = None,
        domain: str | None = None,
    ) -> None:
        super().__init__(message)
        status_of(code)  # refuse codes outside the registry early
        self.code = code
        self.message = message
        self.field_violations = tuple(field_violations)
        self.metadata = dict(metadata or {})
        self.retry_after_s = retry_after_s
        self.domain = domain

    @property
    def reason(self) -> str:
        """``LUCID_ERR_NNNN``."""
        return reason_of(self.code)

    @property
    def grpc_status(self) -> grpc.StatusCode:
        """The gRPC status this error is sent with."""
        return status_of(self.code)

    def to_status(self, *, domain: str, request_id: str, service: str) -> status_pb2.Status:
        """The rich status sent in ``grpc-status-details-bin``."""
        status = status_pb2.Status(code=self.grpc_status.value[0], message=self.message)
        info = error_details_pb2.ErrorInfo(
            reason=self.reason,
            domain=self.domain or domain,
            metadata={**self.metadata, "request_id": request_id, "service": service},
        )
        status.details.add().Pack(info)
        if self.field_violations:
            bad = error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in self.field_violations
                ]
            )
            status.details.add().Pack(bad)
        if self.retry_after_s is not None:
            delay = duration_pb2.Duration()
            delay.FromNanoseconds(int(self.retry_after_s * 1e9))
            status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        return status

    def __repr__(self) -> str:
        return f"LucidError({self.reason}, {self.message!r})"


def invalid_argument(field_name: str, description: str) -> LucidError:
    """A single field violation (``LUCID_ERR_1001``)."""
    return LucidError(
        ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
        f"invalid {field_name}: {description}",
        field_violations=[FieldViolation(field_name, description)],
    )


def not_found(what: str) -> LucidError:
    """``LUCID_ERR_4001``."""
    return LucidError(ErrorCode.ERROR_CODE_NOT_FOUND, f"{what} not found")


@dataclass(frozen=True)
class ErrorDetails:
    """What a client learns from a failed call."""

    status: grpc.StatusCode
    message: str
    reason: str = ""
    domain: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    field_violations: tuple[FieldViolation, ...] = ()
    retry_after_s: float | None = None

    @property
    def code(self) -> ErrorCode.ValueType | None:
        """The Lucid error code ``reason`` names (``LUCID_ERR_NNNN``); ``None`` when it
        names none we know (a plain gRPC error, another domain's reason)."""
        number = self.reason.removeprefix("LUCID_ERR_")
        if not number.isdigit():
            return None
        value = ErrorCode.DESCRIPTOR.values_by_number.get(int(number))
        return ErrorCode.ValueType(value.number) if value is not None else None

    @property
    def request_id(self) -> str:
        """The request id the server logged the call under."""
        return self.metadata.get("request_id", "")

    @classmethod
    def from_status(cls, status: status_pb2.Status) -> ErrorDetails:
        """Reads a ``google.rpc.Status``."""
        reason = domain = ""
        metadata: dict[str, str] = {}
        violations: list[FieldViolation] = []
        retry: float | None = None
        for any_detail in status.details:
            if any_detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                any_detail.Unpack(info)
                reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
            elif any_detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                any_detail.Unpack(bad)
                violations += [FieldViolation(v.field, v.description) for v in bad.field_violations]
            elif any_detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                info_retry = error_details_pb2.RetryInfo()
                any_detail.Unpack(info_retry)
                retry = info_retry.retry_delay.ToNanoseconds() / 1e9
        return cls(
            status=_BY_NUMBER.get(status.code, grpc.StatusCode.UNKNOWN),
            message=status.message,
            reason=reason,
            domain=domain,
            metadata=metadata,
            field_violations=tuple(violations),
            retry_after_s=retry,
        )

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> ErrorDetails:
        """Reads the rich status of a failed call (or what little a plain one has)."""
        trailers = error.trailing_metadata() or ()
        for key, value in trailers:
            if key == STATUS_DETAILS_KEY:
                status = status_pb2.Status()
                status.ParseFromString(value)
                return cls.from_status(status)
        return cls(status=error.code(), message=error.details() or "")
