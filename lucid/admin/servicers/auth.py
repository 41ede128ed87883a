"""``lucid.admin.v1.AdminAuthService``: the console's TOTP step-up.

Built: StepUp. GetMe answers UNIMPLEMENTED (inherited from the generated base).
"""

from __future__ import annotations

import grpc

from lucid.admin.stepup import StepUps
from lucid.admin.v1 import admin_pb2, admin_pb2_grpc
from lucid.runtime.audit import client_of
from lucid.runtime.wire import timestamp


class AdminAuthServicer(admin_pb2_grpc.AdminAuthServiceServicer):
    """TOTP step-up before emergency controls."""

    def __init__(self, stepups: StepUps) -> None:
        self.stepups = stepups

    async def StepUp(
        self, request: admin_pb2.StepUpRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.StepUpResponse:
        granted = await self.stepups.step_up(request.code, client_of(context))
        return admin_pb2.StepUpResponse(
            step_up_id=granted.step_up_id, expire_time=timestamp(granted.expires_at)
        )
