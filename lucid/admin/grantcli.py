"""``lucid admin grant TRON_ADDRESS ROLE``: the operator's bootstrap of the first super
admin. It calls auth's ``BootstrapRole`` over gRPC with the operator's mTLS
certificate (``<var>/certs/operator``); auth refuses it once a super admin exists, so
from then on only admins grant roles."""

from __future__ import annotations

import grpc

from lucid.auth.v1 import auth_pb2, auth_pb2_grpc
from lucid.common.v1 import access_pb2
from lucid.runtime import tls
from lucid.runtime.config import Settings
from lucid.runtime.errors import ErrorDetails

ROLES = {"user", "node_operator", "admin", "super_admin"}
CALL_TIMEOUT_S = 15.0


async def grant(settings: Settings, tron_address: str, role: str) -> tuple[int, str]:
    """Exit status and the text to print."""
    if role not in ROLES:
        return 2, f"unknown role {role!r}; one of {', '.join(sorted(ROLES))}"
    credentials = tls.channel_credentials(tls.CertPaths.of(settings.certs_dir, "operator"))
    target = f"{settings.host}:{settings.port('auth')}"
    options = [("grpc.ssl_target_name_override", tls.dns_name("auth"))]
    async with grpc.aio.secure_channel(target, credentials, options=options) as channel:
        request = auth_pb2.BootstrapRoleRequest(
            tron_address=tron_address, role=access_pb2.Role.Value(f"ROLE_{role.upper()}")
        )
        try:
            reply = await auth_pb2_grpc.AuthServiceStub(channel).BootstrapRole(
                request, timeout=CALL_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            found = ErrorDetails.from_rpc_error(exc)
            return 1, f"refused: {exc.code().name} {found.reason} {found.message}".strip()
    return 0, f"{reply.user.tron_address} ({reply.user.user_id}) is now {role}"
