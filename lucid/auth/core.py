"""The parts of the auth cluster the rpcs use, as one bundle (wired by ``lucid.auth.app``)."""

from __future__ import annotations

from dataclasses import dataclass

from lucid.auth.accounts import Accounts
from lucid.auth.keystore import SigningKeyStore
from lucid.auth.login_sessions import LoginSessions
from lucid.auth.signin import SignIn
from lucid.auth.store.audit import AuditStore
from lucid.auth.wallets.manager import HardwareWallets
from lucid.lib.clock import Clock
from lucid.runtime.audit import AuditTrail
from lucid.runtime.limits import RateLimiter
from lucid.runtime.tokens import TokenVerifier


@dataclass
class AuthCore:
    """Everything the auth rpcs use, wired by ``lucid.auth.app``."""

    keys: SigningKeyStore
    clock: Clock
    signin: SignIn
    sessions: LoginSessions
    accounts: Accounts
    auditor: AuditTrail
    audit_store: AuditStore
    wallets: HardwareWallets
    limits: RateLimiter
    verifier: TokenVerifier
    """Verifies access tokens for ValidateToken (signature, expiry, revocation)."""
