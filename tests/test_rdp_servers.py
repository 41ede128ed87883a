"""RDP servers with real xrdp listeners: ports, lifecycle, validation, ownership
(spec 04 §7 checks 1, 2, 3, 5, 6, 11, 13)."""

from __future__ import annotations

import os
import pwd
import socket
from collections.abc import AsyncIterator

import grpc
import psutil
import pytest

from lucid.common.v1 import access_pb2
from lucid.rdp import accounts, schema
from lucid.rdp.instance import InstanceFiles
from lucid.rdp.procs import port_open
from lucid.rdp.v1 import rdp_pb2
from lucid.runtime.config import Settings
from tests.rdpkit import RdpEnv, start_rdp, stop_rdp
from tests.support import Mesh, bearer, details
from tests.waiting import eventually


@pytest.fixture(scope="module")
async def env(
    mesh: Mesh, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RdpEnv]:
    rdp = await start_rdp(mesh, settings, tmp_path_factory.mktemp("rdp-servers"))
    try:
        yield rdp
    finally:
        await stop_rdp(rdp)


def reason(error: grpc.aio.AioRpcError) -> str:
    return details(error).reason


async def test_a_new_server_is_stopped_with_its_own_port_account_and_files(env: RdpEnv) -> None:
    _, md = await env.user()
    first = await env.create_server(md)
    second = await env.create_server(md, name="another")
    assert first.state == rdp_pb2.SERVER_STATE_STOPPED
    assert env.config.port_first <= first.port <= env.config.port_last
    assert first.port != second.port
    assert first.host == "127.0.0.1" and first.pid == 0
    record = await env.domain_servers.store.get(first.server_id)
    assert record is not None
    username = record.account.username
    assert pwd.getpwnam(username).pw_uid > 0
    assert env.domain_servers.password(record) not in str(record.doc()["account"])
    files = InstanceFiles.of(env.config.instances_dir, first.server_id)
    ini = files.xrdp_ini.read_text()
    assert f"port=tcp://.:{first.port}" in ini and "crypt_level=high" in ini
    assert (files.config_dir / "cert.pem").exists() and files.log_dir.is_dir()
    for server in (first, second):
        await env.delete_server(md, server.server_id)
    assert not files.root.exists()
    assert not accounts.exists(username)
    assert first.port not in await env.domain_servers.store.claimed_ports()
    audit = env.server.runtime.datastores.db[schema.AUDIT]
    events = {
        doc["action"]
        async for doc in audit.find({"resource": first.server_id, "result": "success"})
    }
    assert {"server_create", "server_delete"} <= events


async def test_ports_taken_by_other_processes_are_skipped_and_exhaustion_is_refused(
    env: RdpEnv,
) -> None:
    _, md = await env.user()
    claimed = await env.domain_servers.store.claimed_ports()
    holders = []
    created = []
    try:
        # The lowest port the cluster has not claimed and that this test can hold (another
        # process on the machine, e.g. a listener still closing, may hold one already).
        lowest_free = 0
        for candidate in range(env.config.port_first, env.config.port_last + 1):
            if candidate in claimed:
                continue
            holder = socket.socket()
            try:
                holder.bind(("127.0.0.1", candidate))
            except OSError:
                holder.close()
                continue
            holder.listen()
            holders.append(holder)
            lowest_free = candidate
            break
        assert lowest_free, "no free port in the RDP range to hold"
        size = env.config.port_last - env.config.port_first + 1
        for _ in range(size - len(claimed) - 1):
            created.append(await env.create_server(md))
        ports = {s.port for s in created}
        assert lowest_free not in ports
        assert len(ports) == len(created)
        before = await env.domain_servers.store.count()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await env.create_server(md)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert reason(caught.value) == "LUCID_ERR_4301"
        assert await env.domain_servers.store.count() == before
    finally:
        for sock in holders:
            sock.close()
        for server in created:
            await env.delete_server(md, server.server_id)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"resources": rdp_pb2.ServerResources(cpu_cores=10)}, "resources.cpu_cores"),
        ({"resources": rdp_pb2.ServerResources(memory_mb=1000)}, "resources.memory_mb"),
        (
            {"configuration": rdp_pb2.ServerConfiguration(resolution="1920")},
            "configuration.resolution",
        ),
    ],
)
async def test_invalid_server_fields_are_refused_and_nothing_is_stored(
    env: RdpEnv, fields: dict[str, object], field: str
) -> None:
    _, md = await env.user()
    before = await env.domain_servers.store.count()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await env.create_server(md, **fields)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in [v.field for v in details(caught.value).field_violations]
    assert await env.domain_servers.store.count() == before


async def test_a_started_server_runs_real_xrdp_and_a_dead_process_is_seen(env: RdpEnv) -> None:
    _, md = await env.user()
    server = await env.create_server(md)
    try:
        running = await env.start_server(md, server.server_id)
        assert running.state == rdp_pb2.SERVER_STATE_RUNNING and running.pid > 0
        assert await port_open("127.0.0.1", server.port)
        assert psutil.Process(running.pid).name() == "xrdp"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await env.start_server(md, server.server_id)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        status = await env.servers.GetServerStatus(
            rdp_pb2.GetServerStatusRequest(server_id=server.server_id), metadata=md
        )
        assert status.port_reachable and status.state == rdp_pb2.SERVER_STATE_RUNNING

        os.kill(running.pid, 9)

        async def state() -> int:
            got = await env.servers.GetServer(
                rdp_pb2.GetServerRequest(server_id=server.server_id), metadata=md
            )
            return got.server.state

        async def errored() -> bool:
            return await state() == rdp_pb2.SERVER_STATE_ERROR

        await eventually(errored, timeout_s=30.0, what="the server in error")
        again = await env.start_server(md, server.server_id)
        assert again.state == rdp_pb2.SERVER_STATE_RUNNING
        stopped = await env.servers.StopServer(
            rdp_pb2.StopServerRequest(server_id=server.server_id), metadata=md
        )
        assert stopped.result.state == rdp_pb2.SERVER_STATE_STOPPED
        assert not await port_open("127.0.0.1", server.port)
    finally:
        await env.delete_server(md, server.server_id)


