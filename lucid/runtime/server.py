"""The server factory: one asyncio gRPC server per cluster, built the same way for all.

A cluster package supplies a ``build(runtime) -> ClusterApp`` coroutine (its
servicers, collections and background work). ``ClusterServer`` does the rest:
mTLS on the port of the port map, the call pipeline, ``grpc.health.v1`` driven by
dependency probes, server reflection, schema creation once MongoDB answers, Prometheus
``/metrics`` on the cluster's metrics port (loopback), registration in the service
registry (with that port in its meta), and a graceful stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.metadata
import io
import logging
import signal
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from lucid.auth.v1 import auth_pb2, auth_pb2_grpc  # the auth contract, not the cluster
from lucid.lib.clock import Clock, SystemClock
from lucid.runtime import tls, tracing
from lucid.runtime.channels import Channels
from lucid.runtime.config import Settings
from lucid.runtime.contracts import Catalog, MethodInfo, catalog
from lucid.runtime.datastores import Datastores
from lucid.runtime.events import EventPublisher
from lucid.runtime.health import HealthMonitor
from lucid.runtime.identity import identity_for
from lucid.runtime.lockdown import LockdownGate, enforcing_clusters
from lucid.runtime.metrics import Metrics, MetricsEndpoint
from lucid.runtime.pipeline import CallPipeline, PipelinedServer
from lucid.runtime.registry import Instance, Registry, create_registry
from lucid.runtime.revocations import RedisRevocationList
from lucid.runtime.schema import (
    CollectionSpec,
    SchemaDeclarer,
    TtlSweeper,
    declaration_of,
    ensure_schema,
)
from lucid.runtime.tokens import (
    JwkDict,
    KeySource,
    TokenVerifier,
)
from lucid.storage.v1 import schema_pb2, schema_pb2_grpc  # the storage contract

log = logging.getLogger("lucid.server")
STOP_STEP_S = 10.0
"""How long a stop waits for its background tasks, and for each ``on_stop`` hook."""

try:
    VERSION = importlib.metadata.version("lucid")
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    VERSION = "0.0.0"

AddServicer = Callable[[Any, Any], None]


@dataclass
class ClusterApp:
    """What a cluster brings to its server."""

    servicers: Sequence[tuple[AddServicer, object]]
    """Pairs of a generated ``add_…Servicer_to_server`` and the servicer instance."""
    collections: Sequence[CollectionSpec] = ()
    """The collections (and indexes) the cluster owns."""
    blob_paths: Sequence[str] = ()
    """Paths on the blob volume the cluster owns, relative to ``settings.blob_dir``."""
    declare_schema: bool = True
    """Send the schema declaration to storage's ``DeclareSchema`` once ready."""
    requires_mongo: bool = True
    """Whether the cluster cannot serve without MongoDB."""
    requires_redis: bool = True
    """Whether the cluster cannot serve without Redis (token revocation needs it)."""
    key_source: KeySource | None = None
    """Where token verification keys come from; default: auth's GetJwks."""
    tasks: Sequence[Callable[[], Coroutine[Any, Any, None]]] = ()
    """Background coroutines run while the server serves."""
    on_ready: Sequence[Callable[[], Awaitable[None]]] = ()
    """Run once, after the dependencies first answer and the schema exists."""
    on_stop: Sequence[Callable[[], Awaitable[None]]] = ()
    """Run during the graceful stop."""
    extra_methods: Sequence[MethodInfo] = ()
    """Rpcs of foreign contracts the servicers implement (e.g. Envoy's rate-limit
    service), with the access rule the pipeline applies to them."""


