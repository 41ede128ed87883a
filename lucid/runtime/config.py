"""Typed configuration: defaults ← one TOML file ← ``LUCID_*`` environment variables.

The defaults are the one-machine setup of DECISIONS.md (the port map, loopback,
one database named ``lucid``). A file (``$LUCID_CONFIG`` or ``./lucid.toml``) and
then the environment override them; the environment wins. Each field's
environment variable is ``LUCID_`` + its upper-case name; ports are
``LUCID_PORT_<CLUSTER>`` and the Prometheus ``/metrics`` ports
``LUCID_METRICS_PORT_<CLUSTER>`` (a ``[metrics_ports]`` table in the file).
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLUSTERS: tuple[str, ...] = (
    "gateway",
    "blockchain",
    "sessions",
    "rdp",
    "nodes",
    "admin",
    "payments",
    "storage",
    "auth",
    "mesh",
)
"""The ten clusters, in the order of their numbers (01 … 10)."""

DEFAULT_PORTS: Mapping[str, int] = {name: 50051 + i for i, name in enumerate(CLUSTERS)}
"""gRPC ports of DECISIONS.md: 50051 gateway … 50060 mesh."""

DEFAULT_METRICS_PORTS: Mapping[str, int] = {name: 9101 + i for i, name in enumerate(CLUSTERS)}
"""HTTP ports of each cluster's Prometheus ``/metrics`` (loopback): 9101 gateway … 9110 mesh.
A port already taken (a second validator, a second instance) falls back to a free one,
which the instance's registration names (Consul meta ``metrics_port``)."""

FIRST_EXTRA_VALIDATOR_PORT = 50061
"""Blockchain validators beyond the first listen on 50061, 50062, …"""


class ConfigError(ValueError):
    """A configuration value cannot be read as its declared type."""


