"""FerretDB, redis-server and a Consul agent on loopback, with their data under one directory.

Used three ways: ``lucid dev up/down`` (detached, for ``make test``), ``lucid up``
(children of the supervisor) and tests that need a private server they may stop.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pymongo
import redis

READY_TIMEOUT_S = 30.0


class LocalServerError(RuntimeError):
    """A local server could not be found, started or reached."""


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tool_path(name: str) -> str:
    """A tool from the Lucid tool cache or the PATH."""
    cache = Path(os.environ.get("LUCID_CACHE", Path.home() / ".cache" / "lucid")) / "bin" / name
    if cache.exists():
        return str(cache)
    found = shutil.which(name)
    if not found:
        raise LocalServerError(f"{name} not found: run `make tools`")
    return found


@dataclass
class LocalServer:
    """One server process."""

    name: str
    port: int
    data_dir: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid_file(self) -> Path:
        """Where a detached server's pid is kept."""
        return self.data_dir / f"{self.name}.pid"

    def command(self) -> list[str]:
        """The command line that runs the server."""
        raise NotImplementedError

    def ping(self) -> bool:
        """Whether the server answers."""
        raise NotImplementedError

    def start(self, *, detached: bool = False) -> None:
        """Starts the server and waits until it answers."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = (self.data_dir / f"{self.name}.log").open("ab")
        self.process = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.data_dir,
            start_new_session=detached,
        )
        log.close()
        self.pid_file.write_text(str(self.process.pid))
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LocalServerError(
                    f"{self.name} exited with {self.process.returncode}; "
                    f"see {self.data_dir / (self.name + '.log')}"
                )
            if self.ping():
                return
            time.sleep(0.1)
        self.stop()
        raise LocalServerError(f"{self.name} did not answer on port {self.port}")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stops the server (this process's child, or a detached one by pid file)."""
        pid = self.process.pid if self.process else None
        if pid is None and self.pid_file.exists():
            with contextlib.suppress(ValueError):
                pid = int(self.pid_file.read_text())
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None:
                if self.process.poll() is not None:
                    break
            else:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
            time.sleep(0.05)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if self.process is not None:
                self.process.wait()
        self.pid_file.unlink(missing_ok=True)
        self.process = None


class FerretDB(LocalServer):
    """FerretDB v1 with the SQLite backend: the local MongoDB."""

    def command(self) -> list[str]:
        return [
            tool_path("ferretdb"),
            "--handler=sqlite",
            f"--sqlite-url=file:{self.data_dir / 'sqlite'}/",
            f"--listen-addr=127.0.0.1:{self.port}",
            f"--state-dir={self.data_dir}",
            "--debug-addr=-",
            "--telemetry=disable",
            "--log-level=warn",
        ]

    def start(self, *, detached: bool = False) -> None:
        (self.data_dir / "sqlite").mkdir(parents=True, exist_ok=True)
        super().start(detached=detached)

    @property
    def uri(self) -> str:
        """The MongoDB URI."""
        return f"mongodb://127.0.0.1:{self.port}/"

    def ping(self) -> bool:
        try:
            client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
                self.uri, serverSelectionTimeoutMS=300
            )
            with client:
                client.admin.command("ping")
        except pymongo.errors.PyMongoError:
            return False
        return True


class RedisServer(LocalServer):
    """Debian's redis-server, with KEYS and FLUSHALL disabled as in production (spec 08)."""

    def command(self) -> list[str]:
        return [
            tool_path("redis-server"),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--rename-command", "KEYS", "",
            "--rename-command", "FLUSHALL", "",
        ]  # fmt: skip

    @property
    def url(self) -> str:
        """The Redis URL."""
        return f"redis://127.0.0.1:{self.port}/0"

    def ping(self) -> bool:
        try:
            client: redis.Redis = redis.Redis.from_url(self.url, socket_timeout=0.3)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except redis.RedisError:
            return False


@dataclass
class ConsulAgent(LocalServer):
    """``consul agent -dev`` on loopback: every port but HTTP closed or free, no update
    check, and the TLS client certificate its gRPC health checks present to our mTLS
    servers (``enable_agent_tls_for_checks``)."""

    ca_file: Path = Path()
    cert_file: Path = Path()
    key_file: Path = Path()

    def config(self) -> dict[str, object]:
        """The agent configuration (JSON)."""
        return {
            "node_name": "lucid-dev",
            "bind_addr": "127.0.0.1",
            "client_addr": "127.0.0.1",
            "advertise_addr": "127.0.0.1",
            "disable_update_check": True,
            "disable_anonymous_signature": True,
            "log_level": "WARN",
            "ports": {
                "http": self.port,
                "https": -1,
                "dns": -1,
                "grpc": -1,
                "grpc_tls": -1,
                "serf_lan": free_port(),
                "serf_wan": free_port(),
                "server": free_port(),
            },
            "enable_agent_tls_for_checks": True,
            "tls": {
                "defaults": {
                    "ca_file": str(self.ca_file.resolve()),
                    "cert_file": str(self.cert_file.resolve()),
                    "key_file": str(self.key_file.resolve()),
                    "verify_incoming": False,
                    "verify_outgoing": False,
                }
            },
        }

    def command(self) -> list[str]:
        path = self.data_dir / "consul.json"
        path.write_text(json.dumps(self.config(), indent=2))
        return [tool_path("consul"), "agent", "-dev", f"-config-file={path}"]

    @property
    def address(self) -> str:
        """The HTTP API address, ``127.0.0.1:port`` (``LUCID_CONSUL_ADDR``)."""
        return f"127.0.0.1:{self.port}"

    def ping(self) -> bool:
        url = f"http://{self.address}/v1/status/leader"
        try:
            with urllib.request.urlopen(url, timeout=0.5) as response:
                leader = response.read().strip()
        except (urllib.error.URLError, OSError):
            return False
        return leader not in (b"", b'""')


@dataclass
class LocalStores:
    """A FerretDB and a Redis that belong together."""

    mongo: FerretDB
    redis: RedisServer

    @classmethod
    def at(cls, root: Path, *, mongo_port: int, redis_port: int) -> LocalStores:
        """Servers with data under ``root`` on the given ports (0 picks free ones)."""
        root = root.resolve()
        return cls(
            FerretDB("ferretdb", mongo_port or free_port(), root / "ferretdb"),
            RedisServer("redis", redis_port or free_port(), root / "redis"),
        )

    def start(self, *, detached: bool = False) -> None:
        """Starts both."""
        self.mongo.start(detached=detached)
        try:
            self.redis.start(detached=detached)
        except Exception:
            self.mongo.stop()
            raise

    def stop(self) -> None:
        """Stops both."""
        self.redis.stop()
        self.mongo.stop()

    def env(self) -> Mapping[str, str]:
        """The settings that point Lucid at these servers."""
        return {"LUCID_MONGODB_URI": self.mongo.uri, "LUCID_REDIS_URL": self.redis.url}