class Runtime:
    """What the runtime hands a cluster: settings, stores, channels, clock, contracts."""

    def __init__(
        self,
        settings: Settings,
        cluster: str,
        *,
        registry: Registry | None = None,
        clock: Clock | None = None,
        identity: str | None = None,
    ) -> None:
        self.settings = settings
        self.cluster = cluster
        self.identity = identity_for(identity or cluster)
        self.catalog: Catalog = catalog()
        self._owns_registry = registry is None
        self.registry = registry or create_registry(settings)
        self.clock = clock or SystemClock()
        self.datastores = Datastores(settings, mongo=True, redis=True)
        self.channels = Channels(
            settings,
            identity=self.identity.name,
            registry=self.registry,
            catalog=self.catalog,
            clock=self.clock,
        )
        self.metrics = Metrics(cluster, sample_s=settings.metrics_sample_s)
        breakers = self.channels.breakers
        self.metrics.gauge(
            "breaker_state",
            "Circuit breaker of each upstream cluster: 1 for its current state.",
            lambda: {
                (upstream, state): float(state == current)
                for upstream, current in breakers.snapshot().items()
                for state in ("closed", "open", "half_open")
            },
            labels=("upstream", "state"),
        )
        self.events = EventPublisher(self.channels)

    async def close(self) -> None:
        """Closes channels and store clients (events in flight get a second)."""
        await self.events.drain()
        await self.channels.close()
        if self._owns_registry:
            await self.registry.close()
        await self.datastores.close()


ClusterBuilder = Callable[[Runtime], Awaitable[ClusterApp]]


class RemoteJwks:
    """Fetches verification keys from the auth cluster's GetJwks."""

    def __init__(self, channels: Channels) -> None:
        self._channels = channels

    async def fetch(self) -> Sequence[JwkDict]:
        stub = await self._channels.stub("auth", auth_pb2_grpc.AuthServiceStub)
        response = await stub.GetJwks(auth_pb2.GetJwksRequest(), timeout=5)
        return [
            {"kty": k.kty, "crv": k.crv, "x": k.x, "kid": k.kid, "use": k.use, "alg": k.alg}
            for k in response.keys
        ]


def _generated_bases(servicer: object) -> dict[str, type]:
    """The generated servicer base classes of a servicer, by full service name."""
    bases = {}
    for base in type(servicer).__mro__:
        module = getattr(base, "__module__", "")
        if module.endswith("_pb2_grpc") and base.__name__.endswith("Servicer"):
            package = module.rsplit(".", 1)[0]
            bases[f"{package}.{base.__name__.removesuffix('Servicer')}"] = base
    return bases


def _unimplemented(servicer: object, catalog: Catalog) -> set[str]:
    """Paths of the rpcs a servicer inherits unchanged from its generated base."""
    missing: set[str] = set()
    for service, base in _generated_bases(servicer).items():
        for info in catalog.methods.values():
            if info.service == service and getattr(type(servicer), info.name) is getattr(
                base, info.name
            ):
                missing.add(info.path)
    return missing


def contract_servicers(
    catalog: Catalog, cluster: str, provided: Sequence[object]
) -> list[tuple[AddServicer, object]]:
    """The generated base servicer of every service of a cluster that no servicer provides.

    Registering them keeps the whole contract visible (reflection, health) while
    each rpc not built yet answers UNIMPLEMENTED with ``LUCID_ERR_5011``.
    """
    covered = {name for servicer in provided for name in _generated_bases(servicer)}
    found: list[tuple[AddServicer, object]] = []
    for service in catalog.services_of(cluster):
        if service in covered:
            continue
        info = next(m for m in catalog.methods.values() if m.service == service)
        module = importlib.import_module(info.grpc_module)
        name = service.rsplit(".", 1)[1]
        found.append(
            (getattr(module, f"add_{name}Servicer_to_server"), getattr(module, f"{name}Servicer")())
        )
    return found


