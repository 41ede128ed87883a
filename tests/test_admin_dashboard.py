"""The dashboard over gRPC (spec 06 §7 check 6): the overview has its five sections,
counts live sessions from the sessions cluster, reads the chain, and a cluster that is
down turns the status to warning (critical for a core cluster). The live stream shows
a new session and its state changes; the metric history is what the overviews saw."""

from __future__ import annotations

import asyncio

import grpc

from lucid.admin.v1 import admin_pb2, dashboard_pb2, dashboard_pb2_grpc
from lucid.common.v1 import access_pb2
from lucid.sessions.v1 import sessions_pb2
from tests.admin_support import AdminEnv, admin_fixture, refused
from tests.waiting import eventually

D = dashboard_pb2
admin = admin_fixture()


def dashboard(admin: AdminEnv) -> dashboard_pb2_grpc.DashboardServiceStub:
    return dashboard_pb2_grpc.DashboardServiceStub(admin.channel)


async def overview(admin: AdminEnv) -> D.SystemOverview:
    md = await admin.md(access_pb2.ROLE_ADMIN)
    return (await dashboard(admin).GetOverview(D.GetOverviewRequest(), metadata=md)).overview


async def health(admin: AdminEnv) -> D.GetSystemHealthResponse:
    md = await admin.md(access_pb2.ROLE_ADMIN)
    return await dashboard(admin).GetSystemHealth(D.GetSystemHealthRequest(), metadata=md)


async def test_overview_has_five_sections_and_counts_live_sessions(admin: AdminEnv) -> None:
    before = await overview(admin)
    for section in (
        "system_status",
        "active_sessions",
        "node_status",
        "blockchain_status",
        "resource_usage",
    ):
        assert before.HasField(section), section
    owner = await admin.sessions.token()
    await admin.sessions.recording(owner)
    await admin.sessions.create(owner)
    after = await overview(admin)
    assert after.active_sessions.active == before.active_sessions.active + 1
    assert after.active_sessions.idle == before.active_sessions.idle + 1
    assert 0 < after.resource_usage.memory_percent <= 100
    assert 0 < after.resource_usage.disk_percent <= 100
    assert after.system_status.version


async def test_a_down_cluster_degrades_the_status(admin: AdminEnv) -> None:
    report = await health(admin)
    by_name = {d.name: d for d in report.dependencies}
    assert by_name["sessions"].status == admin_pb2.HEALTH_STATUS_HEALTHY
    assert by_name["auth"].status == admin_pb2.HEALTH_STATUS_HEALTHY
    # Nothing serves on the gateway's port in this environment: a warning, named.
    assert by_name["gateway"].status == admin_pb2.HEALTH_STATUS_WARNING
    assert report.status in {admin_pb2.HEALTH_STATUS_WARNING, admin_pb2.HEALTH_STATUS_CRITICAL}

    await admin.sessions.mesh.stop("sessions")
    try:

        async def sessions_critical() -> bool:
            found = {d.name: d for d in (await health(admin)).dependencies}
            return found["sessions"].status == admin_pb2.HEALTH_STATUS_CRITICAL

        await eventually(sessions_critical, timeout_s=15, what="sessions reported down")
        assert (await health(admin)).status == admin_pb2.HEALTH_STATUS_CRITICAL
    finally:
        await admin.sessions.mesh.start("sessions")


async def test_users_may_not_see_the_dashboard(admin: AdminEnv) -> None:
    md = await admin.md(access_pb2.ROLE_USER)
    error = await refused(dashboard(admin).GetOverview(D.GetOverviewRequest(), metadata=md))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


async def session_change(
    stream: object, session_id: str, state: int
) -> dashboard_pb2.StreamDashboardResponse:
    """The first session change of ``session_id`` into ``state`` the stream sends."""
    async with asyncio.timeout(30):
        while True:
            event = await stream.read()  # type: ignore[attr-defined]
            found = event.session_change
            if found.session_id == session_id and found.state == state:
                return event


