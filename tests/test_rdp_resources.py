"""Resource monitoring of real xrdp servers: psutil samples, limits, alerts with
severities, soft enforcement (spec 04 §4.4, §7 check 10)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from lucid.common.v1 import access_pb2
from lucid.rdp import tcpstats
from lucid.rdp.app import SERVICE_ACTOR
from lucid.rdp.records import Sample
from lucid.rdp.resources import severity
from lucid.rdp.v1 import rdp_pb2, resource_pb2, session_pb2, xrdp_pb2
from lucid.runtime.config import Settings
from tests.rdpkit import RdpEnv, start_rdp, stop_rdp
from tests.support import Mesh, bearer, details


@pytest.fixture(scope="module")
async def env(
    mesh: Mesh, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RdpEnv]:
    rdp = await start_rdp(mesh, settings, tmp_path_factory.mktemp("rdp-resources"))
    try:
        yield rdp
    finally:
        await stop_rdp(rdp)


async def running_server(env: RdpEnv) -> tuple[Any, rdp_pb2.Server]:
    """A new user's call metadata and a running server of theirs."""
    _, md = await env.user()
    server = await env.create_server(md)
    await env.start_server(md, server.server_id)
    return md, server


async def role(env: RdpEnv, value: int) -> tuple[tuple[str, str]]:
    return bearer(await env.sessions_env.main.token(role=value))


@pytest.mark.parametrize(
    ("value", "threshold", "expected"),
    [
        (80.0, 80.0, ""),
        (85.0, 80.0, "medium"),
        (89.9, 80.0, "medium"),
        (90.0, 80.0, "high"),
        (95.0, 80.0, "high"),
        (99.9, 90.0, "critical"),
        (100.0, 80.0, "critical"),
        (60.0, 40.0, "critical"),
    ],
)
def test_severity_follows_how_far_over_the_threshold(
    value: float, threshold: float, expected: str
) -> None:
    assert severity(value, threshold) == expected


SS_OUTPUT = """0      0               127.0.0.1:33890          127.0.0.1:38292
\t bbr wscale:10,10 rto:204 bytes_sent:4300 bytes_acked:4268 bytes_received:1483 segs_out:18
0      0               127.0.0.1:33890          127.0.0.1:40000
\t cubic rto:204 bytes_acked:100 bytes_received:7 segs_out:2
"""


def test_port_counters_are_read_per_connection_and_counted_between_readings() -> None:
    before = tcpstats.parse(SS_OUTPUT)
    assert before == {
        ("127.0.0.1:33890", "127.0.0.1:38292"): (4268, 1483),
        ("127.0.0.1:33890", "127.0.0.1:40000"): (100, 7),
    }
    after = {
        ("127.0.0.1:33890", "127.0.0.1:38292"): (5268, 1583),  # 1000 out, 100 in more
        ("127.0.0.1:33890", "127.0.0.1:41000"): (50, 5),  # new since: counted from zero
    }
    assert tcpstats.delta(before, after) == (1050, 105)
    assert tcpstats.parse("") == {}


# An X.224 Connection Request asking for TLS: xrdp answers with a Connection Confirm
# and waits for the TLS handshake, keeping the connection open.
X224_REQUEST = bytes.fromhex("030000130ee000000000000100080001000000")


async def test_a_server_sample_counts_its_files_and_its_port_traffic(env: RdpEnv) -> None:
    md, server = await running_server(env)
    resources = env.domain_resources
    await resources.sample_once()  # the first reading of the port's counters
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(X224_REQUEST)
        await writer.drain()
        answer = await reader.readexactly(19)
        assert answer[5] == 0xD0  # Connection Confirm
        await resources.sample_once()
    finally:
        writer.close()
    usage = await env.resources.GetResourceUsage(
        resource_pb2.GetResourceUsageRequest(server_id=server.server_id), metadata=md
    )
    current = usage.server.current
    assert current.network_in_kbps > 0 and current.network_out_kbps > 0
    # its config, certificate and logs, and the desktop account's home
    assert 0 < current.disk_mb < 100
    assert current.disk_percent > 0
    await env.delete_server(md, server.server_id)


