"""``lucid up``: the whole mesh on one machine, as child processes.

Starts the local servers (FerretDB, Redis), makes the development certificates,
then runs every cluster (``lucid serve <cluster>``), the extra blockchain
validators and the edge. A child that dies is started again (with backoff), and so
is a local store (FerretDB, Redis) that dies; on
Ctrl-C or SIGTERM every child gets SIGTERM, then SIGKILL after a grace period,
and the local servers stop last. The pids of the children are kept in
``var/supervisor.json`` for operators and tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lucid.lib.sealing import Sealer
from lucid.runtime import tls
from lucid.runtime.config import CLUSTERS, Settings
from lucid.runtime.identity import EDGE, OPERATOR
from lucid.supervisor import devnodes
from lucid.supervisor.demo import run_demo
from lucid.supervisor.devnet import devnet_argv, ensure_payout_key
from lucid.supervisor.envoy import command, console_dir
from lucid.supervisor.localservers import LocalServerError, LocalStores
from lucid.supervisor.sidecars import SidecarLayout, forget_sidecars

log = logging.getLogger("lucid.supervisor")

MAX_BACKOFF_S = 30.0
STABLE_AFTER_S = 60.0
STOP_GRACE_S = 10.0
STORE_CHECK_S = 0.5


def certificate_names() -> list[str]:
    """Every identity the one-machine mesh needs a certificate for."""
    return [*CLUSTERS, EDGE, OPERATOR]


def ensure_certs(settings: Settings) -> list[str]:
    """``lucid certs init``: the dev CA, every missing or expiring certificate, and the
    edge's HTTPS certificate."""
    sealer = Sealer(settings.sealing_passphrase())
    written = tls.init_certs(settings.certs_dir, sealer, certificate_names())
    web = tls.CertPaths.of(settings.certs_dir, tls.WEB_CERT)
    before = web.cert.read_bytes() if web.cert.exists() else b""
    tls.ensure_web_certificate(settings.certs_dir, sealer, settings.edge_hostnames.split(","))
    if web.cert.read_bytes() != before:
        written.append(tls.WEB_CERT)
    return written


@dataclass
class Child:
    """One supervised process."""

    name: str
    argv: list[str]
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started_at: float = 0.0
    backoff_s: float = 1.0
    log_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    """What this child's environment adds to the supervisor's."""

    @property
    def pid(self) -> int | None:
        """The running process's pid."""
        return self.process.pid if self.process and self.process.returncode is None else None


@dataclass
class Supervisor:
    """Runs and watches the children of ``lucid up``."""

    settings: Settings
    env: Mapping[str, str]
    children: list[Child] = field(default_factory=list)
    stopping: bool = False
    _watchers: list[asyncio.Task[None]] = field(default_factory=list)
    background: list[asyncio.Task[None]] = field(default_factory=list)
    """Other work that ends with the supervisor (the dev token's renewal)."""
    stores: LocalStores | None = None
    """The local stores kept running (their pids are published with the children's)."""
    store_restarts: dict[str, int] = field(default_factory=dict)

    @property
    def state_file(self) -> Path:
        """Where the children's pids are published."""
        return self.settings.var_dir / "supervisor.json"

    def _write_state(self) -> None:
        state = {c.name: {"pid": c.pid, "restarts": c.restarts} for c in self.children}
        if self.stores is not None:
            for server in (self.stores.mongo, self.stores.redis):
                process = server.process
                alive = process is not None and process.poll() is None
                state[server.name] = {
                    "pid": process.pid if process is not None and alive else None,
                    "restarts": self.store_restarts.get(server.name, 0),
                }
        # Written whole, then renamed: a reader never sees half a file.
        partial = self.state_file.with_suffix(".json.tmp")
        partial.write_text(json.dumps(state, indent=2))
        partial.replace(self.state_file)

    def _stop_requested(self) -> bool:
        return self.stopping

    async def _spawn(self, child: Child) -> asyncio.subprocess.Process:
        logs = self.settings.var_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        child.log_path = logs / f"{child.name}.log"
        with child.log_path.open("ab") as out:
            child.process = await asyncio.create_subprocess_exec(
                *child.argv,
                stdout=out,
                stderr=out,
                stdin=asyncio.subprocess.DEVNULL,
                env={**os.environ, **self.env, **child.env},
            )
        child.started_at = time.monotonic()
        self._write_state()
        return child.process

    async def _watch(self, child: Child) -> None:
        while not self.stopping:
            process = await self._spawn(child)
            code = await process.wait()
            if self._stop_requested():
                return
            ran_for = time.monotonic() - child.started_at
            if ran_for > STABLE_AFTER_S:
                child.backoff_s = 1.0
            log.warning(
                "child exited; restarting",
                extra={"child": child.name, "code": code, "backoff_s": child.backoff_s},
            )
            print(f"  ! {child.name} exited ({code}); restarting in {child.backoff_s:.0f}s")
            await asyncio.sleep(child.backoff_s)
            child.backoff_s = min(child.backoff_s * 2, MAX_BACKOFF_S)
            child.restarts += 1

    async def run(self, stop: asyncio.Event) -> None:
        """Starts every child and keeps them running until ``stop`` is set."""
        self._watchers += [asyncio.create_task(self._watch(c)) for c in self.children]
        await stop.wait()
        self.stopping = True
        await self.terminate()
        for task in (*self._watchers, *self.background):
            task.cancel()
        await asyncio.gather(*self._watchers, *self.background, return_exceptions=True)

    async def keep_stores_up(self, stop: asyncio.Event) -> None:
        """Starts FerretDB or Redis again when its process died, until ``stop`` (the
        clusters reconnect on their own; Redis replays its append-only file, so token
        revocations and rate-limit state survive)."""
        if self.stores is None:
            return
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), STORE_CHECK_S)
            if stop.is_set():
                return
            for server in (self.stores.mongo, self.stores.redis):
                process = server.process
                if process is None or process.poll() is None:
                    continue
                log.warning("store exited; restarting", extra={"store": server.name})
                print(f"  ! {server.name} exited ({process.returncode}); restarting", flush=True)
                try:
                    await asyncio.to_thread(server.start)
                except LocalServerError as exc:
                    print(f"  ! {server.name} did not start again: {exc}", flush=True)
                    continue
                self.store_restarts[server.name] = self.store_restarts.get(server.name, 0) + 1
                self._write_state()

    def adopt(self, child: Child) -> None:
        """Starts and watches one more child (one that needs the mesh serving first)."""
        self.children.append(child)
        self._watchers.append(asyncio.create_task(self._watch(child)))

    async def terminate(self) -> None:
        """SIGTERM to every child, SIGKILL to those still alive after the grace period."""
        alive = [c.process for c in self.children if c.process and c.process.returncode is None]
        for process in alive:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in alive)), timeout=STOP_GRACE_S)
        except TimeoutError:
            for process in alive:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            await asyncio.gather(*(p.wait() for p in alive))
        self._write_state()


