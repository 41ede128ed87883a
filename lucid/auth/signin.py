"""Signing in: TRON challenges and signatures, registration, magic link + TOTP, and
proving that a hardware wallet holds the user's key.

The order of the checks of a login matters and is fixed here: the address must be
valid, the client within its rate limit, the hardware wallet (if one is named)
connected; then the challenge is taken (it never works twice, whatever happens
next), a locked or suspended account is refused, the signature must recover the
address and the challenge must be the one issued to it and not expired. A failed
check of a known user counts towards the lockout.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp

from lucid.auth import challenge, policy
from lucid.auth.login_sessions import LoginSessions, Tokens
from lucid.auth.store.cache import ChallengeStore, StoredChallenge
from lucid.auth.store.links import MagicLinkStore, Outbox
from lucid.auth.store.users import UserExistsError, UserRecord, UserStore
from lucid.auth.store.wallets import WalletRecord, WalletRecordStore
from lucid.auth.wallets.manager import HardwareWallets
from lucid.lib import tron
from lucid.lib.clock import Clock
from lucid.lib.sealing import Sealer
from lucid.runtime.audit import Client, Event
from lucid.runtime.errors import ErrorCode, FieldViolation, LucidError
from lucid.runtime.limits import RateLimiter

TOTP_ISSUER = "Lucid"
MAGIC_LINK_KIND = "magic_link"


def check_address(address: str, field: str = "tron_address") -> None:
    """Raises INVALID_ARGUMENT (``LUCID_ERR_1006``) unless ``address`` is a TRON address."""
    try:
        tron.decode_address(address)
    except tron.InvalidAddressError as exc:
        raise LucidError(
            ErrorCode.ERROR_CODE_INVALID_FORMAT,
            f"invalid {field}: {exc}",
            field_violations=[FieldViolation(field, f"{exc} ({exc.reason})")],
        ) from None


@dataclass(frozen=True)
class SignedChallenge:
    """What a client sends to prove a TRON key."""

    tron_address: str
    message: str
    signature: str


@dataclass(frozen=True)
class IssuedChallenge:
    """A challenge handed out."""

    message: str
    nonce: str
    expires_at: datetime


class SignIn:
    """Every way of signing in, and the checks they share."""

    def __init__(
        self,
        *,
        users: UserStore,
        challenges: ChallengeStore,
        limits: RateLimiter,
        sessions: LoginSessions,
        wallets: HardwareWallets,
        wallet_records: WalletRecordStore,
        links: MagicLinkStore,
        outbox: Outbox,
        sealer: Sealer,
        clock: Clock,
    ) -> None:
        self.users = users
        self.challenges = challenges
        self.limits = limits
        self.sessions = sessions
        self.wallets = wallets
        self.wallet_records = wallet_records
        self.links = links
        self.outbox = outbox
        self._sealer = sealer
        self._clock = clock

    # -- challenges ------------------------------------------------------------------

    async def issue_challenge(self, tron_address: str, client: Client) -> IssuedChallenge:
        """A one-time challenge for an address, kept 300 s."""
        check_address(tron_address)
        await self.limits.enforce(policy.CHALLENGE_LIMIT, client.ip)
        now = self._clock.now()
        nonce = challenge.new_nonce()
        message = challenge.message_for(now, nonce)
        expires_at = now + timedelta(seconds=policy.CHALLENGE_TTL_S)
        await self.challenges.put(
            nonce,
            StoredChallenge(tron_address, message, expires_at.timestamp()),
            policy.CHALLENGE_TTL_S,
        )
        return IssuedChallenge(message, nonce, expires_at)

    async def _verify(self, signed: SignedChallenge, user: UserRecord | None) -> None:
        """Takes the challenge and checks the signature; failures of a user count."""
        nonce = challenge.nonce_of(signed.message)
        stored = await self.challenges.take(nonce) if nonce else None
        try:
            if not challenge.signed_by(signed.tron_address, signed.message, signed.signature):
                raise LucidError(
                    ErrorCode.ERROR_CODE_SIGNATURE_INVALID,
                    "the signature was not made by the key of this address over this message",
                )
            if (
                stored is None
                or stored.tron_address != signed.tron_address
                or stored.message != signed.message
                or self._clock.timestamp() >= stored.expires_at
            ):
                raise LucidError(
                    ErrorCode.ERROR_CODE_CHALLENGE_INVALID,
                    "the challenge is unknown, already used or expired; ask for a new one",
                )
        except LucidError:
            if user is not None:
                await self._failed(user)
            raise

    async def _failed(self, user: UserRecord) -> None:
        now = self._clock.now()
        await self.users.record_failure(
            user.user_id,
            now,
            max_failures=policy.MAX_FAILED_LOGINS,
            lockout_until=now + policy.LOCKOUT,
        )

    def _refuse_account(self, user: UserRecord) -> None:
        if user.suspended:
            state = "banned" if user.banned else "suspended"
            raise LucidError(
                ErrorCode.ERROR_CODE_PERMISSION_DENIED,
                f"the account is {state}",
                metadata={"account_status": state},
            )
        if user.locked(self._clock.now()):
            until = user.locked_until.isoformat() if user.locked_until else ""
            raise LucidError(
                ErrorCode.ERROR_CODE_ACCOUNT_LOCKED,
                "the account is locked after repeated failed sign-ins",
                metadata={"locked_until": until},
                retry_after_s=(user.locked_until - self._clock.now()).total_seconds()
                if user.locked_until
                else None,
            )

    # -- TRON sign-in ------------------------------------------------------------------

    async def login(
        self,
        signed: SignedChallenge,
        client: Client,
        event: Event,
        *,
        wallet_type: int = 0,
        device_id: str = "",
    ) -> tuple[Tokens, UserRecord]:
        """Verifies a signed challenge and opens a login session (creating the user)."""
        check_address(signed.tron_address)
        await self.limits.enforce(policy.LOGIN_LIMIT, client.ip)
        if device_id:
            await self.wallets.require_connected(device_id, wallet_type)
            record = await self.wallet_records.get(device_id)
            if record is not None and record.tron_address != signed.tron_address:
                raise LucidError(
                    ErrorCode.ERROR_CODE_PERMISSION_DENIED,
                    "this hardware wallet is registered to another address",
                )
        user = await self.users.by_address(signed.tron_address)
        if user is not None:
            event.user_id = user.user_id
            if user.suspended or user.locked(self._clock.now()):
                await self._take_challenge(signed.message)
                self._refuse_account(user)
        await self._verify(signed, user)
        known = user is not None
        if user is None:
            user = await self._create_or_get(signed.tron_address)
            event.user_id = user.user_id
        tokens = await self.sessions.open(
            user, ip=client.ip, user_agent=client.user_agent, hardware_wallet=device_id
        )
        event.session_id = tokens.session_id
        if known or user.last_login is None:
            user = await self.users.record_login(user.user_id, self._clock.now()) or user
        if device_id:
            await self.wallet_records.touch(device_id, self._clock.now())
        return tokens, user

    async def _take_challenge(self, message: str) -> None:
        nonce = challenge.nonce_of(message)
        if nonce:
            await self.challenges.take(nonce)

    async def _create_or_get(self, tron_address: str) -> UserRecord:
        """The new user of a first sign-in (its sign-in time set), or the one a
        concurrent first sign-in created."""
        now = self._clock.now()
        try:
            return await self.users.create(tron_address, now, last_login=now)
        except UserExistsError:  # a concurrent first sign-in created it
            user = await self.users.by_address(tron_address)
            if user is None:
                raise
            return user

    async def register(
        self, signed: SignedChallenge, client: Client, event: Event, *, email: str, username: str
    ) -> UserRecord:
        """Creates the user of a signed challenge, without tokens."""
        check_address(signed.tron_address, "challenge.tron_address")
        await self.limits.enforce(policy.REGISTER_LIMIT, client.ip)
        existing = await self.users.by_address(signed.tron_address)
        await self._verify(signed, existing)
        if existing is not None:
            event.user_id = existing.user_id
            raise LucidError(ErrorCode.ERROR_CODE_ALREADY_EXISTS, "this address is registered")
        try:
            user = await self.users.create(
                signed.tron_address, self._clock.now(), email=email.lower(), username=username
            )
        except UserExistsError as exc:
            raise LucidError(
                ErrorCode.ERROR_CODE_ALREADY_EXISTS,
                f"{exc.field} is taken",
                field_violations=[FieldViolation(exc.field, "already taken")],
            ) from None
        event.user_id = user.user_id
        return user

    # -- magic link + TOTP -------------------------------------------------------------

    async def start_magic_link(self, email: str, client: Client, event: Event) -> int:
        """Puts a sign-in link in the outbox when the e-mail belongs to a TOTP user."""
        await self.limits.enforce(policy.MAGIC_LINK_LIMIT, client.ip)
        email = email.lower()
        user = await self.users.by_email(email)
        if user is None or not user.totp_enabled or user.suspended:
            return policy.MAGIC_LINK_TTL_S  # the same answer, so e-mails cannot be probed
        event.user_id = user.user_id
        now = self._clock.now()
        token = secrets.token_urlsafe(32)
        await self.links.add(
            hashlib.sha256(token.encode()).hexdigest(),
            user_id=user.user_id,
            email=email,
            now=now,
            expires_at=now + timedelta(seconds=policy.MAGIC_LINK_TTL_S),
        )
        await self.outbox.add(
            to=email,
            kind=MAGIC_LINK_KIND,
            subject="Your Lucid sign-in link",
            body=(
                "Open this link within 5 minutes and enter the code of your authenticator:\n"
                f"/auth/magic-link?email={email}&token={token}\n"
            ),
            link_token=token,
            now=now,
        )
        return policy.MAGIC_LINK_TTL_S

    async def verify_totp(
        self, email: str, link_token: str, code: str, client: Client, event: Event
    ) -> tuple[Tokens, UserRecord]:
        """Completes a magic-link sign-in with a TOTP code."""
        await self.limits.enforce(policy.LOGIN_LIMIT, client.ip)
        now = self._clock.now()
        link = await self.links.consume(
            hashlib.sha256(link_token.encode()).hexdigest(), email=email.lower(), now=now
        )
        user = await self.users.get(link.user_id) if link else None
        if link is None or user is None:
            raise LucidError(
                ErrorCode.ERROR_CODE_MAGIC_LINK_INVALID,
                "the sign-in link is unknown, already used or expired",
            )
        event.user_id = user.user_id
        event.tron_address = user.tron_address
        self._refuse_account(user)
        step = await self._totp_step(user, code)
        if step is None or not await self.users.use_totp_step(user.user_id, step):
            await self._failed(user)
            raise LucidError(ErrorCode.ERROR_CODE_TOTP_INVALID, "the code is wrong or was used")
        tokens = await self.sessions.open(user, ip=client.ip, user_agent=client.user_agent)
        event.session_id = tokens.session_id
        user = await self.users.record_login(user.user_id, self._clock.now()) or user
        return tokens, user

    async def check_totp(self, user_id: str, code: str, event: Event) -> None:
        """A signed-in user's step-up: the code must be right and not used before."""
        user = await self.users.get(user_id)
        if user is None:
            raise LucidError(ErrorCode.ERROR_CODE_NOT_FOUND, "user not found")
        event.user_id, event.tron_address = user.user_id, user.tron_address
        self._refuse_account(user)
        if not user.totp_enabled:
            raise LucidError(ErrorCode.ERROR_CODE_NOT_ALLOWED, "enrol in TOTP first (EnrollTotp)")
        step = await self._totp_step(user, code)
        if step is None or not await self.users.use_totp_step(user.user_id, step):
            await self._failed(user)
            raise LucidError(ErrorCode.ERROR_CODE_TOTP_INVALID, "the code is wrong or was used")

    async def _totp_step(self, user: UserRecord, code: str) -> int | None:
        """The 30 s step (within ±1 of now) whose code is ``code``, if any."""
        if not user.totp_enabled or user.totp_secret is None:
            return None
        secret = (await asyncio.to_thread(self._sealer.unseal, user.totp_secret)).decode()
        totp = pyotp.TOTP(secret)
        now = self._clock.timestamp()
        for offset in range(-policy.TOTP_VALID_WINDOW, policy.TOTP_VALID_WINDOW + 1):
            moment = now + offset * totp.interval
            if hmac.compare_digest(totp.at(moment), code):
                return int(moment // totp.interval)
        return None

    async def enroll_totp(self, user_id: str, email: str) -> tuple[str, str]:
        """Attaches an e-mail and a new TOTP secret to a user; returns the secret and URI."""
        email = email.lower()
        user = await self.users.get(user_id)
        if user is None:
            raise LucidError(ErrorCode.ERROR_CODE_NOT_FOUND, "user not found")
        if not await self.users.claim("email", email, user_id):
            raise LucidError(
                ErrorCode.ERROR_CODE_ALREADY_EXISTS,
                "this e-mail belongs to another user",
                field_violations=[FieldViolation("email", "already taken")],
            )
        secret = pyotp.random_base32()
        sealed = await asyncio.to_thread(self._sealer.seal, secret.encode())
        await self.users.set_fields(
            user_id,
            {
                "email": email,
                "totp_secret": sealed,
                "totp_enabled": True,
                "totp_last_step": 0,
                "updated_at": self._clock.now(),
            },
        )
        if user.email and user.email != email:
            await self.users.release("email", user.email, user_id)
        uri = pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=TOTP_ISSUER)
        return secret, uri

    # -- hardware wallets ----------------------------------------------------------------

    async def verify_hardware_wallet(
        self, user_id: str, wallet_type: int, device_id: str, signed: SignedChallenge
    ) -> UserRecord:
        """Registers a device to a user once it signed a challenge with the user's key."""
        check_address(signed.tron_address, "challenge.tron_address")
        user = await self.users.get(user_id)
        if user is None:
            raise LucidError(ErrorCode.ERROR_CODE_NOT_FOUND, "user not found")
        if signed.tron_address != user.tron_address:
            raise LucidError(
                ErrorCode.ERROR_CODE_PERMISSION_DENIED,
                "the challenge must be signed with your own address",
            )
        device = await self.wallets.require_connected(device_id, wallet_type)
        await self._verify(signed, None)
        registered = await self.wallet_records.register(
            WalletRecord(
                device_id=device_id,
                user_id=user_id,
                wallet_type=device.wallet_type,
                tron_address=user.tron_address,
                public_key=(
                    challenge.recover_public_key(signed.message, signed.signature) or b""
                ).hex(),
                firmware_version=device.firmware_version,
                registered_at=self._clock.now(),
            )
        )
        if not registered:
            raise LucidError(
                ErrorCode.ERROR_CODE_ALREADY_EXISTS, "this device is registered to another user"
            )
        updated = await self.users.set_fields(user_id, {"hardware_wallet_enabled": True})
        return updated or user
