"""Calls any rpc of the catalog through a front door (REST where routed, grpc-web for all)
and classifies the answer by what authorization decided; and the outcome the access rule
of the rpc predicts for a caller.

Only a base URL and the CA that signed its certificate are needed, so the same probes run
against the Python edge and against Envoy. Requests are minimal (empty bodies, path
variables of the right type): the question is only whether authorization let the call
through, i.e. whether the answer is anything but UNAUTHENTICATED or PERMISSION_DENIED.
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
import struct
import time
import uuid
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import aiohttp
from google.protobuf import descriptor

from lucid.common.v1 import access_pb2
from lucid.runtime.contracts import HttpRoute, MethodInfo, catalog

PROBE_TIMEOUT_S = 15.0
"""A call that passes authorization may stream forever (a dashboard); refusals are
immediate, so a probe that sees no answer in time has passed authorization."""


class Outcome(Enum):
    """What authorization decided, as seen from the outside."""

    UNAUTHENTICATED = "unauthenticated"
    DENIED = "denied"
    PASSED = "passed"
    RATE_LIMITED = "rate-limited"


@dataclass(frozen=True)
class Caller:
    """Who calls: the bearer token (empty for anonymous), its role and KYC status."""

    name: str
    token: str = ""
    role: int = 0
    kyc: int = 0
    user_id: str = ""
    """Bound to ``{user_id}`` path variables: the ownership check of a servicer is not
    what is probed."""


@dataclass(frozen=True)
class Probe:
    """One request and what came back."""

    method: str
    transport: str
    """``GET /api/v1/...`` or ``grpc-web``."""
    outcome: Outcome
    status: str
    """The HTTP status and Lucid code, or the grpc-status, for the failure message."""
    elapsed_s: float = 0.0


def expected(info: MethodInfo, caller: Caller, grpc_web: bool) -> Outcome:
    """What the access rule of ``info`` (and the relay rule) predicts for ``caller``."""
    rule = info.access
    if grpc_web and not info.client_callable:
        return Outcome.DENIED  # the edge relays only rpcs clients may call
    if rule.service_only:
        return Outcome.DENIED
    if rule.public:
        return Outcome.PASSED
    if not caller.token:
        return Outcome.UNAUTHENTICATED
    if not rule.permission:
        return Outcome.PASSED
    value = access_pb2.Permission.DESCRIPTOR.values_by_number[rule.permission]
    grant = value.GetOptions().Extensions[access_pb2.grant]
    if caller.role < grant.min_role:
        return Outcome.DENIED
    kyc_ok = {
        access_pb2.KYC_GATE_UNSPECIFIED: True,
        access_pb2.KYC_GATE_PENDING_OR_VERIFIED: caller.kyc
        in (access_pb2.KYC_STATUS_PENDING, access_pb2.KYC_STATUS_VERIFIED),
        access_pb2.KYC_GATE_VERIFIED: caller.kyc == access_pb2.KYC_STATUS_VERIFIED,
    }[grant.kyc]
    return Outcome.PASSED if kyc_ok else Outcome.DENIED


def _path_value(field: descriptor.FieldDescriptor | None) -> str:
    """A value of the right type for a path variable (so the front door can bind it)."""
    if field is None:
        return str(uuid.uuid4())
    kind = field.type
    if kind == descriptor.FieldDescriptor.TYPE_BOOL:
        return "true"
    if kind == descriptor.FieldDescriptor.TYPE_ENUM:
        return "1"
    if kind in (descriptor.FieldDescriptor.TYPE_STRING, descriptor.FieldDescriptor.TYPE_BYTES):
        return str(uuid.uuid4()) if kind == descriptor.FieldDescriptor.TYPE_STRING else "AAAA"
    if kind == descriptor.FieldDescriptor.TYPE_MESSAGE:
        return str(uuid.uuid4())
    return "1"  # every number type


def _field(info: MethodInfo, path: str) -> descriptor.FieldDescriptor | None:
    desc = catalog().pool.FindMessageTypeByName(info.input_type)
    field = None
    for part in path.split("."):
        if desc is None:
            return None
        field = desc.fields_by_name.get(part)
        if field is None:
            return None
        desc = field.message_type
    return field


def rest_path(info: MethodInfo, route: HttpRoute, values: dict[str, str] | None = None) -> str:
    """The route's template with every variable filled (by ``values`` or a typed value)."""

    def fill(found: re.Match[str]) -> str:
        name, _, pattern = found.group(1).partition("=")
        if values and name in values:
            return values[name]
        if pattern:
            return pattern.replace("**", "x").replace("*", "x")
        return _path_value(_field(info, name))

    return re.sub(r"\{([^}]*)\}", fill, route.template)


def grpc_web_body(payload: bytes = b"") -> bytes:
    """One data frame."""
    return struct.pack(">BI", 0, len(payload)) + payload


def grpc_web_status(headers: Any, body: bytes) -> str:
    """The grpc-status of a grpc-web answer (trailers-only in headers, or the last frame)."""
    if "grpc-status" in headers:
        return str(headers["grpc-status"])
    if headers.get("content-type", "").startswith("application/grpc-web-text"):
        body = base64.b64decode(b"".join(body.split()) + b"==="[: (-len(body)) % 4])
    offset = 0
    status = ""
    while offset + 5 <= len(body):
        flag, length = struct.unpack_from(">BI", body, offset)
        payload = body[offset + 5 : offset + 5 + length]
        offset += 5 + length
        if flag & 0x80:
            for line in payload.decode(errors="replace").split("\r\n"):
                key, _, value = line.partition(":")
                if key.strip().lower() == "grpc-status":
                    status = value.strip()
    return status