def cluster_children(settings: Settings, layout: SidecarLayout | None = None) -> list[Child]:
    """The children of the mesh: ten clusters, extra validators, the edge (and with a
    sidecar layout, each cluster's Envoy sidecar)."""
    python = sys.executable
    children = [
        Child(
            name,
            [python, "-m", "lucid", "serve", name],
            env=layout.cluster_env(name) if layout else {},
        )
        for name in CLUSTERS
    ]
    if layout is not None:
        directory = settings.var_dir / "envoy"
        children += [
            Child(f"sidecar-{name}", command(layout.write(settings, name, directory)))
            for name in CLUSTERS
        ]
    children += [
        Child(
            f"validator-{n}", [python, "-m", "lucid", "serve", "blockchain", "--validator", str(n)]
        )
        for n in range(1, settings.validators)
    ]
    children.append(Child(EDGE, [python, "-m", "lucid", "edge"]))
    children.append(Child("devnet-tron", devnet_argv(settings)))
    return children


def store_ports(settings: Settings) -> tuple[int, int]:
    """The ports of the local MongoDB and Redis named in the settings."""
    mongo = urlparse(settings.mongodb_uri).port or 27017
    redis_port = urlparse(settings.redis_url).port or 6379
    return mongo, redis_port


async def wait_serving(settings: Settings, clusters: Sequence[str], timeout_s: float) -> list[str]:
    """Waits until every cluster's health is SERVING; returns those that are not."""
    credentials = tls.channel_credentials(tls.CertPaths.of(settings.certs_dir, OPERATOR))
    pending = set(clusters)
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        for cluster in list(pending):
            target = f"{settings.host}:{settings.port(cluster)}"
            options = [("grpc.ssl_target_name_override", tls.dns_name(cluster))]
            async with grpc.aio.secure_channel(target, credentials, options=options) as channel:
                try:
                    reply = await health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(), timeout=1
                    )
                except grpc.aio.AioRpcError:
                    continue
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    pending.discard(cluster)
        if pending:
            await asyncio.sleep(0.5)
    return sorted(pending)


async def start_dev_nodes(settings: Settings, supervisor: Supervisor, stop: asyncio.Event) -> None:
    """Three node agents in ``dev-pool`` (see ``devnodes``)."""
    pool_id = await devnodes.dev_pool(settings)
    token_file = await devnodes.write_token(settings)
    for name in devnodes.AGENTS:
        supervisor.adopt(Child(name, devnodes.agent_argv(settings, name, token_file, pool_id)))
    supervisor.background.append(asyncio.create_task(devnodes.keep_token_fresh(settings, stop)))
    print(f"started {len(devnodes.AGENTS)} node agents in pool {devnodes.POOL_NAME}", flush=True)


async def _show_working(settings: Settings) -> None:
    print("Showing it working (lucid demo):", flush=True)
    ok = await run_demo(settings)
    print("" if ok else "  see var/logs/ for what failed", flush=True)


