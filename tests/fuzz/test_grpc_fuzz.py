"""Property-based fuzzing of every rpc of the contract over gRPC (issue 14): requests
generated from the descriptors (valid-shaped with boundary values, empty, and protobuf
no parser may accept), over mTLS as an anonymous tool, with a token of each role, and as each
cluster the rpc names as a service caller. Whatever comes in: never UNKNOWN or INTERNAL,
never UNIMPLEMENTED (every rpc of the contract is built: none answers ``LUCID_ERR_5011``), a
malformed message is never accepted, and a rejected request changes nothing the owning
cluster stores (its collections' document counts and its Redis keys; an audit entry
recording the refusal is the audit trail at work, not a change).

Hypothesis drives a synchronous property from a worker thread; each request runs on the
test's event loop, where the servers live. Examples are bounded per rpc so that the
module runs in about two minutes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings

from lucid.common.v1 import access_pb2
from lucid.runtime.config import CLUSTERS, Settings
from lucid.runtime.contracts import MethodInfo, catalog
from lucid.runtime.errors import ErrorDetails
from lucid.runtime.identity import cluster_from_enum
from lucid.supervisor.localservers import free_port
from tests.fuzz import state
from tests.fuzz.messages import never_valid_protobuf, request_bytes
from tests.support import Mesh, bearer, sign_token

T = TypeVar("T")
EXAMPLES_PER_RPC = 5
BAD_CODES = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
UNARY_TIMEOUT_S = 15.0
STREAM_WAIT_S = 1.0
"""How long a server stream may stay silent: an open stream waiting for events is an
accepted request."""
ROLES = {
    "user": (access_pb2.ROLE_USER, access_pb2.KYC_STATUS_NONE),
    "node_operator": (access_pb2.ROLE_NODE_OPERATOR, access_pb2.KYC_STATUS_VERIFIED),
    "admin": (access_pb2.ROLE_ADMIN, access_pb2.KYC_STATUS_VERIFIED),
    "super_admin": (access_pb2.ROLE_SUPER_ADMIN, access_pb2.KYC_STATUS_VERIFIED),
}
"""A token of each role (a fresh user each time); the roles above a user with KYC done."""


@dataclass(frozen=True)
class Outcome:
    """What one call answered: ``OK``, an open stream, or an error with its reason."""

    code: grpc.StatusCode
    reason: str = ""
    message: str = ""


@dataclass
class GrpcFuzzer:
    """The mesh, the loop its servers run on, channels per identity and what was seen."""

    mesh: Mesh
    loop: asyncio.AbstractEventLoop
    signing: tuple[Any, str]
    channels: dict[tuple[str, str], grpc.aio.Channel] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    not_built: set[str] = field(default_factory=set)
    outcomes: Counter[str] = field(default_factory=Counter)
    last: dict[str, state.Stored] = field(default_factory=dict)
    """Per cluster, what it stored after the last request, when that was rejected."""
    calls_s: float = 0.0

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Runs a coroutine on the servers' loop (from hypothesis' worker thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=120)

    def channel(self, cluster: str, identity: str) -> grpc.aio.Channel:
        key = (cluster, identity)
        if key not in self.channels:
            self.channels[key] = self.mesh.channel(cluster, identity)
        return self.channels[key]

    def metadata(self, who: str) -> tuple[tuple[str, str], ...]:
        """A fresh user's token for ``user`` and ``admin`` (each its own rate-limit bucket)."""
        if who not in ROLES:
            return ()
        role, kyc = ROLES[who]
        key, kid = self.signing
        return bearer(sign_token(key, kid, role=role, kyc=kyc, user_id=str(uuid.uuid4())))


def _raw(data: bytes) -> bytes:
    return data


async def _call(fuzz: GrpcFuzzer, info: MethodInfo, payload: bytes, who: str) -> Outcome:
    """One call with a raw payload as ``who`` (a role over the operator's identity, or
    ``service:<cluster>`` with that cluster's identity and no token)."""
    identity = who.removeprefix("service:") if who.startswith("service:") else "operator"
    channel = fuzz.channel(info.cluster, identity)
    metadata = fuzz.metadata(who)
    try:
        if info.client_streaming:
            upload = channel.stream_unary(info.path, _raw, _raw)
            await upload(iter([payload, payload]), metadata=metadata, timeout=UNARY_TIMEOUT_S)
        elif info.server_streaming:
            stream = channel.unary_stream(info.path, _raw, _raw)(
                payload, metadata=metadata, timeout=STREAM_WAIT_S
            )
            try:
                await stream.read()
            finally:
                stream.cancel()
        else:
            unary = channel.unary_unary(info.path, _raw, _raw)
            await unary(payload, metadata=metadata, timeout=UNARY_TIMEOUT_S)
    except grpc.aio.AioRpcError as error:
        if info.server_streaming and error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return Outcome(grpc.StatusCode.OK, "open stream")
        found = ErrorDetails.from_rpc_error(error)
        return Outcome(error.code(), found.reason, found.message)
    return Outcome(grpc.StatusCode.OK)


