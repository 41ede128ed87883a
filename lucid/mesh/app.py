"""Cluster 10, service mesh: wiring of its server.

Registration and discovery (for setups without Consul), the mesh CA, traffic and
security policy, the plane policy table, messages and events on Redis Streams.
Owns the collections of ``lucid.mesh.schema`` and the Redis prefixes
``lucid:mesh:`` and ``lucid:events:``. Sidecar configuration, service tokens and
certificate rotation answer UNIMPLEMENTED (``LUCID_ERR_5011``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from functools import cache

import redis.asyncio as aioredis
from lucid.mesh.v1 import (
    discovery_pb2_grpc,
    identity_pb2_grpc,
    messaging_pb2_grpc,
    policy_pb2_grpc,
)

from lucid.lib.sealing import Sealer
from lucid.mesh import schema
from lucid.mesh.events import EventBus
from lucid.mesh.messages import MessageQueue
from lucid.mesh.repository import CertificateStore, PolicyStore, RegistryStore, SettingsStore
from lucid.mesh.servicer import (
    DiscoveryService,
    IdentityService,
    MessagingService,
    PolicyService,
)
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
    streams = aioredis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_connect_timeout=settings.dependency_timeout_s,
    )

    @cache
    def authority() -> CertificateAuthority:
        return CertificateAuthority.load(settings.certs_dir, Sealer(settings.sealing_passphrase()))

    discovery = DiscoveryService(RegistryStore(db, runtime.datastores.cache), runtime.clock)
    identity = IdentityService(
        authority, CertificateStore(db), default_policy(), runtime.catalog, runtime.clock
    )
    policy = PolicyService(PolicyStore(db), SettingsStore(db), default_policy(), runtime.clock)
    messaging = MessagingService(
        MessageQueue(db[schema.MESSAGES], streams), EventBus(streams), runtime.clock
    )

    async def sweep() -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            with contextlib.suppress(Exception):
                await discovery.sweep()

    async def close_streams() -> None:
        await streams.aclose()

    return ClusterApp(
        servicers=[
            (discovery_pb2_grpc.add_ServiceDiscoveryServiceServicer_to_server, discovery),
            (identity_pb2_grpc.add_IdentityServiceServicer_to_server, identity),
            (policy_pb2_grpc.add_PolicyServiceServicer_to_server, policy),
            (messaging_pb2_grpc.add_MessagingServiceServicer_to_server, messaging),
        ],
        collections=schema.COLLECTIONS,
        tasks=[sweep],
        on_stop=[close_streams],
    )
