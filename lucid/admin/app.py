"""Cluster 06, admin interface: wiring of its server.

The operator console: dashboard, sessions, nodes, anchoring, payouts, configuration,
audit and emergency controls.
Owns the collections of ``lucid.admin.schema`` and the Redis prefix ``lucid:admin:``.
Every rpc of its contract is registered and built.
"""

from __future__ import annotations

import functools

from lucid.admin import retention, schema
from lucid.admin.anchorings import Anchorings
from lucid.admin.audit_anchoring import AuditAnchoring
from lucid.admin.auditlog import AuditLog
from lucid.admin.chain_queue import ChainQueue
from lucid.admin.clusters import (
    AuthAsAdmin,
    MeshReader,
    RdpClient,
    SessionsAsAdmin,
    SessionsClient,
)
from lucid.admin.configs import Configs
from lucid.admin.emergency import Emergency
from lucid.admin.intake import AuditIntake
from lucid.admin.live import Live
from lucid.admin.me import Me
from lucid.admin.mesh_events import LiveHub, MeshEvents, group_name
from lucid.admin.metrics import Metrics
from lucid.admin.node_ops import NodeOps
from lucid.admin.nodes_link import NodesAsAdmin
from lucid.admin.overview import Dashboard
from lucid.admin.payments_link import PaymentsAsAdmin
from lucid.admin.payout_ops import PayoutOps
from lucid.admin.resync import Resyncs
from lucid.admin.roles import Roles
from lucid.admin.servicers.audit import AuditServicer
from lucid.admin.servicers.auth import AdminAuthServicer
from lucid.admin.servicers.blockchain import AdminBlockchainServicer
from lucid.admin.servicers.config import ConfigServicer
from lucid.admin.servicers.dashboard import DashboardServicer
from lucid.admin.servicers.emergency import EmergencyServicer
from lucid.admin.servicers.nodes import AdminNodeServicer
from lucid.admin.servicers.payouts import AdminPayoutServicer
from lucid.admin.servicers.rbac import AdminRbacServicer
from lucid.admin.servicers.sessions import AdminSessionServicer
from lucid.admin.servicers.users import AdminUserServicer
from lucid.admin.session_views import SessionViews
from lucid.admin.stepup import StepUps
from lucid.admin.store.anchoring_ops import AnchoringOpStore
from lucid.admin.store.audit_anchors import AuditAnchorStore
from lucid.admin.store.auditchain import AuditChainStore
from lucid.admin.store.config import ConfigStore
from lucid.admin.store.emergency_logs import EmergencyLogStore
from lucid.admin.store.metric_samples import MetricSampleStore
from lucid.admin.store.roles import RoleStore
from lucid.admin.store.state import StateStore
from lucid.admin.store.stepups import StepUpStore
from lucid.admin.terminations import Terminations
from lucid.admin.users import Users
from lucid.admin.v1 import (
    admin_pb2_grpc,
    audit_pb2_grpc,
    config_pb2_grpc,
    dashboard_pb2_grpc,
    emergency_pb2_grpc,
    operations_pb2_grpc,
)
from lucid.lib.clock import Clock
from lucid.lib.sealing import Sealer
from lucid.runtime.config import CLUSTERS
from lucid.runtime.keystore import SealedKeyStore
from lucid.runtime.server import ClusterApp, Runtime


async def build(runtime: Runtime, clock: Clock | None = None) -> ClusterApp:
    """The admin server (its domain on ``clock`` if given, for tests that move time)."""
    clock = clock or runtime.clock
    db = runtime.datastores.db
    state = StateStore(db)
    chain_store = AuditChainStore(db)
    audit = AuditLog(chain_store, state, clock)
    auth = AuthAsAdmin(runtime.channels)
    stepup_store = StepUpStore(runtime.datastores.cache)
    stepups = StepUps(auth, stepup_store, audit, clock)
    emergency = Emergency(
        state,
        EmergencyLogStore(db),
        audit,
        sessions=SessionsClient(runtime.channels),
        rdp=RdpClient(runtime.channels),
        stepups=stepups,
        clock=clock,
    )
    as_admin = SessionsAsAdmin(runtime.channels)
    terminations = Terminations(as_admin, audit)
    configs = Configs(ConfigStore(db), audit, clock)
    role_store = RoleStore(db)
    roles = Roles(role_store, audit, clock)
    me = Me(auth, role_store, stepup_store, clock)
    nodes = NodesAsAdmin(runtime.channels)
    metrics = Metrics(MetricSampleStore(db), clock)
    others = tuple(c for c in CLUSTERS if c != "admin")
    dashboard = Dashboard(
        MeshReader(runtime.channels),
        SessionViews(as_admin),
        fleet=nodes,
        recorder=metrics,
        clusters=others,
        disk_path=runtime.settings.var_dir,
        clock=clock,
    )
    mesh_events = MeshEvents(runtime.channels)
    database = runtime.settings.mongodb_db
    hub = LiveHub(mesh_events, runtime.clock.timestamp, group_name("admin-live", database))
    intake = AuditIntake(mesh_events, audit, runtime.clock, group_name("admin-audit", database))
    anchoring = AuditAnchoring(
        chain_store,
        AuditAnchorStore(db),
        SealedKeyStore(db[schema.KEYS], Sealer(runtime.settings.sealing_passphrase()), clock),
        runtime.channels,
        clock=runtime.clock,
    )
    return ClusterApp(
        servicers=[
            (admin_pb2_grpc.add_AdminAuthServiceServicer_to_server, AdminAuthServicer(stepups, me)),
            (config_pb2_grpc.add_ConfigServiceServicer_to_server, ConfigServicer(configs)),
            (admin_pb2_grpc.add_AdminRbacServiceServicer_to_server, AdminRbacServicer(roles)),
            (
                admin_pb2_grpc.add_AdminUserServiceServicer_to_server,
                AdminUserServicer(Users(runtime.channels, roles, audit)),
            ),
            (
                operations_pb2_grpc.add_AdminBlockchainServiceServicer_to_server,
                AdminBlockchainServicer(
                    dashboard,
                    Anchorings(as_admin, AnchoringOpStore(db), audit, clock),
                    ChainQueue(runtime.channels),
                    Resyncs(runtime.channels, audit),
                ),
            ),
            (
                dashboard_pb2_grpc.add_DashboardServiceServicer_to_server,
                DashboardServicer(dashboard, Live(dashboard, nodes, hub), metrics),
            ),
            (
                operations_pb2_grpc.add_AdminSessionServiceServicer_to_server,
                AdminSessionServicer(SessionViews(as_admin), terminations),
            ),
            (
                operations_pb2_grpc.add_AdminNodeServiceServicer_to_server,
                AdminNodeServicer(NodeOps(nodes, audit)),
            ),
            (
                operations_pb2_grpc.add_AdminPayoutServiceServicer_to_server,
                AdminPayoutServicer(PayoutOps(PaymentsAsAdmin(runtime.channels), audit)),
            ),
            (audit_pb2_grpc.add_AuditServiceServicer_to_server, AuditServicer(audit)),
            (
                emergency_pb2_grpc.add_EmergencyServiceServicer_to_server,
                EmergencyServicer(emergency),
            ),
        ],
        collections=schema.COLLECTIONS,
        on_ready=[roles.seed],
        tasks=[
            functools.partial(retention.run, audit, configs),
            hub.run,
            intake.run,
            anchoring.run,
        ],
    )