@dataclass
class ClusterServer:
    """A running cluster server."""

    runtime: Runtime
    app: ClusterApp
    port: int | None = None
    instance_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def __post_init__(self) -> None:
        settings = self.runtime.settings
        cluster = self.runtime.cluster
        services = self.runtime.catalog.services_of(cluster)
        stores = self.runtime.datastores
        required = []
        if self.app.requires_mongo:
            required += [d for d in stores.dependencies() if d.name == "mongodb"]
        if self.app.requires_redis:
            required += [d for d in stores.dependencies() if d.name == "redis"]
        self.health = HealthMonitor(
            services,
            required,
            interval_s=settings.health_interval_s,
            timeout_s=settings.dependency_timeout_s,
        )
        source = self.app.key_source or RemoteJwks(self.runtime.channels)
        self.revocations = RedisRevocationList(stores.cache)
        self.verifier = TokenVerifier(
            source,
            revocations=self.revocations,
            clock=self.runtime.clock,
            refresh_s=settings.jwks_refresh_s,
        )
        servicers = [
            *self.app.servicers,
            *contract_servicers(self.runtime.catalog, cluster, [s for _, s in self.app.servicers]),
        ]
        unimplemented: set[str] = set()
        for _, servicer in servicers:
            unimplemented |= _unimplemented(servicer, self.runtime.catalog)
        self.pipeline = CallPipeline(
            cluster=cluster,
            catalog=self.runtime.catalog,
            verifier=self.verifier,
            metrics=self.runtime.metrics,
            unimplemented=unimplemented,
            extra_methods=self.app.extra_methods,
            forwarded_by=self.runtime.identity if settings.sidecar else None,
            lockdown=(
                LockdownGate(self.runtime.channels)
                if cluster in enforcing_clusters(self.runtime.catalog)
                else None
            ),
        )
        self.server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", settings.max_request_bytes + 1024 * 1024),
                ("grpc.max_send_message_length", settings.max_request_bytes + 1024 * 1024),
                ("grpc.keepalive_time_ms", 30_000),
                ("grpc.keepalive_timeout_ms", 5_000),
                # A second server on a taken port must fail to bind, not silently share
                # the port's connections with the first (gRPC sets SO_REUSEPORT by default).
                ("grpc.so_reuseport", 0),
            ],
        )
        wrapping = PipelinedServer(self.server, self.pipeline)
        for add, servicer in servicers:
            add(servicer, wrapping)
        health_pb2_grpc.add_HealthServicer_to_server(self.health.servicer, self.server)
        reflection.enable_server_reflection(
            [
                *services,
                *sorted({m.service for m in self.app.extra_methods}),
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ],
            self.server,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = False
        self.declarer: SchemaDeclarer | None = None
        self.instance: Instance | None = None
        self.metrics_endpoint: MetricsEndpoint | None = None

    async def _on_health(self, serving: bool) -> None:
        if not serving or self._ready:
            return
        try:
            if self.app.collections and self.app.requires_mongo:
                result = await ensure_schema(self.runtime.datastores.db, self.app.collections)
                if result.emulated_ttl:
                    sweeper = TtlSweeper(self.runtime.datastores.db, result.emulated_ttl)
                    self._tasks.append(asyncio.create_task(sweeper.run()))
            for hook in self.app.on_ready:
                await hook()
            self._declare_schema()
        except Exception:
            log.exception("startup work failed; retrying on the next healthy probe")
            self.health.serving = None  # probe again as if new
            return
        self._ready = True

    def _declare_schema(self) -> None:
        """Starts sending the cluster's declaration to storage (once per server)."""
        if self.declarer is not None or not self.app.declare_schema:
            return
        declaration = declaration_of(
            self.runtime.cluster, self.app.collections, self.app.blob_paths
        )
        channels = self.runtime.channels

        async def send(request: schema_pb2.DeclareSchemaRequest) -> object:
            stub = await channels.stub("storage", schema_pb2_grpc.SchemaServiceStub)
            return await stub.DeclareSchema(request, timeout=10)

        self.declarer = SchemaDeclarer(declaration, send)
        self._tasks.append(asyncio.create_task(self.declarer.run()))

    async def start(self) -> int:
        """Binds, starts serving and registers; returns the bound port."""
        settings = self.runtime.settings
        cluster = self.runtime.cluster
        port = settings.port(cluster) if self.port is None else self.port
        credentials = tls.server_credentials(
            tls.CertPaths.of(settings.certs_dir, self.runtime.identity.name)
        )
        bound = self.server.add_secure_port(f"{settings.host}:{port}", credentials)
        if not bound:
            raise OSError(f"cannot bind {settings.host}:{port}")
        self.port = int(bound)
        self.health.on_change(self._on_health)
        await self.server.start()
        await self.health.probe_once()
        self._tasks.append(asyncio.create_task(self.health.run()))
        self._tasks.append(asyncio.create_task(self.revocations.watch()))
        self._tasks += [asyncio.create_task(task()) for task in self.app.tasks]
        metrics_port = 0
        if settings.metrics_enabled:
            self.metrics_endpoint = MetricsEndpoint(
                self.runtime.metrics, settings.host, settings.metrics_port(cluster)
            )
            metrics_port = await asyncio.to_thread(self.metrics_endpoint.start)
        self.instance = Instance(
            cluster=cluster,
            instance_id=f"{cluster}-{self.instance_id}",
            host=settings.host,
            port=bound,
            plane=self.runtime.identity.plane,
            version=VERSION,
            tags=(
                f"cluster:{cluster}",
                f"plane:{self.runtime.identity.plane}",
                f"version:{VERSION}",
            ),
            metrics_port=metrics_port,
        )
        await self.runtime.registry.register(self.instance)
        log.info("serving", extra={"cluster": cluster, "port": bound, "metrics": metrics_port})
        return self.port

    async def stop(self, grace_s: float = 5.0) -> None:
        """Deregisters, drains calls for ``grace_s`` and closes everything."""
        if self.instance is not None:
            with contextlib.suppress(Exception):
                await self.runtime.registry.deregister(self.instance)
        await self.health.shutdown()
        await self.server.stop(grace_s)
        if self.pipeline.lockdown is not None:
            await self.pipeline.lockdown.close()
        for task in self._tasks:
            task.cancel()
        await self._within("background tasks", self._tasks)
        for hook in self.app.on_stop:
            await self._within(f"on_stop {getattr(hook, '__qualname__', hook)}", [hook()])
        if self.metrics_endpoint is not None:
            await asyncio.to_thread(self.metrics_endpoint.stop)
        await self.runtime.close()

    async def _within(self, what: str, steps: Sequence[Awaitable[Any]]) -> None:
        """Waits up to ``STOP_STEP_S`` for one step of a stop. A step still running then
        (a task that swallowed its cancellation, a close that never returns) is logged
        with where it waits and left behind: a stop never hangs."""
        tasks = [asyncio.ensure_future(step) for step in steps]
        if not tasks:
            return
        done, pending = await asyncio.wait(tasks, timeout=STOP_STEP_S)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.debug("%s failed while stopping", what, exc_info=task.exception())
        for task in pending:
            where = io.StringIO()
            task.print_stack(file=where)
            log.error(
                "server stop: %s still running after %s s; left behind",
                what,
                STOP_STEP_S,
                extra={"cluster": self.runtime.cluster, "stack": where.getvalue()},
            )
            task.cancel()


async def serve(
    builder: ClusterBuilder,
    settings: Settings,
    cluster: str,
    *,
    port: int | None = None,
    identity: str | None = None,
) -> None:
    """Runs one cluster until SIGINT or SIGTERM (``lucid serve <cluster>``)."""
    provider = tracing.configure(settings, cluster)
    runtime = Runtime(settings, cluster, identity=identity)
    app = await builder(runtime)
    server = ClusterServer(runtime, app, port=port)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping", extra={"cluster": cluster})
    await server.stop()
    if provider is not None:
        provider.shutdown()  # sends the spans still batched
