"""``lucid.admin.v1.AdminAuthService``: the console's TOTP step-up.

GetMe (who the signed-in administrator is) and StepUp.
"""

from __future__ import annotations

import grpc

from lucid.admin import convert
from lucid.admin.me import Me
from lucid.admin.stepup import StepUps
from lucid.admin.v1 import admin_pb2, admin_pb2_grpc
from lucid.runtime.audit import client_of
from lucid.runtime.context import current_principal
from lucid.runtime.wire import timestamp


class AdminAuthServicer(admin_pb2_grpc.AdminAuthServiceServicer):
    """The caller, and TOTP step-up before emergency controls."""

    def __init__(self, stepups: StepUps, me: Me) -> None:
        self.stepups = stepups
        self.me = me

    async def GetMe(
        self, request: admin_pb2.GetMeRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.GetMeResponse:
        principal = current_principal()
        view = await self.me.me(principal.token, principal.user.role if principal.user else 0)
        role = view.console_role
        users = await self.me.roles.users_of(role.role_id) if role else 0
        return convert.me(view, users)

    async def StepUp(
        self, request: admin_pb2.StepUpRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.StepUpResponse:
        granted = await self.stepups.step_up(request.code, client_of(context))
        return admin_pb2.StepUpResponse(
            step_up_id=granted.step_up_id, expire_time=timestamp(granted.expires_at)
        )