async def _fuzz_one(
    fuzz: GrpcFuzzer, info: MethodInfo, payload: bytes, who: str, malformed: bool
) -> None:
    """One request, checked: its status, and the owning cluster's state if rejected."""
    before = fuzz.last.get(info.cluster) or await state.stored(fuzz.mesh, info.cluster)
    fuzz.last.pop(info.cluster, None)
    started = time.monotonic()
    outcome = await _call(fuzz, info, payload, who)
    fuzz.calls_s += time.monotonic() - started
    label = f"{info.path} as {who} ({payload[:40]!r}): {outcome.code.name} {outcome.reason}"
    fuzz.outcomes[outcome.code.name] += 1
    if outcome.code in BAD_CODES:
        fuzz.failures.append(f"{label}: {outcome.message[:200]}")
        return
    if outcome.code == grpc.StatusCode.UNIMPLEMENTED:
        fuzz.failures.append(f"{label}: UNIMPLEMENTED ({outcome.reason}): every rpc is built")
        fuzz.not_built.add(info.path)
    if outcome.code == grpc.StatusCode.OK:
        fuzz.last.clear()  # it may have changed any cluster (through calls of its own)
        if malformed:
            fuzz.failures.append(f"{label}: a malformed message was accepted")
        return
    after = await state.stored(fuzz.mesh, info.cluster)
    if change := after.changed_since(before):
        fuzz.failures.append(f"{label}: {change}")
    fuzz.last[info.cluster] = after  # unchanged: the next request's "before"


def _callers(info: MethodInfo) -> list[str]:
    """An anonymous tool, a token of each role; and each cluster the rule names."""
    services = [f"service:{cluster_from_enum(c)}" for c in info.access.service_callers]
    return ["anonymous", *ROLES, *services]


BOUNDED = settings(
    max_examples=EXAMPLES_PER_RPC,
    deadline=None,
    database=None,  # nothing written to .hypothesis/
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=list(HealthCheck),
)
"""A few examples per rpc and no shrinking: the whole catalog within the time budget."""


def _fuzz_rpc(fuzz: GrpcFuzzer, info: MethodInfo) -> None:
    payloads = st.one_of(
        request_bytes(info.input_type).map(lambda b: (b, False)),
        never_valid_protobuf.map(lambda b: (b, True)),
    )

    @BOUNDED
    @example(sent=(b"", False), who="admin")
    @given(sent=payloads, who=st.sampled_from(_callers(info)))
    def prop(sent: tuple[bytes, bool], who: str) -> None:
        payload, malformed = sent
        fuzz.run(_fuzz_one(fuzz, info, payload, who, malformed))

    prop()


@pytest.fixture(scope="module")
async def grpc_fuzzer(settings: Settings) -> AsyncIterator[GrpcFuzzer]:
    """All ten clusters in this process with a database of their own (no edge)."""
    from lucid.auth import app as auth_app

    own = settings.replace(
        ports={cluster: free_port() for cluster in CLUSTERS},
        mongodb_db=f"lucid_grpcfuzz_{uuid.uuid4().hex[:8]}",
    )
    mesh = Mesh(own)
    try:
        for cluster in ("auth", *(c for c in CLUSTERS if c != "auth")):
            await mesh.start(cluster)
        key = await auth_app.key_store(mesh.servers["auth"].runtime).current()
        fuzz = GrpcFuzzer(mesh, asyncio.get_running_loop(), (key.private_key, key.kid))
        yield fuzz
        for channel in fuzz.channels.values():
            await channel.close()
    finally:
        await mesh.stop_all()


async def test_every_rpc_over_grpc_never_crashes_or_changes_state_when_rejected(
    grpc_fuzzer: GrpcFuzzer,
) -> None:
    methods = sorted(catalog().methods.values(), key=lambda m: m.path)

    def run_all() -> None:
        for info in methods:
            _fuzz_rpc(grpc_fuzzer, info)

    await asyncio.to_thread(run_all)
    print(
        f"\ngrpc fuzz: {dict(grpc_fuzzer.outcomes)} ({grpc_fuzzer.calls_s:.0f} s in calls);"
        f" not built: {sorted(grpc_fuzzer.not_built)}"
    )
    assert "\n".join(grpc_fuzzer.failures) == ""
    assert sum(grpc_fuzzer.outcomes.values()) >= len(methods) * 2
    # no 5011 at all: every rpc of the contract has a servicer
    declared = set().union(*(s.pipeline.unimplemented for s in grpc_fuzzer.mesh.servers.values()))
    assert not grpc_fuzzer.not_built, sorted(grpc_fuzzer.not_built)
    assert not declared, sorted(declared)
