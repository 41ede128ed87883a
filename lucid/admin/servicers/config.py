"""``lucid.admin.v1.ConfigService``: the system configuration over gRPC."""

from __future__ import annotations

import grpc

from lucid.admin import convert
from lucid.admin.configs import Configs
from lucid.admin.v1 import config_pb2, config_pb2_grpc
from lucid.runtime.audit import client_of


class ConfigServicer(config_pb2_grpc.ConfigServiceServicer):
    """Get, update, back up and restore the configuration."""

    def __init__(self, configs: Configs) -> None:
        self.configs = configs

    async def GetConfig(
        self, request: config_pb2.GetConfigRequest, context: grpc.aio.ServicerContext
    ) -> config_pb2.GetConfigResponse:
        return config_pb2.GetConfigResponse(
            config=convert.system_config(await self.configs.current())
        )

    async def UpdateConfig(
        self, request: config_pb2.UpdateConfigRequest, context: grpc.aio.ServicerContext
    ) -> config_pb2.UpdateConfigResponse:
        record, changes = await self.configs.update(
            convert.config_values(request.config),
            list(request.update_mask.paths),
            client_of(context),
        )
        return config_pb2.UpdateConfigResponse(
            config=convert.system_config(record), changes=convert.config_changes(changes)
        )

    async def BackupConfig(
        self, request: config_pb2.BackupConfigRequest, context: grpc.aio.ServicerContext
    ) -> config_pb2.BackupConfigResponse:
        return config_pb2.BackupConfigResponse(
            backup=convert.config_backup(await self.configs.backup())
        )

    async def RestoreConfig(
        self, request: config_pb2.RestoreConfigRequest, context: grpc.aio.ServicerContext
    ) -> config_pb2.RestoreConfigResponse:
        record, changes = await self.configs.restore(
            convert.config_values(request.backup.config),
            request.backup.sha256,
            request.reason,
            client_of(context),
        )
        return config_pb2.RestoreConfigResponse(
            config=convert.system_config(record), changes=convert.config_changes(changes)
        )
