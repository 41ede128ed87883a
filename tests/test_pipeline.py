"""The call pipeline over real gRPC with mTLS: authentication, authorization,
validation, error mapping, request ids, and rpcs not built yet."""

from __future__ import annotations

import importlib
import time
from collections.abc import Awaitable

import grpc
import jwt
import protovalidate
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import timestamp_pb2

from lucid.auth import app as auth_app
from lucid.auth.servicers.auth import AuthServicer
from lucid.auth.v1 import auth_pb2, auth_pb2_grpc
from lucid.common.v1 import access_pb2
from lucid.lib.clock import FakeClock
from lucid.nodes.v1 import nodes_pb2, nodes_pb2_grpc
from lucid.runtime.config import Settings
from lucid.runtime.contracts import catalog
from lucid.runtime.pipeline import has_rules, needs_checks
from lucid.runtime.server import ClusterApp, Runtime
from lucid.runtime.tokens import CallbackKeySource
from lucid.sessions.v1 import sessions_pb2, sessions_pb2_grpc
from lucid.supervisor.localservers import free_port
from tests.auth_support import clocked_auth
from tests.support import Mesh, bearer, details, operator_channel, sign_token, unsigned_token


async def _profile_error(
    mesh: Mesh, metadata: tuple[tuple[str, str], ...] = ()
) -> grpc.aio.AioRpcError:
    async with mesh.channel("auth") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await auth_pb2_grpc.AuthServiceStub(channel).GetProfile(
                auth_pb2.GetProfileRequest(), metadata=metadata
            )
    return caught.value


async def test_protected_rpc_without_token_is_unauthenticated(mesh: Mesh) -> None:
    error = await _profile_error(mesh)
    info = details(error)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert info.reason == "LUCID_ERR_2001"
    assert info.domain == "lucid.auth"
    assert info.request_id


async def test_protected_rpc_of_another_cluster_without_token(mesh: Mesh) -> None:
    await mesh.start("sessions")
    async with mesh.channel("sessions") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await sessions_pb2_grpc.SessionServiceStub(channel).ListSessions(
                sessions_pb2.ListSessionsRequest()
            )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert details(caught.value).reason == "LUCID_ERR_2001"
    assert details(caught.value).domain == "lucid.sessions"


async def test_valid_token_reaches_another_cluster(mesh: Mesh) -> None:
    """A real token from auth's key is accepted by nodes, which fetched the JWKS itself."""
    await mesh.start("nodes")
    token = await mesh.token(role=access_pb2.ROLE_NODE_OPERATOR)
    async with mesh.channel("nodes") as channel:
        reply = await nodes_pb2_grpc.NodeServiceStub(channel).ListNodes(
            nodes_pb2.ListNodesRequest(), metadata=bearer(token)
        )
    assert reply.total_size == len(reply.nodes)


async def test_token_signed_by_another_key_is_refused(mesh: Mesh) -> None:
    forged = sign_token(Ed25519PrivateKey.generate(), "not-a-lucid-key")
    info = details(await _profile_error(mesh, bearer(forged)))
    assert info.reason == "LUCID_ERR_2003"


async def test_token_with_a_known_kid_but_another_key_is_refused(mesh: Mesh) -> None:
    real = await auth_app.key_store(mesh.servers["auth"].runtime).current()
    forged = sign_token(Ed25519PrivateKey.generate(), real.kid)
    info = details(await _profile_error(mesh, bearer(forged)))
    assert info.reason == "LUCID_ERR_2003"


async def test_expired_token_is_refused(mesh: Mesh) -> None:
    key = await auth_app.key_store(mesh.servers["auth"].runtime).current()
    expired = sign_token(key.private_key, key.kid, issued_at=time.time() - 3600, ttl_s=900)
    info = details(await _profile_error(mesh, bearer(expired)))
    assert info.reason == "LUCID_ERR_2002"