async def test_a_server_over_its_disk_or_bandwidth_limit_is_alerted(env: RdpEnv) -> None:
    _, md = await env.user()
    server = await env.create_server(md)
    resources = env.domain_resources
    limits = await resources.limits()
    record = await env.domain_servers.store.get(server.server_id)
    now = resources.clock.now()
    # per-server values are percent of the limit: over it is also ≥ 98 → critical
    full = Sample("server", server.server_id, now, disk_mb=limits.server_disk_mb * 1.05)
    assert [
        (a.resource_type, a.severity) for a in await resources.evaluate(full, limits, record)
    ] == [("disk", "critical")]
    kbps = limits.server_bandwidth_mbps * 1000 / 8  # the whole limit, in KB/s
    busy = Sample("server", server.server_id, now, net_in_kbps=kbps * 0.6, net_out_kbps=kbps * 0.6)
    assert [
        (a.resource_type, a.severity) for a in await resources.evaluate(busy, limits, record)
    ] == [("network", "critical")]
    within = Sample("server", server.server_id, now, disk_mb=1.0, net_in_kbps=kbps * 0.5)
    assert await resources.evaluate(within, limits, record) == []
    await env.delete_server(md, server.server_id)


async def test_a_cpu_95_memory_90_sample_raises_high_alerts_that_can_be_resolved(
    env: RdpEnv,
) -> None:
    resources = env.domain_resources
    for kind in ("cpu", "memory"):  # the real host may be busy: start from no open alert
        already = await resources.store.open_alert("", kind)
        if already is not None:
            await resources.resolve(SERVICE_ACTOR, already.alert_id, "test setup")
    sample = Sample(
        "host", "", resources.clock.now(), cpu_percent=95.0, memory_percent=90.0, disk_percent=10
    )
    raised = await resources.evaluate(sample, await resources.limits())
    assert {(a.resource_type, a.severity) for a in raised} == {("cpu", "high"), ("memory", "high")}
    admin = await role(env, access_pb2.ROLE_ADMIN)
    listed = await env.resources.ListResourceAlerts(
        resource_pb2.ListResourceAlertsRequest(
            severity=resource_pb2.ALERT_SEVERITY_HIGH, resolved=False
        ),
        metadata=admin,
    )
    ids = {a.alert_id for a in listed.alerts}
    assert {a.alert_id for a in raised} <= ids
    again = await resources.evaluate(sample, await resources.limits())
    assert again == []  # one open alert per resource, not one per sample

    _, user = await env.user()
    theirs = await env.resources.ListResourceAlerts(
        resource_pb2.ListResourceAlertsRequest(), metadata=user
    )
    assert not theirs.alerts
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await env.resources.ResolveResourceAlert(
            resource_pb2.ResolveResourceAlertRequest(alert_id=raised[0].alert_id), metadata=user
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED

    for alert in raised:
        done = await env.resources.ResolveResourceAlert(
            resource_pb2.ResolveResourceAlertRequest(alert_id=alert.alert_id, note="handled"),
            metadata=admin,
        )
        assert done.alert.resolved and done.alert.resolve_time.seconds > 0
    still_open = await env.resources.ListResourceAlerts(
        resource_pb2.ListResourceAlertsRequest(resolved=False), metadata=admin
    )
    assert not {a.alert_id for a in raised} & {a.alert_id for a in still_open.alerts}


async def test_running_servers_are_sampled_and_a_server_over_its_limit_is_enforced(
    env: RdpEnv,
) -> None:
    md, server = await running_server(env)
    session = await env.create_session(md, server.server_id)
    resources = env.domain_resources
    await resources.sample_once()
    usage = await env.resources.GetResourceUsage(
        resource_pb2.GetResourceUsageRequest(server_id=server.server_id), metadata=md
    )
    assert usage.server.current.memory_mb > 0  # the real xrdp listener's memory
    assert usage.system.current.memory_percent > 0
    assert [s.session_id for s in usage.sessions] == [session.session_id]

    limits = await resources.limits()
    over = Sample(
        "server", server.server_id, resources.clock.now(), memory_mb=limits.server_memory_mb * 1.5
    )
    record = await env.domain_servers.store.get(server.server_id)
    first = await resources.evaluate(over, limits, record)
    assert [(a.resource_type, a.severity) for a in first] == [("memory", "critical")]
    state = await env.sessions.GetRdpSession(
        session_pb2.GetRdpSessionRequest(session_id=session.session_id), metadata=md
    )
    assert state.session.state == session_pb2.RDP_SESSION_STATE_ACTIVE  # alert first
    await resources.evaluate(over, limits, record)  # still over: enforced
    state = await env.sessions.GetRdpSession(
        session_pb2.GetRdpSessionRequest(session_id=session.session_id), metadata=md
    )
    assert state.session.state == session_pb2.RDP_SESSION_STATE_TERMINATED
    assert state.session.termination_reason == "limit"
    mine = await env.resources.ListResourceAlerts(
        resource_pb2.ListResourceAlertsRequest(server_id=server.server_id), metadata=md
    )
    assert [a.alert_id for a in mine.alerts] == [first[0].alert_id]
    await env.delete_server(md, server.server_id)


async def test_a_session_over_its_own_limits_is_alerted_then_terminated_alone(
    env: RdpEnv,
) -> None:
    md, server = await running_server(env)
    heavy = await env.create_session(md, server.server_id)
    other = await env.create_session(md, server.server_id)
    resources = env.domain_resources
    limits = await resources.limits()
    record = await env.domain_servers.store.get(server.server_id)
    now = resources.clock.now()
    # within every per-server limit, over the session's CPU (50 %) and memory (2048 MB)
    assert limits.session_cpu_percent < 55 < limits.server_cpu_percent
    over = Sample("session", heavy.session_id, now, cpu_percent=55.0, memory_mb=2100.0)
    first = await resources.evaluate(over, limits, record)
    assert {(a.resource_type, a.severity, a.session_id, a.server_id) for a in first} == {
        ("cpu", "medium", heavy.session_id, server.server_id),
        ("memory", "critical", heavy.session_id, server.server_id),
    }

    async def state(session_id: str) -> int:
        got = await env.sessions.GetRdpSession(
            session_pb2.GetRdpSessionRequest(session_id=session_id), metadata=md
        )
        return got.session.state

    assert await state(heavy.session_id) == session_pb2.RDP_SESSION_STATE_ACTIVE  # alert first
    assert await resources.evaluate(over, limits, record) == []  # still over: enforced
    ended = await env.sessions.GetRdpSession(
        session_pb2.GetRdpSessionRequest(session_id=heavy.session_id), metadata=md
    )
    assert ended.session.state == session_pb2.RDP_SESSION_STATE_TERMINATED
    assert ended.session.termination_reason == "limit"
    assert await state(other.session_id) == session_pb2.RDP_SESSION_STATE_ACTIVE
    assert await env.domain_sessions.open_on_server(server.server_id) == [other.session_id]
    alerts = await env.resources.ListResourceAlerts(
        resource_pb2.ListResourceAlertsRequest(server_id=server.server_id), metadata=md
    )
    assert {a.alert_id for a in alerts.alerts} == {a.alert_id for a in first}
    assert all(a.session_id == heavy.session_id for a in alerts.alerts)
    kept = {a.resource_type: await resources.store.alert(a.alert_id) for a in first}
    enforced = {kind: alert.enforced for kind, alert in kept.items() if alert is not None}
    assert enforced == {"cpu": True, "memory": False}  # the first limit ended it
    # the server's own limits saw nothing: no server alert is open
    for kind in ("cpu", "memory"):
        assert await resources.store.open_alert(server.server_id, kind) is None
    calm = Sample("session", other.session_id, now, cpu_percent=10.0, memory_mb=100.0)
    assert await resources.evaluate(calm, limits, record) == []
    await env.sessions.TerminateRdpSession(
        session_pb2.TerminateRdpSessionRequest(session_id=other.session_id), metadata=md
    )
    await env.delete_server(md, server.server_id)


async def test_limits_are_changed_by_super_admins_only_and_apply(env: RdpEnv) -> None:
    admin = await role(env, access_pb2.ROLE_ADMIN)
    boss = await role(env, access_pb2.ROLE_SUPER_ADMIN)
    current = (
        await env.resources.GetResourceLimits(
            resource_pb2.GetResourceLimitsRequest(), metadata=admin
        )
    ).limits
    assert current.per_server.memory_mb == 4096 and current.thresholds.cpu_percent == 80
    _, md = await env.user()
    await env.create_server(md)
    servers = await env.domain_servers.store.count()
    request = resource_pb2.UpdateResourceLimitsRequest()
    getattr(request, "global").max_servers = servers
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await env.resources.UpdateResourceLimits(request, metadata=admin)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    updated = await env.resources.UpdateResourceLimits(request, metadata=boss)
    assert getattr(updated.limits, "global").max_servers == servers
    assert updated.limits.per_server.memory_mb == 4096  # untouched
    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await env.create_server(md)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert details(caught.value).reason == "LUCID_ERR_4302"
    finally:
        getattr(request, "global").max_servers = 50
        await env.resources.UpdateResourceLimits(request, metadata=boss)
    assert (await env.create_server(md)).state == rdp_pb2.SERVER_STATE_STOPPED


async def test_xrdp_settings_are_kept_checked_and_applied_at_the_next_start(
    env: RdpEnv,
) -> None:
    admin = await role(env, access_pb2.ROLE_ADMIN)
    boss = await role(env, access_pb2.ROLE_SUPER_ADMIN)
    current = (await env.xrdp.GetXrdpConfig(xrdp_pb2.GetXrdpConfigRequest(), metadata=admin)).config
    overall = getattr(current, "global")
    assert (overall.port, overall.idle_timeout_seconds, overall.session_timeout_seconds) == (
        3389,
        1800,
        3600,
    )
    assert current.security.encryption_level == xrdp_pb2.XRDP_ENCRYPTION_LEVEL_HIGH

    bad = xrdp_pb2.UpdateXrdpConfigRequest()
    getattr(bad, "global").idle_timeout_seconds = 4000  # above the 3600 s session timeout
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await env.xrdp.UpdateXrdpConfig(bad, metadata=boss)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    out_of_range = xrdp_pb2.UpdateXrdpConfigRequest()
    getattr(out_of_range, "global").max_connections = 1001
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await env.xrdp.UpdateXrdpConfig(out_of_range, metadata=boss)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    change = xrdp_pb2.UpdateXrdpConfigRequest(
        security=xrdp_pb2.XrdpSecuritySettings(
            encryption_level=xrdp_pb2.XRDP_ENCRYPTION_LEVEL_MEDIUM, tls_protocols=["TLSv1.3"]
        )
    )
    getattr(change, "global").idle_timeout_seconds = 600
    updated = await env.xrdp.UpdateXrdpConfig(change, metadata=boss)
    assert getattr(updated.config, "global").idle_timeout_seconds == 600
    assert getattr(updated.config, "global").session_timeout_seconds == 3600
    assert list(updated.config.security.tls_protocols) == ["TLSv1.3"]

    md, server = await running_server(env)
    ini = env.backend.files(server.server_id).xrdp_ini.read_text()
    assert "crypt_level=medium" in ini and "ssl_protocols=TLSv1.3" in ini
    await env.delete_server(md, server.server_id)

    started = await env.xrdp.StartXrdpService(xrdp_pb2.StartXrdpServiceRequest(), metadata=boss)
    assert started.status.state == xrdp_pb2.XRDP_SERVICE_STATE_RUNNING
    status = (await env.xrdp.GetXrdpStatus(xrdp_pb2.GetXrdpStatusRequest(), metadata=admin)).status
    assert status.version.startswith("0.9") and status.port == 3350
    restore = xrdp_pb2.UpdateXrdpConfigRequest(
        security=xrdp_pb2.XrdpSecuritySettings(
            encryption_level=xrdp_pb2.XRDP_ENCRYPTION_LEVEL_HIGH,
            tls_protocols=["TLSv1.2", "TLSv1.3"],
        )
    )
    getattr(restore, "global").idle_timeout_seconds = 1800
    await env.xrdp.UpdateXrdpConfig(restore, metadata=boss)