_GRPC_OUTCOME = {"16": Outcome.UNAUTHENTICATED, "7": Outcome.DENIED, "8": Outcome.RATE_LIMITED}
_HTTP_OUTCOME = {401: Outcome.UNAUTHENTICATED, 403: Outcome.DENIED, 429: Outcome.RATE_LIMITED}
STEP_UP_REQUIRED = "LUCID_ERR_2015"
"""Past the access rule: the rpc itself asks a caller it admits for a fresh TOTP step-up."""


def _step_up_demanded(headers: Any, body: bytes) -> bool:
    """Whether a grpc-web answer's status details (in its headers when trailers-only, else
    in its trailer frame) carry the step-up reason."""
    value = headers.get("grpc-status-details-bin", "").encode()
    found = base64.b64decode(value + b"=" * (-len(value) % 4)) if value else _details_bin(body)
    return STEP_UP_REQUIRED.encode() in found


def _details_bin(body: bytes) -> bytes:
    """The decoded ``grpc-status-details-bin`` of a grpc-web trailer frame, if any."""
    for line in body.split(b"\r\n"):
        if line.lower().startswith(b"grpc-status-details-bin:"):
            value = line.split(b":", 1)[1].strip()
            return base64.b64decode(value + b"=" * (-len(value) % 4))
    return b""


class FrontDoorClient:
    """Probes through one front door from one client address."""

    def __init__(self, base_url: str, ca_file: Path, local_ip: str | None = None) -> None:
        context = ssl.create_default_context(cafile=str(ca_file))
        connector = aiohttp.TCPConnector(
            ssl=context, local_addr=(local_ip, 0) if local_ip else None, limit=32
        )
        self.base_url = base_url.rstrip("/")
        self.http = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)
        )

    async def close(self) -> None:
        """Closes the connections."""
        await self.http.close()

    def _headers(self, caller: Caller, extra: dict[str, str]) -> dict[str, str]:
        headers = dict(extra)
        if caller.token:
            headers["authorization"] = f"Bearer {caller.token}"
        return headers

    async def rest(self, info: MethodInfo, route: HttpRoute, caller: Caller) -> Probe:
        """Calls one REST route with an empty body."""
        path = rest_path(info, route, {"user_id": caller.user_id} if caller.user_id else None)
        label = f"{route.verb} {route.template}"
        started = time.perf_counter()
        body = b"{}" if route.body else None
        headers = self._headers(caller, {"content-type": "application/json"} if body else {})
        try:
            async with self.http.request(
                route.verb, self.base_url + path, data=body, headers=headers
            ) as response:
                code = ""
                if response.content_type == "application/json":
                    data = await response.json()
                    if isinstance(data, dict) and isinstance(data.get("error"), dict):
                        code = str(data["error"].get("code", ""))
                else:
                    await response.content.readline()  # the first NDJSON line is enough
                status = f"HTTP {response.status} {code}".strip()
                outcome = _HTTP_OUTCOME.get(response.status, Outcome.PASSED)
                if code == STEP_UP_REQUIRED:
                    outcome = Outcome.PASSED
        except TimeoutError:
            status, outcome = "no answer in time (streaming)", Outcome.PASSED
        return Probe(info.path, label, outcome, status, time.perf_counter() - started)

    async def grpc_web(self, info: MethodInfo, caller: Caller, payload: bytes = b"") -> Probe:
        """Calls one rpc over grpc-web (binary) with an empty message."""
        started = time.perf_counter()
        headers = self._headers(
            caller, {"content-type": "application/grpc-web+proto", "x-grpc-web": "1"}
        )
        try:
            async with self.http.post(
                self.base_url + info.path, data=grpc_web_body(payload), headers=headers
            ) as response:
                if info.server_streaming and response.status == 200:
                    body = await _first_frames(response)
                else:
                    body = await response.read()
                code = grpc_web_status(response.headers, body)
                if response.status != 200 and not code:
                    outcome = _HTTP_OUTCOME.get(response.status, Outcome.PASSED)
                    status = f"HTTP {response.status}"
                else:
                    outcome = _GRPC_OUTCOME.get(code, Outcome.PASSED)
                    if _step_up_demanded(response.headers, body):
                        outcome = Outcome.PASSED
                    status = f"grpc-status {code or '(data)'}"
        except TimeoutError:
            status, outcome = "no answer in time (streaming)", Outcome.PASSED
        return Probe(info.path, "grpc-web", outcome, status, time.perf_counter() - started)


async def _first_frames(response: aiohttp.ClientResponse) -> bytes:
    """The body up to the first frame (a stream that passed may never end)."""
    body = bytearray()
    while len(body) < 5 or len(body) < 5 + struct.unpack_from(">I", body, 1)[0]:
        piece = await response.content.read(4096)
        if not piece:
            break
        body += piece
    return bytes(body)


async def gather_limited(coros: list[Any], limit: int = 12) -> list[Any]:
    """Runs coroutines with at most ``limit`` at a time, in order of results."""
    gate = asyncio.Semaphore(limit)

    async def one(coro: Any) -> Any:
        async with gate:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros))


__all__ = [
    "Caller",
    "FrontDoorClient",
    "Outcome",
    "Probe",
    "expected",
    "gather_limited",
    "grpc_web_body",
    "grpc_web_status",
    "rest_path",
]