async def test_alg_none_token_is_refused(mesh: Mesh) -> None:
    now = int(time.time())
    token = unsigned_token(
        {
            "iss": "lucid-auth",
            "aud": "lucid",
            "sub": "x",
            "jti": "y",
            "iat": now,
            "exp": now + 900,
            "token_type": "access",
            "role": "super_admin",
        }
    )
    info = details(await _profile_error(mesh, bearer(token)))
    assert info.reason == "LUCID_ERR_2003"


async def test_refresh_token_is_not_an_access_token(mesh: Mesh) -> None:
    key = await auth_app.key_store(mesh.servers["auth"].runtime).current()
    refresh = sign_token(key.private_key, key.kid, claims={"token_type": "refresh"})
    info = details(await _profile_error(mesh, bearer(refresh)))
    assert info.reason == "LUCID_ERR_2003"


async def test_wrong_audience_or_issuer_is_refused(mesh: Mesh) -> None:
    key = await auth_app.key_store(mesh.servers["auth"].runtime).current()
    for claims in ({"aud": "someone-else"}, {"iss": "api-gateway"}):
        token = sign_token(key.private_key, key.kid, claims=claims)
        assert details(await _profile_error(mesh, bearer(token))).reason == "LUCID_ERR_2003"


async def test_revoked_token_is_refused(mesh: Mesh) -> None:
    token = await mesh.token()
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    redis = mesh.servers["auth"].runtime.datastores.cache
    await redis.set(f"lucid:auth:blacklist:{jti}", "1", ex=60)
    info = details(await _profile_error(mesh, bearer(token)))
    assert info.reason == "LUCID_ERR_2008"


async def test_malformed_authorization_header(mesh: Mesh) -> None:
    for header in ("Basic abc", "Bearer", "Bearer not.a.jwt"):
        info = details(await _profile_error(mesh, (("authorization", header),)))
        assert info.reason in {"LUCID_ERR_2001", "LUCID_ERR_2003"}


async def test_permission_from_the_matrix_is_enforced(mesh: Mesh) -> None:
    """RotateSigningKey needs manage_system_config: a user is refused, a super admin is not."""
    user = await mesh.token(role=access_pb2.ROLE_USER)
    admin = await mesh.token(role=access_pb2.ROLE_ADMIN)
    async with mesh.channel("auth") as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        for token in (user, admin):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.RotateSigningKey(
                    auth_pb2.RotateSigningKeyRequest(), metadata=bearer(token)
                )
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
            info = details(caught.value)
            assert info.reason == "LUCID_ERR_2004"
            assert info.metadata["required_permission"] == "manage_system_config"


async def test_service_identity_alone_only_reaches_rpcs_listing_it(mesh: Mesh) -> None:
    """ValidateToken lists every cluster as a caller; GetProfile lists none."""
    async with mesh.channel("auth", identity="sessions") as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        reply = await stub.ValidateToken(auth_pb2.ValidateTokenRequest(token="x"))
        assert not reply.valid  # allowed in; the token itself is refused
        assert reply.reason == "LUCID_ERR_2003"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetProfile(auth_pb2.GetProfileRequest())
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert details(caught.value).reason == "LUCID_ERR_2013"


async def test_service_only_rpc_refuses_even_a_super_admin_token(mesh: Mesh) -> None:
    token = await mesh.token(role=access_pb2.ROLE_SUPER_ADMIN)
    async with mesh.channel("auth") as channel:  # the operator identity, not a cluster
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await auth_pb2_grpc.AuthServiceStub(channel).ValidateToken(
                auth_pb2.ValidateTokenRequest(token="x"), metadata=bearer(token)
            )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert details(caught.value).reason == "LUCID_ERR_2013"


async def test_field_rule_violation_is_invalid_argument(mesh: Mesh) -> None:
    token = await mesh.token()
    async with mesh.channel("auth") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await auth_pb2_grpc.AuthServiceStub(channel).ListActiveSessions(
                auth_pb2.ListActiveSessionsRequest(page_size=5000), metadata=bearer(token)
            )
    info = details(caught.value)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.reason == "LUCID_ERR_1001"
    assert [v.field for v in info.field_violations] == ["page_size"]
    assert "1000" in info.field_violations[0].description