async def test_the_stream_shows_sessions_as_they_change(admin: AdminEnv) -> None:
    md = await admin.md(access_pb2.ROLE_ADMIN)

    stream = dashboard(admin).StreamDashboard(
        D.StreamDashboardRequest(
            event_types=[
                D.DASHBOARD_EVENT_TYPE_CONNECTION_ESTABLISHED,
                D.DASHBOARD_EVENT_TYPE_METRIC_UPDATE,
                D.DASHBOARD_EVENT_TYPE_SESSION_CHANGE,
            ],
            interval_seconds=1,
        ),
        metadata=md,
    )
    try:
        first = await stream.read()
        assert first.connection_established.interval_seconds == 1
        assert first.connection_established.stream_id
        metrics = await stream.read()
        assert metrics.event_type == D.DASHBOARD_EVENT_TYPE_METRIC_UPDATE
        assert 0 < metrics.metric_update.resource_usage.memory_percent <= 100

        owner = await admin.sessions.token()
        created = await admin.sessions.create(owner)
        event = await session_change(stream, created.session_id, admin_pb2.ADMIN_SESSION_STATE_IDLE)
        assert event.session_change.kind == "created"
        await admin.sessions.sessions.StartRecording(
            sessions_pb2.StartRecordingRequest(session_id=created.session_id), metadata=owner
        )
        event = await session_change(
            stream, created.session_id, admin_pb2.ADMIN_SESSION_STATE_ACTIVE
        )
        assert event.session_change.kind == "state"
        assert event.session_change.user_id == created.owner_user_id
    finally:
        stream.cancel()


async def test_users_may_not_watch_the_stream(admin: AdminEnv) -> None:
    md = await admin.md(access_pb2.ROLE_USER)
    stream = dashboard(admin).StreamDashboard(D.StreamDashboardRequest(), metadata=md)
    error = await refused(stream.read())
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_metrics_are_the_history_of_what_overviews_saw(admin: AdminEnv) -> None:
    md = await admin.md(access_pb2.ROLE_ADMIN)
    sessions = D.GetMetricsRequest(metric=D.DASHBOARD_METRIC_SESSIONS)
    before = await dashboard(admin).GetMetrics(sessions, metadata=md)
    owner = await admin.sessions.token()
    await admin.sessions.create(owner)
    seen = await overview(admin)
    after = await dashboard(admin).GetMetrics(sessions, metadata=md)
    assert after.unit == "sessions" and after.timeframe == admin_pb2.TIMEFRAME_1H
    assert len(after.points) == len(before.points) + 1
    assert after.points[-1].value == seen.active_sessions.total
    assert after.min <= after.average <= after.max == max(p.value for p in after.points)
    memory = await dashboard(admin).GetMetrics(
        D.GetMetricsRequest(metric=D.DASHBOARD_METRIC_MEMORY), metadata=md
    )
    assert memory.unit == "percent" and 0 < memory.points[-1].value <= 100

    admin.clock.advance(2 * 3600)
    hour = await dashboard(admin).GetMetrics(sessions, metadata=md)
    assert not hour.points and hour.max == 0
    day = await dashboard(admin).GetMetrics(
        D.GetMetricsRequest(metric=D.DASHBOARD_METRIC_SESSIONS, timeframe=admin_pb2.TIMEFRAME_24H),
        metadata=md,
    )
    assert len(day.points) == len(after.points)

    error = await refused(dashboard(admin).GetMetrics(D.GetMetricsRequest(), metadata=md))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    user = await admin.md(access_pb2.ROLE_USER)
    error = await refused(dashboard(admin).GetMetrics(sessions, metadata=user))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_published_session_events_reach_the_stream_between_ticks(admin: AdminEnv) -> None:
    """Ticks 60 s apart: the changes arrive within seconds, from the events sessions
    publishes on the mesh (Redis Streams), not from a tick's reading."""
    md = await admin.md(access_pb2.ROLE_ADMIN)
    stream = dashboard(admin).StreamDashboard(
        D.StreamDashboardRequest(
            event_types=[
                D.DASHBOARD_EVENT_TYPE_CONNECTION_ESTABLISHED,
                D.DASHBOARD_EVENT_TYPE_METRIC_UPDATE,
                D.DASHBOARD_EVENT_TYPE_SESSION_CHANGE,
            ],
            interval_seconds=60,
        ),
        metadata=md,
    )
    try:
        first = await stream.read()
        assert first.connection_established.interval_seconds == 60
        tick = await stream.read()  # the first tick is over: the next one is 60 s away
        assert tick.event_type == D.DASHBOARD_EVENT_TYPE_METRIC_UPDATE
        owner = await admin.sessions.token()
        loop = asyncio.get_running_loop()
        started = loop.time()
        created = await admin.sessions.create(owner)
        event = await asyncio.wait_for(
            session_change(stream, created.session_id, admin_pb2.ADMIN_SESSION_STATE_IDLE), 20
        )
        assert event.session_change.kind == "created"
        assert event.session_change.user_id == created.owner_user_id
        await admin.sessions.sessions.StartRecording(
            sessions_pb2.StartRecordingRequest(session_id=created.session_id), metadata=owner
        )
        event = await asyncio.wait_for(
            session_change(stream, created.session_id, admin_pb2.ADMIN_SESSION_STATE_ACTIVE), 20
        )
        assert event.session_change.kind == "state"
        assert loop.time() - started < 45, "before the next tick"
    finally:
        stream.cancel()
