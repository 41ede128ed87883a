"""Chain validators as real processes (``python -m lucid serve blockchain --validator N``)
on free loopback ports, sharing the test stores: what the fault tests kill and restart."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from lucid.runtime import tls
from lucid.runtime.config import Settings
from tests.chain_support import ChainStubs


def consecutive_free_ports(count: int) -> int:
    """The first of ``count`` consecutive free loopback ports."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + count > 65535:
            continue
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
        return base
    raise RuntimeError("no consecutive free ports")


@dataclass
class ValidatorCluster:
    """N validator processes of one fresh chain."""

    settings: Settings
    var_dir: Path
    count: int = 3
    block_interval_s: float = 0.2
    leader_timeout_s: float = 1.0
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    database: str = field(default_factory=lambda: f"lucid_chain_{uuid.uuid4().hex[:10]}")

    def __post_init__(self) -> None:
        self.var_dir.mkdir(parents=True, exist_ok=True)
        if not (self.var_dir / "certs").exists():
            shutil.copytree(self.settings.certs_dir, self.var_dir / "certs")
        base = consecutive_free_ports(self.count)
        self.ports = list(range(base, base + self.count))

    def env(self) -> dict[str, str]:
        """The environment of every validator process."""
        return {
            **os.environ,
            "LUCID_VAR_DIR": str(self.var_dir),
            "LUCID_MONGODB_URI": self.settings.mongodb_uri,
            "LUCID_MONGODB_DB": self.database,
            "LUCID_REDIS_URL": self.settings.redis_url,
            "LUCID_KEY_PASSPHRASE": self.settings.key_passphrase,
            "LUCID_VALIDATORS": str(self.count),
            "LUCID_PORT_BLOCKCHAIN": str(self.ports[0]),
            "LUCID_EXTRA_VALIDATOR_PORT": str(
                self.ports[1] if self.count > 1 else self.ports[0] + 1
            ),
            "LUCID_PORT_AUTH": str(self.settings.port("auth")),
            "LUCID_BLOCK_INTERVAL_S": str(self.block_interval_s),
            "LUCID_LEADER_TIMEOUT_S": str(self.leader_timeout_s),
            "LUCID_HEALTH_INTERVAL_S": "0.5",
            "LUCID_LOG_LEVEL": "INFO",
        }

    def start(self, index: int) -> None:
        """Starts validator ``index`` (its log goes to ``<var>/logs/validator-<index>.log``)."""
        logs = self.var_dir / "logs"
        logs.mkdir(exist_ok=True)
        with (logs / f"validator-{index}.log").open("ab") as out:
            self.processes[index] = subprocess.Popen(
                [sys.executable, "-m", "lucid", "serve", "blockchain", "--validator", str(index)],
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
                env=self.env(),
            )

    def start_all(self) -> None:
        """Starts every validator."""
        for index in range(self.count):
            self.start(index)

    def kill(self, index: int) -> None:
        """SIGKILLs validator ``index``."""
        process = self.processes.pop(index)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self) -> None:
        """SIGTERMs every validator (SIGKILL after 10 s)."""
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()

    @contextlib.asynccontextmanager
    async def stubs(self, index: int, identity: str = "operator") -> AsyncIterator[ChainStubs]:
        """Stubs on a channel to validator ``index``."""
        credentials = tls.channel_credentials(tls.CertPaths.of(self.var_dir / "certs", identity))
        async with grpc.aio.secure_channel(
            f"127.0.0.1:{self.ports[index]}",
            credentials,
            options=[("grpc.ssl_target_name_override", tls.dns_name("blockchain"))],
        ) as channel:
            yield ChainStubs(channel)

    def log(self, index: int) -> str:
        """What validator ``index`` logged."""
        path = self.var_dir / "logs" / f"validator-{index}.log"
        return path.read_text(errors="replace") if path.exists() else ""