@dataclass(frozen=True)
class Settings:
    """Everything a Lucid process reads from its environment."""

    host: str = "127.0.0.1"
    """Address every server binds and every client dials (loopback on one machine)."""
    ports: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    """gRPC port of each cluster."""
    metrics_ports: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_METRICS_PORTS))
    """HTTP port of each cluster's Prometheus ``/metrics``; 0 picks a free port."""
    metrics_enabled: bool = True
    """Whether each cluster serves ``/metrics`` (Prometheus text format) on its metrics port."""
    metrics_sample_s: float = 10.0
    """How often gauges read from the stores (sessions and payouts by state) are refreshed."""
    otlp_endpoint: str = ""
    """Where spans go (OTLP over HTTP, e.g. ``http://127.0.0.1:4318/v1/traces``); empty:
    tracing is off (no span is made)."""
    edge_port: int = 8080
    """HTTP port of the edge (REST, grpc-web)."""
    validators: int = 3
    """Number of blockchain validators (N of the 2/3 rule); ``lucid up`` runs them all."""
    validator_index: int = 0
    """Which validator this blockchain process is (``lucid serve blockchain --validator N``)."""
    extra_validator_port: int = FIRST_EXTRA_VALIDATOR_PORT
    """Port of validator 1; validator N ≥ 1 listens on this + N - 1 (validator 0 on the
    blockchain port)."""
    block_interval_s: float = 10.0
    """Least time between two blocks of the chain (spec 02: 10 s; tests 0.1 to 0.5 s)."""
    leader_timeout_s: float = 5.0
    """How long a round's leader has before the next fallback leads (spec 02: 5 s)."""
    var_dir: Path = Path("var")
    """Where local state lives: certificates, server data, blobs, logs."""
    mongodb_uri: str = "mongodb://127.0.0.1:27017/"
    """MongoDB (FerretDB on one machine)."""
    mongodb_db: str = "lucid"
    """The one database of the mesh."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis."""
    ferretdb_backend: str = "postgresql"
    """The store under the local FerretDB that ``lucid up``, ``lucid dev up`` and the tests
    start: ``postgresql`` (a private PostgreSQL cluster) or ``sqlite`` (explicit option;
    it serialises writes and fails them under concurrent load)."""
    registry: str = "static"
    """Service registry backend: ``static`` (the port map) or ``consul``."""
    consul_addr: str = "127.0.0.1:8500"
    """Consul agent HTTP address when ``registry = "consul"``."""
    consul_check_interval_s: float = 30.0
    """How often Consul runs an instance's gRPC health check (spec 10 §4)."""
    consul_check_timeout_s: float = 10.0
    """How long one Consul health check may take."""
    consul_deregister_after_s: float = 90.0
    """Critical for this long, an instance is deregistered (spec 10 §3)."""
    consul_cache_s: float = 2.0
    """How long a Consul discovery answer is reused before asking the agent again."""
    sidecar: bool = False
    """An Envoy sidecar fronts this server (envoy/sidecar-<cluster>.json): calls to
    other clusters go as plain h2 to its outbound listeners on loopback (the port
    map), and the caller of an incoming call is the SPIFFE id the sidecar puts in
    ``x-forwarded-client-cert`` when it connects with this cluster's own certificate."""
    tron_endpoint: str = "http://127.0.0.1:8090"
    """The TRON full node's HTTP API the payments cluster uses (``lucid devnet tron`` on one
    machine; a Nile or mainnet node in production)."""
    tron_usdt_contract: str = "TTaZC4WTxTYnaGvg5PrUjkLVivsWM8GFXn"
    """The USDT-TRC20 contract (the devnet's by default; mainnet is
    ``TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t``)."""
    tron_stake_address: str = "TKi6iZ77fD89MzTQaKL7uFmxw7EVkwQusX"
    """Where node operators pay their registration stake (≥ 100 USDT, spec 05 §4); the
    payments cluster verifies stakes against it and node agents pay it. The devnet's
    default is an address no one holds a key of (keccak of ``lucid devnet stake escrow``);
    production names the escrow wallet."""
    tron_fee_limit_sun: int = 100_000_000
    """fee_limit of a USDT transfer (spec 07: 10-100 TRX; a transfer to a new holder burns
    about 130k energy at 420 sun ≈ 55 TRX without staked energy, so 100 TRX)."""
    tron_confirmations: int = 19
    """Blocks after which a payout counts as confirmed (the node's solid depth)."""
    payout_poll_interval_s: float = 3.0
    """How often the payout worker sends pending payouts and checks sent ones."""
    devnet_tron_port: int = 8090
    """Port of the local TRON network ``lucid up`` starts."""
    devnet_tron_block_interval_s: float = 0.5
    """Block interval of that network: short, as it is local, so a payout is solid (19
    blocks) within seconds (3 s on TRON itself)."""
    key_passphrase: str = ""
    """Passphrase sealing private keys at rest; read from var/secrets when empty."""
    call_timeout_s: float = 30.0
    """Default deadline of an outgoing call."""
    health_interval_s: float = 2.0
    """How often a server probes its dependencies."""
    dependency_timeout_s: float = 1.0
    """How long a dependency probe may take before it counts as down."""
    jwks_refresh_s: float = 300.0
    """How long verification keys are cached before they are fetched again."""
    log_level: str = "INFO"
    """Log level of every process."""
    max_request_bytes: int = 100 * 1024 * 1024
    """Largest request the edge and the servers accept (100 MB)."""
    environment: str = "development"
    """What this deployment is: ``development``, ``test``, ``staging`` or ``production``."""
    edge_tls: bool = True
    """Whether the edge serves HTTPS (the ``edge-web`` certificate of the CA); ``false``
    serves plain HTTP, for loopback development only."""
    edge_hostnames: str = "localhost"
    """Comma-separated DNS names the edge's HTTPS certificate carries (besides
    ``localhost``, ``edge.lucid.internal``, 127.0.0.1 and ::1)."""
    edge_cors_origins: str = ""
    """Comma-separated origins allowed to call the edge from a browser page of another
    origin (CORS); ``*`` allows any. Empty: same origin only."""

    @property
    def certs_dir(self) -> Path:
        """Certificates and keys of the development CA."""
        return self.var_dir / "certs"

    @property
    def blob_dir(self) -> Path:
        """The blob volume: chunk blobs and other files clusters keep (``var/blobs``)."""
        return self.var_dir / "blobs"

    @property
    def secrets_dir(self) -> Path:
        """Local secrets (the sealing passphrase on one machine)."""
        return self.var_dir / "secrets"

    def validator_port(self, index: int) -> int:
        """The gRPC port of blockchain validator ``index``."""
        if index == 0:
            return self.port("blockchain")
        return self.extra_validator_port + index - 1

    def port(self, cluster: str) -> int:
        """The gRPC port of ``cluster``."""
        try:
            return self.ports[cluster]
        except KeyError:
            raise ConfigError(f"no port configured for cluster {cluster!r}") from None

    def metrics_port(self, cluster: str) -> int:
        """The ``/metrics`` port of ``cluster`` (0: any free port)."""
        return int(self.metrics_ports.get(cluster, 0))

    def sealing_passphrase(self) -> str:
        """The key-sealing passphrase: configured, or the one-machine file (made on first use)."""
        if self.key_passphrase:
            return self.key_passphrase
        path = self.secrets_dir / "key-passphrase"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(32))
        return path.read_text().strip()

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def _coerce(name: str, kind: Any, raw: Any) -> Any:
    try:
        if kind in (bool, "bool"):
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
                raise ValueError(raw)
            return text in {"1", "true", "yes", "on"}
        if kind in (int, "int"):
            return int(raw)
        if kind in (float, "float"):
            return float(raw)
        if kind in (Path, "Path"):
            return Path(raw)
        return str(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: cannot read {raw!r} as {kind}") from None


def load_settings(
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Settings:
    """Reads the settings of this process."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    ports = dict(DEFAULT_PORTS)
    metrics_ports = dict(DEFAULT_METRICS_PORTS)

    path = config_file or Path(env.get("LUCID_CONFIG", "lucid.toml"))
    if path.is_file():
        data = tomllib.loads(path.read_text())
        ports.update({str(k): int(v) for k, v in data.pop("ports", {}).items()})
        metrics_ports.update({str(k): int(v) for k, v in data.pop("metrics_ports", {}).items()})
        values.update(data)

    maps = {"ports", "metrics_ports"}
    fields = {f.name: f for f in dataclasses.fields(Settings) if f.name not in maps}
    for name in fields:
        key = f"LUCID_{name.upper()}"
        if key in env:
            values[name] = env[key]
    for cluster in CLUSTERS:
        key = f"LUCID_PORT_{cluster.upper()}"
        if key in env:
            ports[cluster] = int(_coerce(key, int, env[key]))
        key = f"LUCID_METRICS_PORT_{cluster.upper()}"
        if key in env:
            metrics_ports[cluster] = int(_coerce(key, int, env[key]))

    unknown = set(values) - set(fields)
    if unknown:
        raise ConfigError(f"unknown settings in {path}: {sorted(unknown)}")
    typed = {name: _coerce(name, fields[name].type, raw) for name, raw in values.items()}
    return Settings(ports=ports, metrics_ports=metrics_ports, **typed)
