"""Cluster 09, authentication: wiring of the auth server.

Owns the collections below and the Redis prefix ``lucid:auth:`` (including the
revocation list every server checks, see ``lucid.runtime.tokens``).
"""

from __future__ import annotations

from lucid.auth.v1 import auth_pb2_grpc

from lucid.auth import keystore
from lucid.auth.servicer import AuthService
from lucid.lib.sealing import Sealer
from lucid.runtime.server import ClusterApp, Runtime
from lucid.runtime.tokens import CallbackKeySource

COLLECTIONS = (keystore.SCHEMA,)


def key_store(runtime: Runtime) -> keystore.SigningKeyStore:
    """The signing-key store of this runtime's database."""
    sealer = Sealer(runtime.settings.sealing_passphrase())
    return keystore.SigningKeyStore(
        runtime.datastores.db[keystore.COLLECTION], sealer, runtime.clock
    )


async def build(runtime: Runtime) -> ClusterApp:
    """The auth server: its servicer, and tokens verified against its own key store."""
    keys = key_store(runtime)

    async def ensure_key() -> None:
        await keys.current()

    return ClusterApp(
        servicers=[(auth_pb2_grpc.add_AuthServiceServicer_to_server, AuthService(keys))],
        collections=COLLECTIONS,
        key_source=CallbackKeySource(keys.jwks),
        on_ready=[ensure_key],
    )
