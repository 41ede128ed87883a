"""Cluster 04, RDP services: wiring of its server.

Per-user xrdp server instances (real xrdp listeners and the shared session manager),
their ports and desktop accounts, client RDP sessions recorded into cluster 03, and
replay of those recordings. Owns the collections of ``lucid.rdp.schema``, the
instance directories (``<var>/rdp``) and the Redis prefix ``lucid:rdp:``.
"""

from __future__ import annotations

import grpc

from lucid.lib.sealing import Sealer
from lucid.rdp import schema
from lucid.rdp.actor import Actor
from lucid.rdp.audit import Auditor
from lucid.rdp.backend import RdpBackend, XrdpBackend
from lucid.rdp.config import RdpConfig
from lucid.rdp.limits import CallLimits
from lucid.rdp.rdpsessions import RdpSessions
from lucid.rdp.recorder import Recorder
from lucid.rdp.recording import Recordings
from lucid.rdp.records import Limits
from lucid.rdp.replay import AnchorSource, Replay, TrustAnchors
from lucid.rdp.resources import Resources, SessionControl
from lucid.rdp.sampling import Sampler
from lucid.rdp.servers import Servers
from lucid.rdp.servicers.resources import ResourceServicer
from lucid.rdp.servicers.servers import RdpServerServicer
from lucid.rdp.servicers.sessions import RdpSessionServicer
from lucid.rdp.servicers.xrdp import XrdpServicer
from lucid.rdp.sesman import SessionManager
from lucid.rdp.store.resources import ResourceStore
from lucid.rdp.store.servers import ServerStore
from lucid.rdp.store.sessions import SessionStore
from lucid.rdp.store.settings import SettingsStore
from lucid.rdp.usage import UsageReports
from lucid.rdp.v1 import rdp_pb2_grpc, resource_pb2_grpc, session_pb2_grpc, xrdp_pb2_grpc
from lucid.rdp.xrdp import XrdpDaemon
from lucid.runtime.audit import AuditTrail
from lucid.runtime.limits import RateLimiter
from lucid.runtime.server import ClusterApp, Runtime

SERVICE_ACTOR = Actor(user_id="", is_admin=True, service="rdp")


async def build(
    runtime: Runtime,
    config: RdpConfig | None = None,
    backend: RdpBackend | None = None,
    anchor: AnchorSource | None = None,
) -> ClusterApp:
    """The rdp server."""
    settings, clock, db = runtime.settings, runtime.clock, runtime.datastores.db
    config = config or RdpConfig.of(settings)
    sealer = Sealer(settings.sealing_passphrase())
    sesman = SessionManager(config.instances_dir / "sesman")
    backend = backend or XrdpBackend(
        config.instances_dir,
        settings.certs_dir,
        sealer,
        sesman,
        start_wait_s=config.start_wait_s,
    )
    auditor = Auditor(AuditTrail(db[schema.AUDIT], clock))
    server_store = ServerStore(db)
    settings_store = SettingsStore(db)
    resources = Resources(
        ResourceStore(db),
        settings_store,
        server_store,
        default_limits=Limits(max_servers=config.max_servers, max_sessions=config.max_sessions),
        clock=clock,
        auditor=auditor,
        interval_s=config.resource_interval_s,
        sampler=Sampler(config.instances_dir),
    )
    servers = Servers(
        server_store,
        backend,
        sealer=sealer,
        config=config,
        clock=clock,
        auditor=auditor,
        limits=resources.limits,
        xrdp_settings=settings_store.xrdp,
    )
    daemon = XrdpDaemon(settings_store, sesman, server_store, backend, clock=clock, auditor=auditor)
    recordings = Recordings(runtime.channels)
    recorder = Recorder(
        backend,
        recordings,
        frame_rate=config.frame_rate,
        resolution=config.resolution,
        segment_s=config.segment_s,
    )
    runtime.metrics.gauge(
        "recorder_fps",
        "Frames stored per second of each running recording.",
        lambda: {(sid,): fps for sid, fps in recorder.rates().items()},
        labels=("session_id",),
    )
    runtime.metrics.gauge(
        "recordings", "Recordings running in this process.", lambda: len(recorder.rates())
    )
    sessions = RdpSessions(
        SessionStore(db),
        servers,
        recordings=recordings,
        recorder=recorder,
        config=config,
        clock=clock,
        auditor=auditor,
        limits=resources.limits,
    )
    servers.sessions = sessions

    async def end_on_server(server_id: str, reason: str) -> int:
        return await sessions.terminate_on_server(server_id, reason, SERVICE_ACTOR)

    async def end(session_id: str, reason: str) -> None:
        await sessions.terminate(SERVICE_ACTOR, session_id, reason=reason, force=True)

    resources.sessions = SessionControl(sessions.open_on_server, end_on_server, end)

    async def sessions_channel() -> grpc.aio.Channel:
        return await runtime.channels.channel("sessions")

    replay = Replay(sessions_channel, anchor or TrustAnchors(runtime.channels).get)
    calls = CallLimits(RateLimiter(runtime.datastores.cache, clock, "rdp"))

    async def monitor() -> None:
        await servers.monitor()

    async def sampler() -> None:
        await resources.monitor()

    async def sweeper() -> None:
        await sessions.sweeper(SERVICE_ACTOR)

    async def load_settings() -> None:
        current = await daemon.config()
        sesman.limits = (current.max_connections, current.idle_timeout_s)

    async def resume() -> None:
        await sessions.resume_recordings()

    async def stop() -> None:
        await recorder.stop_all()
        await servers.stop_all()
        await sesman.stop()

    return ClusterApp(
        servicers=[
            (
                rdp_pb2_grpc.add_RdpServerServiceServicer_to_server,
                RdpServerServicer(servers, calls),
            ),
            (
                session_pb2_grpc.add_RdpSessionServiceServicer_to_server,
                RdpSessionServicer(sessions, replay, calls),
            ),
            (
                resource_pb2_grpc.add_ResourceServiceServicer_to_server,
                ResourceServicer(resources, UsageReports(resources, servers, sessions), calls),
            ),
            (xrdp_pb2_grpc.add_XrdpServiceServicer_to_server, XrdpServicer(daemon, calls)),
        ],
        collections=schema.COLLECTIONS,
        tasks=[monitor, sweeper, sampler],
        on_ready=[load_settings, resume],
        on_stop=[stop],
    )
