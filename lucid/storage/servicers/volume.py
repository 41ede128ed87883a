"""gRPC adapter of ``lucid.storage.v1.VolumeService``."""

from __future__ import annotations

from typing import Any

import grpc

from lucid.runtime import paging
from lucid.runtime.audit import AuditTrail, audited
from lucid.runtime.wire import optional_timestamp
from lucid.storage import convert
from lucid.storage.ratelimit import CallerLimits
from lucid.storage.storeerrors import maps_store_errors
from lucid.storage.v1 import volume_pb2, volume_pb2_grpc
from lucid.storage.volumes import STATE_NAMES, Volumes


@maps_store_errors
class VolumeServicer(volume_pb2_grpc.VolumeServiceServicer):
    """Volumes with logical quotas."""

    def __init__(self, volumes: Volumes, limiter: CallerLimits, audit: AuditTrail) -> None:
        self.volumes = volumes
        self.limiter = limiter
        self.audit = audit

    async def _message(self, record: dict[str, Any]) -> volume_pb2.Volume:
        return convert.volume_message(record, await self.volumes.usage(record))

    async def ListVolumes(
        self, request: volume_pb2.ListVolumesRequest, context: grpc.aio.ServicerContext
    ) -> volume_pb2.ListVolumesResponse:
        await self.limiter.check("database")
        page = paging.page(request)
        found, total = await self.volumes.find_page(
            state=STATE_NAMES.get(request.state), offset=page.offset, limit=page.size
        )
        return volume_pb2.ListVolumesResponse(
            volumes=[await self._message(r) for r in found],
            next_page_token=page.next_token(len(found), total),
            total_size=total,
        )

    @audited(lambda r: r.name)
    async def CreateVolume(
        self, request: volume_pb2.CreateVolumeRequest, context: grpc.aio.ServicerContext
    ) -> volume_pb2.CreateVolumeResponse:
        await self.limiter.check("database")
        record = await self.volumes.create(
            name=request.name,
            size_bytes=request.size_bytes,
            volume_type=request.type,
            file_system=request.file_system,
            encryption=request.encryption,
            purpose=request.purpose,
        )
        return volume_pb2.CreateVolumeResponse(volume=await self._message(record))

    async def GetVolume(
        self, request: volume_pb2.GetVolumeRequest, context: grpc.aio.ServicerContext
    ) -> volume_pb2.GetVolumeResponse:
        await self.limiter.check("database")
        record = await self.volumes.get(request.volume_id)
        return volume_pb2.GetVolumeResponse(volume=await self._message(record))

    @audited(lambda r: r.volume_id)
    async def UpdateVolume(
        self, request: volume_pb2.UpdateVolumeRequest, context: grpc.aio.ServicerContext
    ) -> volume_pb2.UpdateVolumeResponse:
        await self.limiter.check("database")
        paths = set(request.update_mask.paths)
        changes: dict[str, Any] = {}
        if "name" in paths or (not paths and request.name):
            changes["name"] = request.name
        if "state" in paths or (not paths and request.state):
            changes["state"] = STATE_NAMES.get(request.state, "active")
        if "purpose" in paths or (not paths and request.purpose):
            changes["purpose"] = request.purpose
        record = await self.volumes.update(request.volume_id, changes)
        return volume_pb2.UpdateVolumeResponse(volume=await self._message(record))

    @audited(lambda r: r.volume_id)
    async def DeleteVolume(
        self, request: volume_pb2.DeleteVolumeRequest, context: grpc.aio.ServicerContext
    ) -> volume_pb2.DeleteVolumeResponse:
        await self.limiter.check("database")
        await self.volumes.delete(request.volume_id, force=request.force)
        return volume_pb2.DeleteVolumeResponse()

    @audited(lambda r: f"{r.volume_id} -> {r.new_size_bytes}")
    async def ResizeVolume(
        self, request: volume_pb2.ResizeVolumeRequest, context: grpc.aio.ServicerContext
    ) -> volume_pb2.ResizeVolumeResponse:
        await self.limiter.check("database")
        record = await self.volumes.resize(request.volume_id, request.new_size_bytes)
        return volume_pb2.ResizeVolumeResponse(volume=await self._message(record))

    async def GetVolumeUsage(
        self, request: volume_pb2.GetVolumeUsageRequest, context: grpc.aio.ServicerContext
    ) -> volume_pb2.GetVolumeUsageResponse:
        await self.limiter.check("database")
        record = await self.volumes.get(request.volume_id)
        usage = await self.volumes.usage(record)
        response = volume_pb2.GetVolumeUsageResponse(
            volume_id=record["volume_id"], size_bytes=record["size_bytes"]
        )
        if usage is not None:
            response.used_bytes = usage.used_bytes
            response.free_bytes = usage.free_bytes
            response.usage_percent = usage.usage_percent
            response.alert_level = usage.alert_level
            response.file_count = usage.file_count
        for when, used in await self.volumes.history(record["volume_id"], request.period):
            response.samples.append(
                volume_pb2.UsageSample(sample_time=optional_timestamp(when), used_bytes=used)
            )
        return response

    @audited(lambda r: f"{r.volume_id} -> {r.target_volume_id}")
    async def MigrateVolume(
        self, request: volume_pb2.MigrateVolumeRequest, context: grpc.aio.ServicerContext
    ) -> volume_pb2.MigrateVolumeResponse:
        await self.limiter.check("database")
        record = await self.volumes.migrate(
            request.volume_id,
            request.target_volume_id,
            move=request.mode == volume_pb2.MIGRATION_MODE_MOVE,
            verify=request.verify_integrity,
        )
        return volume_pb2.MigrateVolumeResponse(operation=convert.operation_message(record))

    async def GetVolumeOperation(
        self, request: volume_pb2.GetVolumeOperationRequest, context: grpc.aio.ServicerContext
    ) -> volume_pb2.GetVolumeOperationResponse:
        await self.limiter.check("database")
        record = await self.volumes.get_operation(request.operation_id)
        return volume_pb2.GetVolumeOperationResponse(operation=convert.operation_message(record))
