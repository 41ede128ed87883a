"""Volumes: directories with logical quotas, resize, usage, migrate with SHA-256 checks."""

from __future__ import annotations

import hashlib
import os
import uuid

import grpc
import pytest

from lucid.storage.servicers.volume import VolumeServicer
from lucid.storage.v1 import volume_pb2
from tests.storage_support import Stubs, admin_metadata, component, eventually
from tests.support import Mesh, details

GIB = 1024**3


@pytest.fixture(scope="module")
async def storage(mesh: Mesh) -> Mesh:
    await mesh.start("storage")
    return mesh


def _write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)


def _sparse(path: str, size: int) -> None:
    with open(path, "wb") as fh:  # an apparent size without disk blocks
        fh.truncate(size)


def _name() -> str:
    return f"vol-{uuid.uuid4().hex[:8]}"


async def test_create_resize_usage_delete(storage: Mesh) -> None:
    metadata = await admin_metadata(storage)
    async with storage.channel("storage") as channel:
        stub = Stubs(channel).volume
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateVolume(
                volume_pb2.CreateVolumeRequest(
                    name=_name(), size_bytes=GIB - 1, type=volume_pb2.VOLUME_TYPE_LOCAL
                ),
                metadata=metadata,
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert details(caught.value).field_violations[0].field == "size_bytes"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateVolume(
                volume_pb2.CreateVolumeRequest(
                    name=_name(), size_bytes=GIB, type=volume_pb2.VOLUME_TYPE_CLOUD
                ),
                metadata=metadata,
            )
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        name = _name()
        made = await stub.CreateVolume(
            volume_pb2.CreateVolumeRequest(
                name=name, size_bytes=GIB, type=volume_pb2.VOLUME_TYPE_LOCAL, purpose="test"
            ),
            metadata=metadata,
        )
        volume = made.volume
        assert volume.size_bytes == GIB and volume.state == volume_pb2.VOLUME_STATE_ACTIVE
        assert volume.file_system == "ext4" and _tree(volume.mount_path) == {}
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateVolume(
                volume_pb2.CreateVolumeRequest(
                    name=name, size_bytes=GIB, type=volume_pb2.VOLUME_TYPE_LOCAL
                ),
                metadata=metadata,
            )
        assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
        _write(os.path.join(volume.mount_path, "data.bin"), b"z" * 4096)
        resized = await stub.ResizeVolume(
            volume_pb2.ResizeVolumeRequest(volume_id=volume.volume_id, new_size_bytes=2 * GIB),
            metadata=metadata,
        )
        assert resized.volume.size_bytes == 2 * GIB and resized.volume.used_bytes == 4096
        await component(storage.servers["storage"], VolumeServicer).volumes.sample_all()
        usage = await stub.GetVolumeUsage(
            volume_pb2.GetVolumeUsageRequest(
                volume_id=volume.volume_id, period=volume_pb2.USAGE_PERIOD_1H
            ),
            metadata=metadata,
        )
        assert usage.used_bytes == 4096 and usage.file_count == 1
        assert usage.size_bytes == 2 * GIB and usage.samples[-1].used_bytes == 4096
        listed = await stub.ListVolumes(volume_pb2.ListVolumesRequest(), metadata=metadata)
        names = {v.name: v for v in listed.volumes}
        assert name in names and names["blobs"].purpose == "chunks"
        with pytest.raises(grpc.aio.AioRpcError) as caught:  # the blob volume stays
            await stub.DeleteVolume(
                volume_pb2.DeleteVolumeRequest(volume_id=names["blobs"].volume_id, confirm=True),
                metadata=metadata,
            )
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(grpc.aio.AioRpcError) as caught:  # holds a file, no force
            await stub.DeleteVolume(
                volume_pb2.DeleteVolumeRequest(volume_id=volume.volume_id, confirm=True),
                metadata=metadata,
            )
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        await stub.DeleteVolume(
            volume_pb2.DeleteVolumeRequest(volume_id=volume.volume_id, force=True, confirm=True),
            metadata=metadata,
        )
        assert not _exists(volume.mount_path)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetVolume(
                volume_pb2.GetVolumeRequest(volume_id=volume.volume_id), metadata=metadata
            )
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def _exists(path: str) -> bool:
    return os.path.exists(path)


def _tree(root: str) -> dict[str, str]:
    found = {}
    for base, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(base, name)
            with open(path, "rb") as fh:
                found[os.path.relpath(path, root)] = hashlib.sha256(fh.read()).hexdigest()
    return found


async def test_migrate_copy_and_move_verify_checksums(storage: Mesh) -> None:
    metadata = await admin_metadata(storage)
    async with storage.channel("storage") as channel:
        stub = Stubs(channel).volume

        async def create() -> volume_pb2.Volume:
            reply = await stub.CreateVolume(
                volume_pb2.CreateVolumeRequest(
                    name=_name(), size_bytes=GIB, type=volume_pb2.VOLUME_TYPE_LOCAL
                ),
                metadata=metadata,
            )
            return reply.volume

        source, target, third = await create(), await create(), await create()
        for i, path in enumerate(["a.bin", "sub/b.bin", "sub/c.bin"]):
            _write(os.path.join(source.mount_path, path), os.urandom(1000 + i * 777))
        original = _tree(source.mount_path)

        async def finish(operation: volume_pb2.VolumeOperation) -> volume_pb2.VolumeOperation:
            async def get() -> volume_pb2.VolumeOperation:
                reply = await stub.GetVolumeOperation(
                    volume_pb2.GetVolumeOperationRequest(operation_id=operation.operation_id),
                    metadata=metadata,
                )
                return reply.operation

            return await eventually(
                get,
                lambda o: (
                    o.state
                    in (volume_pb2.OPERATION_STATE_COMPLETED, volume_pb2.OPERATION_STATE_FAILED)
                ),
            )

        copied = await stub.MigrateVolume(
            volume_pb2.MigrateVolumeRequest(
                volume_id=source.volume_id,
                target_volume_id=target.volume_id,
                mode=volume_pb2.MIGRATION_MODE_COPY,
                verify_integrity=True,
            ),
            metadata=metadata,
        )
        done = await finish(copied.operation)
        assert done.state == volume_pb2.OPERATION_STATE_COMPLETED
        assert (done.files_done, done.checksum_mismatches) == (3, 0)
        assert _tree(target.mount_path) == original == _tree(source.mount_path)
        with pytest.raises(grpc.aio.AioRpcError) as caught:  # a move needs confirm
            await stub.MigrateVolume(
                volume_pb2.MigrateVolumeRequest(
                    volume_id=source.volume_id,
                    target_volume_id=third.volume_id,
                    mode=volume_pb2.MIGRATION_MODE_MOVE,
                ),
                metadata=metadata,
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        moved = await stub.MigrateVolume(
            volume_pb2.MigrateVolumeRequest(
                volume_id=source.volume_id,
                target_volume_id=third.volume_id,
                mode=volume_pb2.MIGRATION_MODE_MOVE,
                verify_integrity=True,
                confirm=True,
            ),
            metadata=metadata,
        )
        assert (await finish(moved.operation)).state == volume_pb2.OPERATION_STATE_COMPLETED
        assert _tree(third.mount_path) == original and _tree(source.mount_path) == {}
        _sparse(os.path.join(third.mount_path, "sparse.bin"), GIB + GIB // 2)
        with pytest.raises(grpc.aio.AioRpcError) as caught:  # a quota below the use
            await stub.ResizeVolume(
                volume_pb2.ResizeVolumeRequest(volume_id=third.volume_id, new_size_bytes=GIB),
                metadata=metadata,
            )
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert details(caught.value).reason == "LUCID_ERR_4701"
        with pytest.raises(grpc.aio.AioRpcError) as caught:  # the target lacks the room
            await stub.MigrateVolume(
                volume_pb2.MigrateVolumeRequest(
                    volume_id=third.volume_id,
                    target_volume_id=target.volume_id,
                    mode=volume_pb2.MIGRATION_MODE_COPY,
                ),
                metadata=metadata,
            )
        assert details(caught.value).reason == "LUCID_ERR_4701"