def console_lines(edge: str, certs: Path) -> list[str]:
    """The banner's lines about the admin console: its URL and how to become admin."""
    where = (
        f"  Admin console: {edge}/admin/  (trust {certs}/ca.crt in the browser, or accept it)"
        if console_dir()
        else f"  Admin console: not built (make console), then served at {edge}/admin/"
    )
    return [
        where,
        "  Become the first super admin: sign in once at the console (TronLink, or paste",
        "  a signature from `lucid sign --key-file KEY --message-file CHALLENGE`), then:",
        "    lucid admin grant <YOUR_TRON_ADDRESS> super_admin",
        "  and sign in again (TOTP enrollment is needed for the emergency controls).",
    ]


def banner(settings: Settings, *, sidecars: bool = False) -> str:
    """What ``lucid up`` prints once the mesh serves."""
    mode = (
        "edge Envoy + an Envoy sidecar per cluster (mTLS and RBAC by SPIFFE id in the "
        "sidecars, as envoy/sidecar-*.json)"
        if sidecars
        else "edge Envoy (envoy/edge.json with local paths) + in-process mTLS between the "
        "clusters (no sidecars; --sidecars for them)"
    )
    certs = settings.certs_dir
    scheme = "https" if settings.edge_tls else "http"
    edge = f"{scheme}://localhost:{settings.edge_port}"
    curl = f"curl -s --cacert {certs}/ca.crt" if settings.edge_tls else "curl -s"
    return "\n".join(
        [
            "",
            f"Lucid is up: {len(CLUSTERS)} clusters behind the edge at {edge}",
            f"  mode: {mode}",
            "",
            "  REST via the edge:",
            f"    {curl} {edge}/api/v1/meta/health",
            f"    {curl} {edge}/.well-known/jwks.json",
            "  gRPC with reflection (mTLS, operator certificate):",
            f"    grpcurl -cacert {certs}/ca.crt -cert {certs}/operator.crt "
            f"-key {certs}/operator.key -servername auth.lucid.internal "
            f"{settings.host}:{settings.port('auth')} lucid.auth.v1.AuthService/GetJwks",
            *console_lines(edge, certs),
            "",
            f"  logs: {settings.var_dir / 'logs'}/   pids: {settings.var_dir / 'supervisor.json'}",
            "  Ctrl-C stops everything.",
            "",
        ]
    )


async def up(settings: Settings, *, demo: bool = False, sidecars: bool = False) -> None:
    """Runs the whole mesh until Ctrl-C (``demo``: then walk through it once, see ``demo``;
    ``sidecars``: every cluster behind its own Envoy, one chain validator)."""
    if sidecars:
        settings = settings.replace(validators=1)
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    written = ensure_certs(settings)
    ensure_payout_key(settings)
    if written:
        print(f"certificates issued: {', '.join(written)}")
    mongo_port, redis_port = store_ports(settings)
    stores = LocalStores.at(
        settings.var_dir / "stores",
        mongo_port=mongo_port,
        redis_port=redis_port,
        backend=settings.ferretdb_backend,
        redis_persistent=True,  # a revoked token must stay revoked after a Redis restart
    )
    print(
        f"starting FerretDB ({settings.ferretdb_backend}) on {mongo_port} "
        f"and Redis on {redis_port} ..."
    )
    stores.start()
    env = {
        "LUCID_VAR_DIR": str(settings.var_dir.resolve()),
        "LUCID_MONGODB_URI": stores.mongo.uri,
        "LUCID_REDIS_URL": stores.redis.url,
        **{f"LUCID_PORT_{c.upper()}": str(settings.port(c)) for c in CLUSTERS},
        "LUCID_EDGE_PORT": str(settings.edge_port),
        "LUCID_EDGE_TLS": str(settings.edge_tls).lower(),
        "LUCID_HOST": settings.host,
        "LUCID_TRON_ENDPOINT": f"http://127.0.0.1:{settings.devnet_tron_port}",
    }
    if sidecars:
        env["LUCID_VALIDATORS"] = "1"
    layout = SidecarLayout.allocate(settings) if sidecars else None
    if layout is None:  # no sidecar of an earlier --sidecars run is left for the mesh to find
        forget_sidecars(settings.var_dir / "envoy")
    supervisor = Supervisor(settings, env, cluster_children(settings, layout), stores=stores)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    supervisor.background.append(asyncio.create_task(supervisor.keep_stores_up(stop)))
    runner = asyncio.create_task(supervisor.run(stop))
    try:
        print(f"starting {len(supervisor.children)} processes ...")
        missing = await wait_serving(settings, CLUSTERS, timeout_s=90)
        if missing:
            print(f"not serving yet: {', '.join(missing)} (see {settings.var_dir / 'logs'})")
        if not missing:
            try:
                await start_dev_nodes(settings, supervisor, stop)
            except Exception as exc:  # the mesh still serves without dev nodes
                print(f"  ! no dev nodes: {exc}", flush=True)
        print(banner(settings, sidecars=sidecars), flush=True)
        if demo and not missing:
            await _show_working(settings)
        await runner
    finally:
        stop.set()
        await asyncio.gather(runner, return_exceptions=True)
        stores.stop()
        print("stopped")