async def test_nested_and_repeated_field_violations_name_their_path(mesh: Mesh) -> None:
    async with mesh.channel("auth") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await auth_pb2_grpc.AuthServiceStub(channel).Register(
                auth_pb2.RegisterRequest(
                    challenge=auth_pb2.SignedChallenge(
                        tron_address="T123", message="m", signature="zz"
                    )
                )
            )
    fields = {v.field for v in details(caught.value).field_violations}
    assert fields == {"challenge.tron_address", "challenge.message", "challenge.signature"}


async def test_request_id_is_kept_and_echoed(mesh: Mesh) -> None:
    async with mesh.channel("auth") as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        call = stub.GetJwks(auth_pb2.GetJwksRequest(), metadata=(("x-request-id", "req-123"),))
        await call
        assert ("x-request-id", "req-123") in tuple(await call.trailing_metadata())
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetProfile(
                auth_pb2.GetProfileRequest(), metadata=(("x-request-id", "req-456"),)
            )
    assert details(caught.value).request_id == "req-456"
    assert ("x-request-id", "req-456") in tuple(caught.value.trailing_metadata())


async def test_missing_or_unsafe_request_id_is_replaced(mesh: Mesh) -> None:
    async with mesh.channel("auth") as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        for metadata in (
            (),
            (("x-request-id", "has spaces; and=stuff"),),
            (("x-request-id", "x" * 200),),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.GetProfile(auth_pb2.GetProfileRequest(), metadata=metadata)
            generated = details(caught.value).request_id
            assert len(generated) == 36 and generated.count("-") == 4


async def test_unexpected_exception_is_internal_without_internals(settings: Settings) -> None:
    class Broken(AuthServicer):
        async def GetJwks(
            self, request: auth_pb2.GetJwksRequest, context: grpc.aio.ServicerContext
        ) -> auth_pb2.GetJwksResponse:
            raise RuntimeError("secret detail: db password is hunter2")

    async def build(runtime: Runtime) -> ClusterApp:
        core = await auth_app.core(runtime)
        return ClusterApp(
            servicers=[(auth_pb2_grpc.add_AuthServiceServicer_to_server, Broken(core))],
            collections=auth_app.COLLECTIONS,
            key_source=CallbackKeySource(core.keys.jwks),
        )

    other = Mesh(settings.replace(ports={**settings.ports, "auth": free_port()}))
    await other.start("auth", build)
    try:
        async with other.channel("auth") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await auth_pb2_grpc.AuthServiceStub(channel).GetJwks(auth_pb2.GetJwksRequest())
    finally:
        await other.stop_all()
    info = details(caught.value)
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert info.reason == "LUCID_ERR_5001"
    assert "hunter2" not in (caught.value.details() or "")
    assert info.request_id in (caught.value.details() or "")


async def _outcome(call: Awaitable[object]) -> tuple[grpc.StatusCode, str]:
    """The status and Lucid reason a call ends with (OK and "" for an answer)."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code(), details(error).reason
    return grpc.StatusCode.OK, ""


async def test_every_rpc_of_a_contract_is_registered(mesh: Mesh) -> None:
    """The whole contract of a cluster is served: no rpc is gRPC's own "method not
    found"; one not built yet would say so with LUCID_ERR_5011 after authz."""
    await mesh.start("nodes")
    token = await mesh.token(role=access_pb2.ROLE_SUPER_ADMIN)
    checked = 0
    async with mesh.channel("nodes") as channel:
        for info in catalog().methods.values():
            if info.cluster != "nodes" or info.client_streaming or info.server_streaming:
                continue
            request_cls = catalog().message_class(info.input_type)
            call = channel.unary_unary(info.path, request_serializer=request_cls.SerializeToString)
            outcome = await _outcome(call(request_cls(), metadata=bearer(token)))
            assert outcome[0] not in {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}, info.path
            if outcome[0] == grpc.StatusCode.UNIMPLEMENTED:
                assert outcome[1] == "LUCID_ERR_5011", info.path
            checked += 1
    assert checked > 10


async def _reason(call: Awaitable[object]) -> str:
    """The Lucid reason a call failed with (``OK`` when it did not)."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return details(error).reason
    return "OK"


async def test_a_caller_admitted_before_is_still_judged_per_rpc_and_token(mesh: Mesh) -> None:
    """Admissions are kept per (peer, token, relayed mark, rpc): a token accepted for one
    rpc gains nothing on another, a refusal is never kept, and another token is judged
    on its own."""
    user = await mesh.token()
    admin = await mesh.token(role=access_pb2.ROLE_ADMIN)
    async with mesh.channel("auth") as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)

        def profile(token: str) -> Awaitable[object]:
            return stub.GetProfile(auth_pb2.GetProfileRequest(), metadata=bearer(token))

        def users(token: str) -> Awaitable[object]:
            return stub.ListUsers(auth_pb2.ListUsersRequest(), metadata=bearer(token))

        for _ in range(2):  # the second time from the kept admission
            # the user is unknown to the store: NOT_FOUND comes from the servicer, past the pipeline
            assert await _reason(profile(user)) == "LUCID_ERR_4001"
        for _ in range(2):
            assert await _reason(users(user)) == "LUCID_ERR_2004"
        assert await _reason(users(admin)) == "OK"
        assert await _reason(users(user)) == "LUCID_ERR_2004"
        forged = sign_token(Ed25519PrivateKey.generate(), "not-a-lucid-key")
        assert await _reason(profile(forged)) == "LUCID_ERR_2003"
        assert await _reason(stub.GetProfile(auth_pb2.GetProfileRequest())) == "LUCID_ERR_2001"


async def test_a_kept_admission_ends_when_its_token_expires(mesh: Mesh) -> None:
    clock = FakeClock()
    async with clocked_auth(mesh.settings, clock) as auth:
        key = await auth_app.key_store(auth.server.runtime).current()
        token = sign_token(key.private_key, key.kid, issued_at=clock.timestamp(), ttl_s=60)
        async with operator_channel(auth.settings, "auth") as channel:
            stub = auth_pb2_grpc.AuthServiceStub(channel)

            def profile() -> Awaitable[object]:
                return stub.GetProfile(auth_pb2.GetProfileRequest(), metadata=bearer(token))

            assert await _reason(profile()) == "LUCID_ERR_4001"
            clock.advance(50)
            assert await _reason(profile()) == "LUCID_ERR_4001"  # kept, still valid
            clock.advance(20)  # past its expiry and the leeway
            assert await _reason(profile()) == "LUCID_ERR_2002"
            assert await _reason(profile()) == "LUCID_ERR_2002"


def test_only_message_classes_with_rules_or_times_are_validated() -> None:
    assert not needs_checks(auth_pb2.GetProfileRequest())
    assert needs_checks(auth_pb2.IssueChallengeRequest())  # a field rule on tron_address
    assert has_rules(auth_pb2.IssueChallengeRequest.DESCRIPTOR)
    # a Timestamp nested anywhere is range-checked even without a rule
    assert needs_checks(timestamp_pb2.Timestamp())
    # no request class of the contract that protovalidate refuses empty is taken for one
    # without rules (that would skip its validation)
    refused = 0
    for info in catalog().methods.values():
        module = importlib.import_module(
            info.file.removesuffix(".proto").replace("/", ".") + "_pb2"
        )
        cls = getattr(module, info.input_type.rsplit(".", 1)[1])
        if protovalidate.collect_violations(cls()):
            refused += 1
            assert needs_checks(cls()), info.path
    assert refused > 50  # the check above saw many classes with rules
