"""Stored auth records → their proto messages."""

from __future__ import annotations

import math
from datetime import datetime

from lucid.auth import policy
from lucid.auth.login_sessions import Tokens
from lucid.auth.store import users
from lucid.auth.store.audit import AuditRecord
from lucid.auth.store.login_sessions import SessionRecord
from lucid.auth.store.users import UserRecord
from lucid.auth.v1 import auth_pb2
from lucid.auth.wallets.backend import Device
from lucid.runtime.wire import optional_timestamp

_STATUS_FILTER = {
    auth_pb2.ACCOUNT_STATUS_ACTIVE: users.ACTIVE,
    auth_pb2.ACCOUNT_STATUS_LOCKED: users.LOCKED,
    auth_pb2.ACCOUNT_STATUS_SUSPENDED: users.SUSPENDED,
    auth_pb2.ACCOUNT_STATUS_BANNED: users.BANNED,
}


def user_filter(request: auth_pb2.ListUsersRequest) -> users.UserFilter:
    """The filter of a ListUsers request."""
    return users.UserFilter(
        role=policy.role_name(request.role) if request.role else "",
        kyc_status=policy.kyc_name(request.kyc_status) if request.kyc_status else "",
        status=_STATUS_FILTER.get(request.status, ""),
    )


def user(record: UserRecord, now: datetime) -> auth_pb2.User:
    """The ``User`` message of a user."""
    return auth_pb2.User(
        user_id=record.user_id,
        tron_address=record.tron_address,
        username=record.username,
        email=record.email,
        role=record.role,  # type: ignore[arg-type]
        permissions=policy.permissions_of(record.role, record.kyc_status),  # type: ignore[arg-type]
        kyc_status=record.kyc_status,  # type: ignore[arg-type]
        status=record.status(now),  # type: ignore[arg-type]
        hardware_wallet_enabled=record.hardware_wallet_enabled,
        totp_enabled=record.totp_enabled,
        create_time=optional_timestamp(record.created_at),
        last_login_time=optional_timestamp(record.last_login),
        locked_until=optional_timestamp(record.locked_until if record.locked(now) else None),
    )


def tokens(pair: Tokens, now: datetime) -> auth_pb2.TokenPair:
    """The ``TokenPair`` of newly issued tokens."""
    return auth_pb2.TokenPair(
        access_token=pair.access.token,
        refresh_token=pair.refresh.token,
        token_type="Bearer",  # noqa: S106 (the scheme's name, not a secret)
        expires_in=max(0, math.ceil(pair.access.expires_at - now.timestamp())),
        refresh_expires_in=max(0, math.ceil(pair.refresh.expires_at - now.timestamp())),
        session_id=pair.session_id,
    )


def session(record: SessionRecord) -> auth_pb2.LoginSession:
    """The ``LoginSession`` message of a session."""
    return auth_pb2.LoginSession(
        session_id=record.session_id,
        user_id=record.user_id,
        create_time=optional_timestamp(record.created_at),
        last_activity_time=optional_timestamp(record.last_activity),
        expire_time=optional_timestamp(record.expires_at),
        ip_address=record.ip_address,
        user_agent=record.user_agent,
        revoked=record.revoked,
        revoke_time=optional_timestamp(record.revoked_at),
    )


def device(found: Device) -> auth_pb2.HardwareWalletDevice:
    """The ``HardwareWalletDevice`` message of a device."""
    return auth_pb2.HardwareWalletDevice(
        device_id=found.device_id,
        wallet_type=found.wallet_type,  # type: ignore[arg-type]
        state=found.state,  # type: ignore[arg-type]
        firmware_version=found.firmware_version,
        model=found.model,
    )


def audit_event(record: AuditRecord) -> auth_pb2.AuditEvent:
    """The ``AuditEvent`` message of an audit record."""
    result = record.result if not record.reason else f"{record.result}:{record.reason}"
    return auth_pb2.AuditEvent(
        event_id=record.event_id,
        event_time=optional_timestamp(record.event_time),
        user_id=record.user_id,
        tron_address=record.tron_address,
        action=record.action,
        resource=record.resource,
        result=result,
        ip_address=record.ip_address,
        user_agent=record.user_agent,
        session_id=record.session_id,
    )
