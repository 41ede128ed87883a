"""The AuthService rpcs (spec 09). This issue builds the key store and JWKS;
the other rpcs answer UNIMPLEMENTED until the auth issue builds them."""

from __future__ import annotations

import grpc
from lucid.auth.v1 import auth_pb2, auth_pb2_grpc

from lucid.auth.keystore import SigningKeyStore


class AuthService(auth_pb2_grpc.AuthServiceServicer):
    """Sign-in, tokens and permissions."""

    def __init__(self, keys: SigningKeyStore) -> None:
        self._keys = keys

    async def GetJwks(
        self, request: auth_pb2.GetJwksRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.GetJwksResponse:
        return auth_pb2.GetJwksResponse(keys=[auth_pb2.Jwk(**k) for k in await self._keys.jwks()])

    async def RotateSigningKey(
        self, request: auth_pb2.RotateSigningKeyRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.RotateSigningKeyResponse:
        key = await self._keys.rotate()
        return auth_pb2.RotateSigningKeyResponse(
            kid=key.kid, active_kids=[k["kid"] for k in await self._keys.jwks()]
        )
