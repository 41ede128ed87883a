"""The AuthService rpcs (spec 09): proto ↔ the auth domain, every event audited.

The pipeline has already authenticated the caller and applied the rpc's access
rule; the rules of each operation and the ownership checks ("only your own
sessions") are the domain's (``signin``, ``login_sessions``, ``accounts``); what
is left here is the translation and the audit record.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeAlias

import grpc

from lucid.auth import convert, policy
from lucid.auth.core import AuthCore
from lucid.auth.login_sessions import Tokens
from lucid.auth.signin import SignedChallenge
from lucid.auth.store.ownership import Ownership
from lucid.auth.store.users import UserRecord
from lucid.auth.v1 import auth_pb2, auth_pb2_grpc
from lucid.runtime import paging
from lucid.runtime.audit import Client, Event, client_of
from lucid.runtime.context import Principal, UserClaims
from lucid.runtime.errors import ErrorCode, LucidError
from lucid.runtime.wire import optional_timestamp

Context: TypeAlias = grpc.aio.ServicerContext


def _signed(message: auth_pb2.SignedChallenge) -> SignedChallenge:
    return SignedChallenge(message.tron_address, message.message, message.signature)


def _user_of(client: Client) -> UserClaims:
    if client.principal.user is None:
        raise LucidError(ErrorCode.ERROR_CODE_UNAUTHENTICATED, "sign in first: no access token")
    return client.principal.user


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    """Sign-in, tokens, login sessions, roles and permissions, hardware wallets."""

    def __init__(self, core: AuthCore) -> None:
        self.core = core
        self._keys = core.keys

    @property
    def _now(self) -> datetime:
        return self.core.clock.now()

    def _signed_in(self, tokens: Tokens, user: UserRecord) -> dict[str, Any]:
        """The ``tokens`` and ``user`` fields of a sign-in's response."""
        now = self._now
        return {"tokens": convert.tokens(tokens, now), "user": convert.user(user, now)}

    # -- sign-in -----------------------------------------------------------------------

    async def IssueChallenge(
        self, request: auth_pb2.IssueChallengeRequest, context: Context
    ) -> auth_pb2.IssueChallengeResponse:
        client = client_of(context)
        async with self.core.auditor.event("challenge", client, tron_address=request.tron_address):
            issued = await self.core.signin.issue_challenge(request.tron_address, client)
        return auth_pb2.IssueChallengeResponse(
            message=issued.message,
            nonce=issued.nonce,
            expire_time=optional_timestamp(issued.expires_at),
        )

    async def Register(
        self, request: auth_pb2.RegisterRequest, context: Context
    ) -> auth_pb2.RegisterResponse:
        client = client_of(context)
        signed = _signed(request.challenge)
        async with self.core.auditor.event(
            "register", client, tron_address=signed.tron_address
        ) as event:
            user = await self.core.signin.register(
                signed, client, event, email=request.email, username=request.username
            )
        return auth_pb2.RegisterResponse(user=convert.user(user, self._now))

    async def Login(
        self, request: auth_pb2.LoginRequest, context: Context
    ) -> auth_pb2.LoginResponse:
        client = client_of(context)
        signed = SignedChallenge(request.tron_address, request.message, request.signature)
        wallet = request.hardware_wallet
        async with self.core.auditor.event(
            "login",
            client,
            tron_address=request.tron_address,
            resource=f"hardware_wallet:{wallet.device_id}" if wallet.device_id else "",
        ) as event:
            tokens, user = await self.core.signin.login(
                signed,
                client,
                event,
                wallet_type=wallet.wallet_type,
                device_id=wallet.device_id,
            )
        return auth_pb2.LoginResponse(**self._signed_in(tokens, user))

    async def StartMagicLink(
        self, request: auth_pb2.StartMagicLinkRequest, context: Context
    ) -> auth_pb2.StartMagicLinkResponse:
        client = client_of(context)
        async with self.core.auditor.event("magic_link", client) as event:
            expires_in = await self.core.signin.start_magic_link(request.email, client, event)
        return auth_pb2.StartMagicLinkResponse(expires_in=expires_in)

    async def VerifyTotp(
        self, request: auth_pb2.VerifyTotpRequest, context: Context
    ) -> auth_pb2.VerifyTotpResponse:
        client = client_of(context)
        async with self.core.auditor.event("totp_login", client) as event:
            tokens, user = await self.core.signin.verify_totp(
                request.email, request.link_token, request.code, client, event
            )
        return auth_pb2.VerifyTotpResponse(**self._signed_in(tokens, user))

    async def EnrollTotp(
        self, request: auth_pb2.EnrollTotpRequest, context: Context
    ) -> auth_pb2.EnrollTotpResponse:
        client = client_of(context)
        user = _user_of(client)
        async with self.core.auditor.event("totp_enroll", client, session_id=user.session_id):
            secret, uri = await self.core.signin.enroll_totp(user.user_id, request.email)
        return auth_pb2.EnrollTotpResponse(secret=secret, provisioning_uri=uri)

    async def CheckTotp(
        self, request: auth_pb2.CheckTotpRequest, context: Context
    ) -> auth_pb2.CheckTotpResponse:
        client = client_of(context)
        user = _user_of(client)
        async with self.core.auditor.event("totp_check", client, session_id=user.session_id) as e:
            await self.core.signin.check_totp(user.user_id, request.code, e)
        return auth_pb2.CheckTotpResponse()

    # -- tokens and login sessions ---------------------------------------------------------

    async def RefreshToken(
        self, request: auth_pb2.RefreshTokenRequest, context: Context
    ) -> auth_pb2.RefreshTokenResponse:
        client = client_of(context)
        async with self.core.auditor.event("refresh", client) as event:
            tokens, user = await self.core.sessions.refresh(request.refresh_token)
            event.user_id, event.session_id = user.user_id, tokens.session_id
        return auth_pb2.RefreshTokenResponse(tokens=convert.tokens(tokens, self._now))

    async def Logout(
        self, request: auth_pb2.LogoutRequest, context: Context
    ) -> auth_pb2.LogoutResponse:
        client = client_of(context)
        user = _user_of(client)
        async with self.core.auditor.event(
            "logout_all" if request.logout_all_sessions else "logout",
            client,
            session_id=user.session_id,
        ):
            count = await self.core.sessions.logout(user, everywhere=request.logout_all_sessions)
        return auth_pb2.LogoutResponse(revoked_sessions=count)

    async def GetAuthStatus(
        self, request: auth_pb2.GetAuthStatusRequest, context: Context
    ) -> auth_pb2.GetAuthStatusResponse:
        user = _user_of(client_of(context))
        record = await self.core.accounts.get(user.user_id)
        return auth_pb2.GetAuthStatusResponse(
            authenticated=True,
            user=convert.user(record, self._now),
            token_expire_time=optional_timestamp(user.expires_at),
        )

    async def ValidateToken(
        self, request: auth_pb2.ValidateTokenRequest, context: Context
    ) -> auth_pb2.ValidateTokenResponse:
        try:
            claims = await self.core.verifier.verify(request.token)
        except LucidError as exc:
            return auth_pb2.ValidateTokenResponse(valid=False, reason=exc.reason)
        return auth_pb2.ValidateTokenResponse(
            valid=True,
            user_id=claims.user_id,
            role=claims.role,  # type: ignore[arg-type]
            permissions=policy.permissions_of(claims.role, claims.kyc_status),  # type: ignore[arg-type]
            jti=claims.jti,
            expire_time=optional_timestamp(claims.expires_at),
        )

    async def GetJwks(
        self, request: auth_pb2.GetJwksRequest, context: Context
    ) -> auth_pb2.GetJwksResponse:
        return auth_pb2.GetJwksResponse(keys=[auth_pb2.Jwk(**k) for k in await self._keys.jwks()])

    async def RotateSigningKey(
        self, request: auth_pb2.RotateSigningKeyRequest, context: Context
    ) -> auth_pb2.RotateSigningKeyResponse:
        async with self.core.auditor.event("rotate_signing_key", client_of(context)) as event:
            key = await self._keys.rotate()
            event.resource = f"signing_key:{key.kid}"
        return auth_pb2.RotateSigningKeyResponse(
            kid=key.kid, active_kids=[k["kid"] for k in await self._keys.jwks()]
        )

    async def ListActiveSessions(
        self, request: auth_pb2.ListActiveSessionsRequest, context: Context
    ) -> auth_pb2.ListActiveSessionsResponse:
        client = client_of(context)
        user_id = request.user_id or _user_of(client).user_id
        page = paging.page(request, scope=user_id)
        records, total = await self.core.sessions.list_active(
            client.principal, user_id, offset=page.offset, limit=page.size
        )
        return auth_pb2.ListActiveSessionsResponse(
            sessions=[convert.session(r) for r in records],
            next_page_token=page.next_token(len(records), total),
            total_size=total,
        )

    async def RevokeSession(
        self, request: auth_pb2.RevokeSessionRequest, context: Context
    ) -> auth_pb2.RevokeSessionResponse:
        client = client_of(context)
        _user_of(client)
        async with self.core.auditor.event("revoke_session", client, session_id=request.session_id):
            record = await self.core.sessions.revoke_one(client.principal, request.session_id)
        return auth_pb2.RevokeSessionResponse(session=convert.session(record))

    # -- permissions and ownership ---------------------------------------------------------

    async def CheckPermission(
        self, request: auth_pb2.CheckPermissionRequest, context: Context
    ) -> auth_pb2.CheckPermissionResponse:
        allowed, reason = await self.core.accounts.permission_of(
            client_of(context).principal, request.user_id, request.permission
        )
        return auth_pb2.CheckPermissionResponse(allowed=allowed, reason=reason)

    async def GetPermissions(
        self, request: auth_pb2.GetPermissionsRequest, context: Context
    ) -> auth_pb2.GetPermissionsResponse:
        claims = _user_of(client_of(context))
        record = await self.core.accounts.users.get(claims.user_id)
        role, kyc = (record.role, record.kyc_status) if record else (claims.role, claims.kyc_status)
        limits = policy.limits_of(role)
        conditions = (
            {"max_sessions": str(limits.max_concurrent_sessions)}
            if limits.max_concurrent_sessions
            else {}
        )
        return auth_pb2.GetPermissionsResponse(
            role=role,  # type: ignore[arg-type]
            permissions=policy.permissions_of(role, kyc),  # type: ignore[arg-type]
            resources=[
                auth_pb2.ResourcePermission(
                    resource=name,
                    actions=list(actions),
                    conditions=conditions if name == "sessions" else {},
                )
                for name, actions in policy.resources_of(role).items()
            ],
            limits=auth_pb2.RoleLimits(
                max_concurrent_sessions=limits.max_concurrent_sessions,
                idle_timeout_minutes=limits.idle_timeout_minutes,
                max_duration_hours=limits.max_duration_hours,
            ),
        )

    async def VerifySessionOwnership(
        self, request: auth_pb2.VerifySessionOwnershipRequest, context: Context
    ) -> auth_pb2.VerifySessionOwnershipResponse:
        allowed = await self.core.accounts.verify_ownership(
            request.session_id, request.user_id, request.access_level
        )
        return auth_pb2.VerifySessionOwnershipResponse(allowed=allowed)

    async def SetSessionOwnership(
        self, request: auth_pb2.SetSessionOwnershipRequest, context: Context
    ) -> auth_pb2.SetSessionOwnershipResponse:
        async with self.core.auditor.event(
            "set_session_ownership",
            client_of(context),
            user_id=request.owner_user_id,
            resource=f"recording_session:{request.session_id}",
        ):
            await self.core.accounts.set_ownership(
                Ownership(
                    request.session_id,
                    request.owner_user_id,
                    tuple(request.participant_user_ids),
                    tuple(request.observer_user_ids),
                )
            )
        return auth_pb2.SetSessionOwnershipResponse()

    # -- users -----------------------------------------------------------------------------

    async def GetProfile(
        self, request: auth_pb2.GetProfileRequest, context: Context
    ) -> auth_pb2.GetProfileResponse:
        user = _user_of(client_of(context))
        record = await self.core.accounts.get(user.user_id)
        return auth_pb2.GetProfileResponse(user=convert.user(record, self._now))

    async def UpdateProfile(
        self, request: auth_pb2.UpdateProfileRequest, context: Context
    ) -> auth_pb2.UpdateProfileResponse:
        client = client_of(context)
        user = _user_of(client)
        async with self.core.auditor.event("update_profile", client, session_id=user.session_id):
            record = await self.core.accounts.update_profile(
                user.user_id, username=request.username, email=request.email
            )
        return auth_pb2.UpdateProfileResponse(user=convert.user(record, self._now))

    async def GetUser(
        self, request: auth_pb2.GetUserRequest, context: Context
    ) -> auth_pb2.GetUserResponse:
        record = await self.core.accounts.read(client_of(context).principal, request.user_id)
        return auth_pb2.GetUserResponse(user=convert.user(record, self._now))

    async def ListUsers(
        self, request: auth_pb2.ListUsersRequest, context: Context
    ) -> auth_pb2.ListUsersResponse:
        page = paging.page(request)
        records, total = await self.core.accounts.list_users(
            convert.user_filter(request), offset=page.offset, limit=page.size
        )
        now = self._now
        return auth_pb2.ListUsersResponse(
            users=[convert.user(r, now) for r in records],
            next_page_token=page.next_token(len(records), total),
            total_size=total,
        )

    async def _change_user(
        self,
        context: Context,
        action: str,
        change: Callable[[Principal, str, int, Event], Awaitable[UserRecord]],
        user_id: str,
        value: int,
    ) -> auth_pb2.User:
        """An administrator's change to a user, audited; the updated user."""
        client = client_of(context)
        async with self.core.auditor.event(action, client) as event:
            record = await change(client.principal, user_id, value, event)
        return convert.user(record, self._now)

    async def AssignRole(
        self, request: auth_pb2.AssignRoleRequest, context: Context
    ) -> auth_pb2.AssignRoleResponse:
        change = self.core.accounts.assign_role
        user = await self._change_user(
            context, "assign_role", change, request.user_id, request.role
        )
        return auth_pb2.AssignRoleResponse(user=user)

    async def BootstrapRole(
        self, request: auth_pb2.BootstrapRoleRequest, context: Context
    ) -> auth_pb2.BootstrapRoleResponse:
        client = client_of(context)
        async with self.core.auditor.event("bootstrap_role", client) as event:
            record = await self.core.accounts.bootstrap_role(
                client.principal, request.tron_address, request.role, event
            )
        return auth_pb2.BootstrapRoleResponse(user=convert.user(record, self._now))

    async def SetKycStatus(
        self, request: auth_pb2.SetKycStatusRequest, context: Context
    ) -> auth_pb2.SetKycStatusResponse:
        change, kyc = self.core.accounts.set_kyc, request.kyc_status
        user = await self._change_user(context, "set_kyc_status", change, request.user_id, kyc)
        return auth_pb2.SetKycStatusResponse(user=user)

    async def SetUserStatus(
        self, request: auth_pb2.SetUserStatusRequest, context: Context
    ) -> auth_pb2.SetUserStatusResponse:
        change, status = self.core.accounts.set_status, request.status
        user = await self._change_user(context, "set_user_status", change, request.user_id, status)
        return auth_pb2.SetUserStatusResponse(user=user)

    async def CreateUser(
        self, request: auth_pb2.CreateUserRequest, context: Context
    ) -> auth_pb2.CreateUserResponse:
        client = client_of(context)
        async with self.core.auditor.event("create_user", client) as event:
            record = await self.core.accounts.create_user(
                client.principal,
                request.tron_address,
                username=request.username,
                email=request.email,
                role=request.role,
                event=event,
            )
        return auth_pb2.CreateUserResponse(user=convert.user(record, self._now))

    async def SetUserProfile(
        self, request: auth_pb2.SetUserProfileRequest, context: Context
    ) -> auth_pb2.SetUserProfileResponse:
        client = client_of(context)
        async with self.core.auditor.event("set_user_profile", client) as event:
            record = await self.core.accounts.set_profile(
                client.principal,
                request.user_id,
                username=request.username,
                email=request.email,
                event=event,
            )
        return auth_pb2.SetUserProfileResponse(user=convert.user(record, self._now))

    # -- hardware wallets ------------------------------------------------------------------

    async def _wallet_call(self, client: Client) -> None:
        await self.core.limits.enforce(policy.HARDWARE_WALLET_LIMIT, _user_of(client).user_id)

    async def ListHardwareWallets(
        self, request: auth_pb2.ListHardwareWalletsRequest, context: Context
    ) -> auth_pb2.ListHardwareWalletsResponse:
        await self._wallet_call(client_of(context))
        devices = await self.core.wallets.discover()
        return auth_pb2.ListHardwareWalletsResponse(devices=[convert.device(d) for d in devices])

    async def ConnectHardwareWallet(
        self, request: auth_pb2.ConnectHardwareWalletRequest, context: Context
    ) -> auth_pb2.ConnectHardwareWalletResponse:
        client = client_of(context)
        async with self.core.auditor.event(
            "hardware_wallet_connect", client, resource=f"hardware_wallet:{request.device_id}"
        ) as event:
            await self._wallet_call(client)
            device = await self.core.wallets.connect(request.device_id)
            found = await self.core.wallets.address(request.device_id, request.address_index)
            event.tron_address = found.tron_address
        return auth_pb2.ConnectHardwareWalletResponse(
            device=convert.device(device),
            tron_address=found.tron_address,
            public_key=found.public_key,
        )

    async def SignWithHardwareWallet(
        self, request: auth_pb2.SignWithHardwareWalletRequest, context: Context
    ) -> auth_pb2.SignWithHardwareWalletResponse:
        client = client_of(context)
        user = _user_of(client)
        async with self.core.auditor.event(
            "hardware_wallet_sign", client, resource=f"hardware_wallet:{request.device_id}"
        ) as event:
            await self._wallet_call(client)
            record = await self.core.signin.wallet_records.get(request.device_id)
            if record is not None and record.user_id != user.user_id:
                raise LucidError(
                    ErrorCode.ERROR_CODE_PERMISSION_DENIED,
                    "this hardware wallet is registered to another user",
                )
            wallets = self.core.wallets
            await wallets.require_connected(request.device_id)
            found = await wallets.address(request.device_id, request.address_index)
            signature = await wallets.sign(
                request.device_id, request.address_index, request.message.encode()
            )
            event.tron_address = found.tron_address
        return auth_pb2.SignWithHardwareWalletResponse(
            signature=signature.hex(), tron_address=found.tron_address
        )

    async def VerifyHardwareWallet(
        self, request: auth_pb2.VerifyHardwareWalletRequest, context: Context
    ) -> auth_pb2.VerifyHardwareWalletResponse:
        client = client_of(context)
        user = _user_of(client)
        async with self.core.auditor.event(
            "hardware_wallet_verify",
            client,
            tron_address=request.challenge.tron_address,
            resource=f"hardware_wallet:{request.wallet.device_id}",
        ):
            await self._wallet_call(client)
            record = await self.core.signin.verify_hardware_wallet(
                user.user_id,
                request.wallet.wallet_type,
                request.wallet.device_id,
                _signed(request.challenge),
            )
        return auth_pb2.VerifyHardwareWalletResponse(
            verified=True, user=convert.user(record, self._now)
        )

    async def GetHardwareWalletStatus(
        self, request: auth_pb2.GetHardwareWalletStatusRequest, context: Context
    ) -> auth_pb2.GetHardwareWalletStatusResponse:
        await self._wallet_call(client_of(context))
        device = await self.core.wallets.status(request.device_id)
        public_key = ""
        if device.connected:
            try:
                public_key = (await self.core.wallets.address(request.device_id, 0)).public_key
            except LucidError:
                public_key = ""
        return auth_pb2.GetHardwareWalletStatusResponse(
            device=convert.device(device), connected=device.connected, public_key=public_key
        )

    async def DisconnectHardwareWallet(
        self, request: auth_pb2.DisconnectHardwareWalletRequest, context: Context
    ) -> auth_pb2.DisconnectHardwareWalletResponse:
        client = client_of(context)
        async with self.core.auditor.event(
            "hardware_wallet_disconnect", client, resource=f"hardware_wallet:{request.device_id}"
        ):
            await self._wallet_call(client)
            await self.core.wallets.disconnect(request.device_id)
        return auth_pb2.DisconnectHardwareWalletResponse()

    # -- audit -----------------------------------------------------------------------------

    async def ListAuditEvents(
        self, request: auth_pb2.ListAuditEventsRequest, context: Context
    ) -> auth_pb2.ListAuditEventsResponse:
        page = paging.page(request)
        records, total = await self.core.audit_store.page(
            user_id=request.user_id, action=request.action, offset=page.offset, limit=page.size
        )
        return auth_pb2.ListAuditEventsResponse(
            events=[convert.audit_event(r) for r in records],
            next_page_token=page.next_token(len(records), total),
            total_size=total,
        )
