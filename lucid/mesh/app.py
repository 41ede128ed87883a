"""Cluster 10, service mesh: wiring of its server.

Registration and discovery (for setups without Consul), the mesh CA, traffic and
security policy, the plane policy table, messages and events on Redis Streams.
Owns the collections of ``lucid.mesh.schema`` and the Redis prefixes
``lucid:mesh:`` and ``lucid:events:``. Service JWTs are signed with the mesh's own
sealed RSA keys (``mesh_signing_keys``); certificate and token issuing and rotation
are audited (``mesh_audit_events``). Sidecar configuration (``sidecar_configs``) is
applied to the Envoy sidecars whose site files ``lucid up --sidecars`` writes in
``var/envoy`` (``lucid.mesh.sidecars``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from functools import cache

from lucid.lib.sealing import Sealer
from lucid.mesh import schema
from lucid.mesh.discovery import Registry
from lucid.mesh.identity import Identity
from lucid.mesh.messaging import Messaging
from lucid.mesh.policies import Policies
from lucid.mesh.servicers.discovery import ServiceDiscoveryServicer
from lucid.mesh.servicers.identity import IdentityServicer
from lucid.mesh.servicers.messaging import MessagingServicer
from lucid.mesh.servicers.policy import PolicyServicer
from lucid.mesh.servicers.sidecar import SidecarServicer
from lucid.mesh.sidecars import Sidecars
from lucid.mesh.store.certificates import CertificateStore
from lucid.mesh.store.events import EventBus
from lucid.mesh.store.messages import MessageQueue
from lucid.mesh.store.policies import PolicyStore
from lucid.mesh.store.proxies import ProxyStore
from lucid.mesh.store.registry import RegistryStore
from lucid.mesh.store.settings import SettingsStore
from lucid.mesh.store.sidecars import SidecarConfigStore
from lucid.mesh.tokens import ServiceTokens
from lucid.mesh.v1 import (
    discovery_pb2_grpc,
    identity_pb2_grpc,
    messaging_pb2_grpc,
    policy_pb2_grpc,
    sidecar_pb2_grpc,
)
from lucid.runtime.audit import AuditTrail
from lucid.runtime.datastores import redis_client
from lucid.runtime.planes import default_policy
from lucid.runtime.server import ClusterApp, Runtime
from lucid.runtime.tls import CertificateAuthority

log = logging.getLogger("lucid.mesh")

SWEEP_S = 5.0


async def build(runtime: Runtime) -> ClusterApp:
    """The mesh server."""
    settings = runtime.settings
    db = runtime.datastores.db
    # Blocking stream reads outlive the shared client's socket timeout: a client of
    # their own, decoding to str.
    streams = redis_client(
        settings.redis_url,
        decode_responses=True,
        socket_connect_timeout=settings.dependency_timeout_s,
    )

    @cache
    def authority() -> CertificateAuthority:
        return CertificateAuthority.load(settings.certs_dir, Sealer(settings.sealing_passphrase()))

    registrations = RegistryStore(db, runtime.datastores.cache)
    registry = Registry(registrations, runtime.clock)
    sidecars = Sidecars(
        registrations,
        SidecarConfigStore(db),
        ProxyStore(settings.var_dir / "envoy"),
        runtime.clock,
    )
    identity = Identity(
        authority, CertificateStore(db), default_policy(), runtime.catalog, runtime.clock
    )
    tokens = ServiceTokens(
        db[schema.SIGNING_KEYS], Sealer(settings.sealing_passphrase()), runtime.clock
    )
    audit = AuditTrail(db[schema.AUDIT], runtime.clock)
    policies = Policies(PolicyStore(db), SettingsStore(db), default_policy(), runtime.clock)
    messaging = Messaging(
        MessageQueue(db[schema.MESSAGES], streams), EventBus(streams), runtime.clock
    )

    async def sweep() -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            with contextlib.suppress(Exception):
                await registry.sweep()

    async def close_streams() -> None:
        await streams.aclose()

    return ClusterApp(
        servicers=[
            (
                discovery_pb2_grpc.add_ServiceDiscoveryServiceServicer_to_server,
                ServiceDiscoveryServicer(registry),
            ),
            (
                identity_pb2_grpc.add_IdentityServiceServicer_to_server,
                IdentityServicer(identity, tokens, audit),
            ),
            (policy_pb2_grpc.add_PolicyServiceServicer_to_server, PolicyServicer(policies)),
            (
                messaging_pb2_grpc.add_MessagingServiceServicer_to_server,
                MessagingServicer(messaging),
            ),
            (sidecar_pb2_grpc.add_SidecarServiceServicer_to_server, SidecarServicer(sidecars)),
        ],
        collections=schema.COLLECTIONS,
        tasks=[sweep],
        on_stop=[close_streams],
    )
