"""Verified tokens are kept until expiry and revocations are pushed to them: against the
real Redis of the test session, through auth's own revoking stores and over real gRPC."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
import jwt

from lucid.auth import app as auth_app
from lucid.auth.store.cache import TokenBlacklist
from lucid.auth.v1 import auth_pb2, auth_pb2_grpc
from lucid.runtime.datastores import Datastores
from lucid.runtime.errors import ErrorCode, LucidError
from lucid.runtime.revocations import RedisRevocationList
from lucid.runtime.tokens import CallbackKeySource, TokenVerifier
from tests.support import Mesh, bearer, details, sign_token
from tests.waiting import eventually


@contextlib.asynccontextmanager
async def _watched(mesh: Mesh) -> AsyncIterator[tuple[TokenVerifier, RedisRevocationList, object]]:
    """A verifier on auth's keys with its own revocation list, subscribed."""
    runtime = mesh.servers["auth"].runtime
    stores = Datastores(runtime.settings, mongo=False, redis=True)
    revocations = RedisRevocationList(stores.cache)
    keys = auth_app.key_store(runtime)
    verifier = TokenVerifier(CallbackKeySource(keys.jwks), revocations=revocations)
    watching = asyncio.create_task(revocations.watch())
    try:
        await eventually(revocations.epoch, what="the revocation subscription")
        yield verifier, revocations, stores.cache
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        await stores.close()


async def _fresh_token(mesh: Mesh) -> tuple[str, str]:
    key = await auth_app.key_store(mesh.servers["auth"].runtime).current()
    token = sign_token(key.private_key, key.kid)
    return token, jwt.decode(token, options={"verify_signature": False})["jti"]


async def _refused(verifier: TokenVerifier, token: str) -> bool:
    try:
        await verifier.verify(token)
    except LucidError as error:
        return error.code == ErrorCode.ERROR_CODE_TOKEN_REVOKED
    return False


async def test_a_checked_token_asks_redis_no_more_and_hears_its_revocation(mesh: Mesh) -> None:
    async with _watched(mesh) as (verifier, revocations, redis):
        token, jti = await _fresh_token(mesh)
        user = await verifier.verify(token)
        assert user.jti == jti
        # a key set behind auth's back (no message) is not read again for a checked token
        await redis.set(f"lucid:auth:blacklist:{jti}", "silent", ex=60)  # type: ignore[attr-defined]
        assert (await verifier.verify(token)).jti == jti
        # auth's blacklist publishes: the kept token is refused once the message arrives
        other, other_jti = await _fresh_token(mesh)
        await verifier.verify(other)
        await TokenBlacklist(redis).add(other_jti, 60, "logout")
        assert await eventually(lambda: _refused(verifier, other), what="the pushed revocation")
        assert revocations.heard(other_jti, "")


async def test_a_lost_subscription_sends_every_check_back_to_redis(mesh: Mesh) -> None:
    async with _watched(mesh) as (verifier, revocations, redis):
        token, jti = await _fresh_token(mesh)
        await verifier.verify(token)
        first = revocations.epoch()
        await redis.set(f"lucid:auth:blacklist:{jti}", "silent", ex=60)  # type: ignore[attr-defined]
        # the server drops the subscriber: messages may have been missed, so the kept
        # token is checked against Redis again and the silent key is found
        await redis.client_kill_filter(_type="pubsub")  # type: ignore[attr-defined]
        await eventually(
            lambda: revocations.epoch() not in (None, first), what="a new subscription"
        )
        assert await _refused(verifier, token)


async def test_a_cached_token_is_refused_by_the_pipeline_after_revocation(mesh: Mesh) -> None:
    """Through the pipeline: a token is accepted (its user does not exist: NOT_FOUND from
    the servicer, so authentication passed) and kept; auth's blacklist revokes it, and
    the server refuses it with 2008 from then on."""
    async with mesh.channel("auth") as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        token = await mesh.token()

        async def status() -> tuple[grpc.StatusCode, str]:
            try:
                await stub.GetProfile(auth_pb2.GetProfileRequest(), metadata=bearer(token))
            except grpc.aio.AioRpcError as error:
                return error.code(), details(error).reason
            return grpc.StatusCode.OK, ""

        assert (await status())[0] == grpc.StatusCode.NOT_FOUND
        assert (await status())[0] == grpc.StatusCode.NOT_FOUND  # now from the kept token
        jti = jwt.decode(token, options={"verify_signature": False})["jti"]
        redis = mesh.servers["auth"].runtime.datastores.cache
        await TokenBlacklist(redis).add(jti, 60, "logout")

        async def refused() -> bool:
            return await status() == (grpc.StatusCode.UNAUTHENTICATED, "LUCID_ERR_2008")

        assert await eventually(refused, what="the revoked token refused")