async def test_a_user_cannot_touch_another_users_server(env: RdpEnv) -> None:
    _, owner = await env.user()
    _, other = await env.user()
    server = await env.create_server(owner)
    try:
        for call, request in (
            (env.servers.GetServer, rdp_pb2.GetServerRequest(server_id=server.server_id)),
            (env.servers.StartServer, rdp_pb2.StartServerRequest(server_id=server.server_id)),
            (env.servers.DeleteServer, rdp_pb2.DeleteServerRequest(server_id=server.server_id)),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call(request, metadata=other)  # type: ignore[operator]
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        still = await env.servers.GetServer(
            rdp_pb2.GetServerRequest(server_id=server.server_id), metadata=owner
        )
        assert still.server.state == rdp_pb2.SERVER_STATE_STOPPED
        admin = bearer(await env.sessions_env.main.token(role=access_pb2.ROLE_ADMIN))
        seen = await env.servers.GetServer(
            rdp_pb2.GetServerRequest(server_id=server.server_id), metadata=admin
        )
        assert seen.server.server_id == server.server_id
    finally:
        await env.delete_server(owner, server.server_id)


async def test_list_update_restart_and_maintenance(env: RdpEnv) -> None:
    owner_id, md = await env.user()
    _, other = await env.user()
    first = await env.create_server(md, name="first")
    second = await env.create_server(md, name="second")
    try:
        page = await env.servers.ListServers(rdp_pb2.ListServersRequest(page_size=1), metadata=md)
        assert page.total_size == 2 and len(page.servers) == 1 and page.next_page_token
        rest = await env.servers.ListServers(
            rdp_pb2.ListServersRequest(page_size=1, page_token=page.next_page_token), metadata=md
        )
        assert {page.servers[0].server_id, rest.servers[0].server_id} == {
            first.server_id,
            second.server_id,
        }
        assert not rest.next_page_token
        with pytest.raises(grpc.aio.AioRpcError) as caught:  # a token of another query
            await env.servers.ListServers(
                rdp_pb2.ListServersRequest(
                    page_size=1, page_token=page.next_page_token, state=rdp_pb2.SERVER_STATE_RUNNING
                ),
                metadata=md,
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        theirs = await env.servers.ListServers(rdp_pb2.ListServersRequest(), metadata=other)
        assert theirs.total_size == 0
        admin = bearer(await env.sessions_env.main.token(role=access_pb2.ROLE_ADMIN))
        by_owner = await env.servers.ListServers(
            rdp_pb2.ListServersRequest(user_id=owner_id), metadata=admin
        )
        assert by_owner.total_size == 2

        updated = await env.servers.UpdateServer(
            rdp_pb2.UpdateServerRequest(
                server_id=first.server_id,
                name="renamed",
                configuration=rdp_pb2.ServerConfiguration(color_depth=16, resolution="1280x800"),
            ),
            metadata=md,
        )
        assert updated.server.name == "renamed"
        assert updated.server.configuration.color_depth == 16
        ini = InstanceFiles.of(env.config.instances_dir, first.server_id).xrdp_ini.read_text()
        assert "max_bpp=16" in ini
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await env.servers.UpdateServer(
                rdp_pb2.UpdateServerRequest(
                    server_id=first.server_id, resources=rdp_pb2.ServerResources(disk_mb=2000)
                ),
                metadata=md,
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        kept = await env.servers.GetServer(
            rdp_pb2.GetServerRequest(server_id=first.server_id), metadata=md
        )
        assert kept.server.resources.disk_mb == 0

        running = await env.start_server(md, first.server_id)
        restarted = await env.servers.RestartServer(
            rdp_pb2.RestartServerRequest(server_id=first.server_id), metadata=md
        )
        assert restarted.result.state == rdp_pb2.SERVER_STATE_RUNNING
        assert restarted.result.server.pid not in (0, running.pid)
        assert await port_open("127.0.0.1", first.port)

        maintenance = rdp_pb2.SetServerMaintenanceRequest(
            server_id=first.server_id, maintenance=True, reason="disk check"
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await env.servers.SetServerMaintenance(maintenance, metadata=md)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        boss = bearer(await env.sessions_env.main.token(role=access_pb2.ROLE_SUPER_ADMIN))
        down = await env.servers.SetServerMaintenance(maintenance, metadata=boss)
        assert down.server.state == rdp_pb2.SERVER_STATE_MAINTENANCE
        assert not await port_open("127.0.0.1", first.port)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await env.start_server(md, first.server_id)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        maintenance.maintenance = False
        back = await env.servers.SetServerMaintenance(maintenance, metadata=boss)
        assert back.server.state == rdp_pb2.SERVER_STATE_STOPPED
    finally:
        for server in (first, second):
            await env.delete_server(md, server.server_id)
