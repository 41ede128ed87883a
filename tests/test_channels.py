"""Client channels: retries only for idempotent rpcs, default deadlines, request ids
propagated to downstream calls."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from lucid.auth import app as auth_app
from lucid.auth.servicers.auth import AuthServicer
from lucid.auth.v1 import auth_pb2, auth_pb2_grpc
from lucid.runtime.channels import Channels
from lucid.runtime.config import Settings
from lucid.runtime.context import request_id_var
from lucid.runtime.contracts import catalog
from lucid.runtime.registry import StaticRegistry
from lucid.runtime.server import ClusterApp, Runtime
from lucid.runtime.tokens import CallbackKeySource
from lucid.sessions.v1 import sessions_pb2, sessions_pb2_grpc
from lucid.supervisor.localservers import free_port
from tests.support import Mesh, bearer, details


class Flaky(AuthServicer):
    """Fails the first ``failures`` calls of each rpc with UNAVAILABLE; records request ids."""

    def __init__(self, core, failures: int, delay_s: float = 0.0) -> None:  # type: ignore[no-untyped-def]
        super().__init__(core)
        self.failures = failures
        self.delay_s = delay_s
        self.calls: dict[str, int] = {}
        self.request_ids: list[str] = []

    async def _maybe_fail(self, name: str, context: grpc.aio.ServicerContext) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        self.request_ids.append(dict(context.invocation_metadata()).get("x-request-id", ""))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.calls[name] <= self.failures:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "try again")

    async def GetJwks(self, request, context):  # type: ignore[no-untyped-def]
        await self._maybe_fail("GetJwks", context)
        return await super().GetJwks(request, context)

    async def IssueChallenge(self, request, context):  # type: ignore[no-untyped-def]
        await self._maybe_fail("IssueChallenge", context)
        return auth_pb2.IssueChallengeResponse(message="m", nonce="n")


@pytest.fixture
async def flaky_mesh(settings: Settings) -> AsyncIterator[tuple[Mesh, Flaky]]:
    own = settings.replace(
        ports={**settings.ports, "auth": free_port(), "sessions": free_port()}, call_timeout_s=10.0
    )
    holder: dict[str, Flaky] = {}

    async def build(runtime: Runtime) -> ClusterApp:
        core = await auth_app.core(runtime)
        holder["servicer"] = Flaky(core, failures=2)
        return ClusterApp(
            servicers=[(auth_pb2_grpc.add_AuthServiceServicer_to_server, holder["servicer"])],
            collections=auth_app.COLLECTIONS,
            key_source=CallbackKeySource(core.keys.jwks),
            on_ready=[core.keys.current],
        )

    mesh = Mesh(own)
    await mesh.start("auth", build)
    try:
        yield mesh, holder["servicer"]
    finally:
        await mesh.stop_all()


def _channels(settings: Settings) -> Channels:
    return Channels(
        settings, identity="sessions", registry=StaticRegistry(settings), catalog=catalog()
    )


async def test_idempotent_rpc_is_retried(flaky_mesh: tuple[Mesh, Flaky]) -> None:
    mesh, flaky = flaky_mesh
    channels = _channels(mesh.settings)
    try:
        stub = await channels.stub("auth", auth_pb2_grpc.AuthServiceStub)
        reply = await stub.GetJwks(auth_pb2.GetJwksRequest())
    finally:
        await channels.close()
    assert reply.keys
    assert flaky.calls["GetJwks"] == 3


async def test_non_idempotent_rpc_is_not_retried(flaky_mesh: tuple[Mesh, Flaky]) -> None:
    mesh, flaky = flaky_mesh
    channels = _channels(mesh.settings)
    try:
        stub = await channels.stub("auth", auth_pb2_grpc.AuthServiceStub)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.IssueChallenge(
                auth_pb2.IssueChallengeRequest(tron_address="TJw1nrK1G5ugxRAuVPUFTcHrSZM8AjjKaH")
            )
    finally:
        await channels.close()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert flaky.calls["IssueChallenge"] == 1


async def test_default_deadline_applies(flaky_mesh: tuple[Mesh, Flaky]) -> None:
    mesh, flaky = flaky_mesh
    flaky.failures, flaky.delay_s = 0, 3.0
    channels = _channels(mesh.settings.replace(call_timeout_s=0.5))
    try:
        stub = await channels.stub("auth", auth_pb2_grpc.AuthServiceStub)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.IssueChallenge(
                auth_pb2.IssueChallengeRequest(tron_address="TJw1nrK1G5ugxRAuVPUFTcHrSZM8AjjKaH")
            )
    finally:
        await channels.close()
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_request_id_of_the_current_call_is_propagated(flaky_mesh: tuple[Mesh, Flaky]) -> None:
    mesh, flaky = flaky_mesh
    flaky.failures = 0
    channels = _channels(mesh.settings)
    token = request_id_var.set("outer-request-7")
    try:
        stub = await channels.stub("auth", auth_pb2_grpc.AuthServiceStub)
        await stub.GetJwks(auth_pb2.GetJwksRequest())
    finally:
        request_id_var.reset(token)
        await channels.close()
    assert flaky.request_ids[-1] == "outer-request-7"


async def test_request_id_flows_through_a_servicer_to_its_downstream_call(
    flaky_mesh: tuple[Mesh, Flaky],
) -> None:
    """sessions serves a call and calls auth while doing it: auth sees the same id."""
    mesh, flaky = flaky_mesh
    flaky.failures = 0

    class Sessions(sessions_pb2_grpc.SessionServiceServicer):
        def __init__(self, runtime: Runtime) -> None:
            self.runtime = runtime

        async def ListSessions(self, request, context):  # type: ignore[no-untyped-def]
            stub = await self.runtime.channels.stub("auth", auth_pb2_grpc.AuthServiceStub)
            await stub.GetJwks(auth_pb2.GetJwksRequest())
            return sessions_pb2.ListSessionsResponse()

    async def build(runtime: Runtime) -> ClusterApp:
        return ClusterApp(
            servicers=[(sessions_pb2_grpc.add_SessionServiceServicer_to_server, Sessions(runtime))]
        )

    await mesh.start("sessions", build)
    token = await mesh.token()
    async with mesh.channel("sessions") as channel:
        await sessions_pb2_grpc.SessionServiceStub(channel).ListSessions(
            sessions_pb2.ListSessionsRequest(),
            metadata=(*bearer(token), ("x-request-id", "end-to-end-1")),
        )
    assert "end-to-end-1" in flaky.request_ids


async def test_unknown_cluster_cannot_be_resolved(settings: Settings) -> None:
    channels = _channels(settings)
    with pytest.raises(LookupError):
        await channels.channel("no-such-cluster")


async def test_downstream_error_passes_through_with_its_details(
    flaky_mesh: tuple[Mesh, Flaky],
) -> None:
    """A servicer that lets a downstream failure escape forwards its status, not INTERNAL."""
    mesh, _ = flaky_mesh

    class Sessions(sessions_pb2_grpc.SessionServiceServicer):
        def __init__(self, runtime: Runtime) -> None:
            self.runtime = runtime

        async def GetSession(self, request, context):  # type: ignore[no-untyped-def]
            stub = await self.runtime.channels.stub("auth", auth_pb2_grpc.AuthServiceStub)
            await stub.GetProfile(auth_pb2.GetProfileRequest())  # no token: 2001 from auth
            return sessions_pb2.GetSessionResponse()

    async def build(runtime: Runtime) -> ClusterApp:
        return ClusterApp(
            servicers=[(sessions_pb2_grpc.add_SessionServiceServicer_to_server, Sessions(runtime))]
        )

    await mesh.stop("sessions")
    await mesh.start("sessions", build)
    token = await mesh.token()
    async with mesh.channel("sessions") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await sessions_pb2_grpc.SessionServiceStub(channel).GetSession(
                sessions_pb2.GetSessionRequest(session_id="0b5a3d38-9a8f-4a47-8f4e-0e8f5a1c2b3d"),
                metadata=bearer(token),
            )
    info = details(caught.value)
    assert info.domain == "lucid.auth"
    assert info.reason in {"LUCID_ERR_2001", "LUCID_ERR_2013"}
