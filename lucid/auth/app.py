"""Cluster 09, authentication: wiring of the auth server.

Owns the collections of ``lucid.auth.schema`` and the Redis prefix ``lucid:auth:``
(challenges, login sessions, rate limits, and the revocation list every server
checks, see ``lucid.runtime.tokens``).
"""

from __future__ import annotations

import asyncio

from lucid.auth import keystore, schema
from lucid.auth.accounts import Accounts
from lucid.auth.core import AuthCore
from lucid.auth.login_sessions import LoginSessions
from lucid.auth.servicers.auth import AuthServicer
from lucid.auth.signin import SignIn
from lucid.auth.store.audit import AuditStore
from lucid.auth.store.cache import ChallengeStore, TokenBlacklist
from lucid.auth.store.links import MagicLinkStore, Outbox
from lucid.auth.store.login_sessions import SessionStore
from lucid.auth.store.ownership import OwnershipStore
from lucid.auth.store.users import UserStore
from lucid.auth.store.wallets import WalletRecordStore
from lucid.auth.tokens import TokenIssuer
from lucid.auth.v1 import auth_pb2_grpc
from lucid.auth.wallets import software
from lucid.auth.wallets.manager import HardwareWallets
from lucid.lib.sealing import Sealer
from lucid.runtime.audit import AuditTrail
from lucid.runtime.limits import RateLimiter
from lucid.runtime.revocations import RedisRevocationList
from lucid.runtime.server import ClusterApp, Runtime
from lucid.runtime.tokens import CallbackKeySource, TokenVerifier

COLLECTIONS = schema.COLLECTIONS
SOFTWARE_WALLET_FILE = "software-wallet.json"


def key_store(runtime: Runtime, sealer: Sealer | None = None) -> keystore.SigningKeyStore:
    """The signing-key store of this runtime's database."""
    sealer = sealer or Sealer(runtime.settings.sealing_passphrase())
    return keystore.SigningKeyStore(
        runtime.datastores.db[keystore.COLLECTION], sealer, runtime.clock
    )


async def core(runtime: Runtime) -> AuthCore:
    """Every part of the auth cluster, wired to this runtime's stores and clock."""
    settings, clock = runtime.settings, runtime.clock
    db, redis = runtime.datastores.db, runtime.datastores.cache
    sealer = Sealer(settings.sealing_passphrase())
    keys = key_store(runtime, sealer)
    jwks = CallbackKeySource(keys.jwks)
    users = UserStore(db)
    limits = RateLimiter(redis, clock, "auth")
    sessions = LoginSessions(
        store=SessionStore(db, redis),
        users=users,
        issuer=TokenIssuer(keys, clock),
        refresh_verifier=TokenVerifier(
            jwks, revocations=None, clock=clock, refresh_s=settings.jwks_refresh_s
        ),
        blacklist=TokenBlacklist(redis),
        limits=limits,
        clock=clock,
    )
    wallet = await asyncio.to_thread(
        software.load_or_create, settings.secrets_dir / SOFTWARE_WALLET_FILE, sealer
    )
    wallets = HardwareWallets([software.SoftwareWalletBackend([wallet])])
    audit_store = AuditStore(db)
    return AuthCore(
        keys=keys,
        clock=clock,
        signin=SignIn(
            users=users,
            challenges=ChallengeStore(redis),
            limits=limits,
            sessions=sessions,
            wallets=wallets,
            wallet_records=WalletRecordStore(db),
            links=MagicLinkStore(db),
            outbox=Outbox(db),
            sealer=sealer,
            clock=clock,
        ),
        sessions=sessions,
        accounts=Accounts(users, sessions, OwnershipStore(db), clock, runtime.events),
        auditor=AuditTrail(db[schema.AUDIT], clock),
        audit_store=audit_store,
        wallets=wallets,
        limits=limits,
        verifier=TokenVerifier(
            jwks,
            revocations=RedisRevocationList(redis),
            clock=clock,
            refresh_s=settings.jwks_refresh_s,
        ),
    )


async def build(runtime: Runtime) -> ClusterApp:
    """The auth server: its servicer, and tokens verified against its own key store."""
    parts = await core(runtime)

    async def ensure_key() -> None:
        await parts.keys.current()

    return ClusterApp(
        servicers=[(auth_pb2_grpc.add_AuthServiceServicer_to_server, AuthServicer(parts))],
        collections=COLLECTIONS,
        key_source=CallbackKeySource(parts.keys.jwks),
        on_ready=[ensure_key],
    )
