"""Session fixtures: real local servers, a test CA, an in-process mesh."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

import pytest

from lucid.lib.sealing import Sealer
from lucid.runtime import tls
from lucid.runtime.config import Settings, load_settings
from lucid.supervisor.localservers import ConsulAgent, LocalStores, free_port
from lucid.supervisor.supervisor import certificate_names
from tests.stake_support import stop_session_net
from tests.support import Mesh, session_settings


@pytest.fixture(scope="session")
def stores_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mapping[str, str]]:
    """The local servers of this run: those `make test` started, or private ones."""
    if os.environ.get("LUCID_MONGODB_URI") and os.environ.get("LUCID_REDIS_URL"):
        yield {k: os.environ[k] for k in ("LUCID_MONGODB_URI", "LUCID_REDIS_URL")}
        return
    stores = LocalStores.at(
        tmp_path_factory.mktemp("stores"),
        mongo_port=0,
        redis_port=0,
        backend=load_settings().ferretdb_backend,
    )
    stores.start()
    try:
        yield stores.env()
    finally:
        stores.stop()


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory, stores_env: Mapping[str, str]) -> Settings:
    """Settings of the test session, with certificates for every identity."""
    var_dir = tmp_path_factory.mktemp("var")
    settings = session_settings(var_dir, stores_env)
    tls.init_certs(settings.certs_dir, Sealer(settings.key_passphrase), certificate_names())
    return settings


@pytest.fixture(scope="session")
async def mesh(settings: Settings) -> AsyncIterator[Mesh]:
    """An in-process mesh; tests start the clusters they need (auth is always up)."""
    mesh = Mesh(settings)
    await mesh.start("auth")
    try:
        yield mesh
    finally:
        await mesh.stop_all()


@pytest.fixture(scope="session", autouse=True)
def stake_devnet() -> Iterator[None]:
    """Stops the stake devnet (``tests.stake_support``) if a test started it."""
    yield
    stop_session_net()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root."""
    return Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def consul_agent(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``consul agent -dev`` on loopback (its gRPC health checks present the
    operator certificate); its HTTP address."""
    certs = settings.certs_dir
    agent = ConsulAgent(
        "consul",
        free_port(),
        tmp_path_factory.mktemp("consul"),
        ca_file=certs / "ca.crt",
        cert_file=certs / "operator.crt",
        key_file=certs / "operator.key",
    )
    agent.start()
    try:
        yield agent.address
    finally:
        agent.stop()
