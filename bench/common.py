"""What benchmarks share: local servers, settings and an in-process mesh."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from lucid.lib.sealing import Sealer
from lucid.runtime import tls
from lucid.runtime.config import Settings, load_settings
from lucid.supervisor.localservers import LocalStores
from lucid.supervisor.supervisor import certificate_names
from tests.support import Mesh, session_settings


@dataclass(frozen=True)
class Figure:
    """One measured number, with the target of issue 15 where it has one."""

    name: str
    value: float
    unit: str
    at_most: float | None = None
    at_least: float | None = None

    @property
    def target(self) -> str:
        """``≤ 1.2``, ``≥ 0.85`` or empty."""
        if self.at_most is not None:
            return f"≤ {self.at_most:g}"
        if self.at_least is not None:
            return f"≥ {self.at_least:g}"
        return ""

    @property
    def met(self) -> bool | None:
        """Whether the target is met (None without one)."""
        if self.at_most is not None:
            return self.value <= self.at_most
        if self.at_least is not None:
            return self.value >= self.at_least
        return None

    def as_dict(self) -> dict[str, object]:
        """JSON form."""
        found: dict[str, object] = {"name": self.name, "value": self.value, "unit": self.unit}
        if self.target:
            found |= {"target": self.target, "met": self.met}
        return found


@dataclass
class BenchContext:
    """Real local servers and settings for one benchmark run."""

    settings: Settings
    mesh: Mesh

    @classmethod
    @contextlib.asynccontextmanager
    async def create(cls) -> AsyncIterator[BenchContext]:
        """Starts private FerretDB and Redis and a mesh with auth up."""
        root = Path(tempfile.mkdtemp(prefix="lucid-bench-"))
        stores = LocalStores.at(
            root / "stores", mongo_port=0, redis_port=0, backend=load_settings().ferretdb_backend
        )
        stores.start()
        try:
            settings = session_settings(root / "var", stores.env())
            tls.init_certs(settings.certs_dir, Sealer(settings.key_passphrase), certificate_names())
            mesh = Mesh(settings)
            await mesh.start("auth")
            try:
                yield cls(settings, mesh)
            finally:
                await mesh.stop_all()
        finally:
            stores.stop()


async def rate(
    call: Callable[[], Awaitable[object]], *, seconds: float = 3.0, concurrency: int = 1
) -> tuple[float, list[float]]:
    """Runs ``call`` from ``concurrency`` workers for ``seconds``: calls/s and latencies (ms)."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            await call()
            latencies.append((time.perf_counter() - start) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(latencies) / (time.perf_counter() - started), sorted(latencies)
