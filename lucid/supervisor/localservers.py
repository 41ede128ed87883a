"""FerretDB (on a private PostgreSQL, or SQLite as an explicit option), redis-server and
a Consul agent on loopback, with their data under one directory.

Used three ways: ``lucid dev up/down`` (detached, for ``make test``), ``lucid up``
(children of the supervisor) and tests that need a private server they may stop.

PostgreSQL refuses to run as root: run by root, its cluster belongs to the unprivileged
``postgres`` user the Debian package creates, and lives under the data directory when
that user can reach it (else in a private directory under the system temp directory,
removed when the server stops).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pymongo
import redis

READY_TIMEOUT_S = 30.0
FERRETDB_BACKENDS = ("postgresql", "sqlite")
POSTGRES_USER = "postgres"
POSTGRES_LIB = Path("/usr/lib/postgresql")


class LocalServerError(RuntimeError):
    """A local server could not be found, started or reached."""


_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port free on loopback right now, never one this process handed out before.

    The kernel may offer a port again as soon as its probe socket closes; a port chosen
    for a server that has not bound it yet must not go to a second server.
    """
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def tool_path(name: str) -> str:
    """A tool from the Lucid tool cache or the PATH."""
    cache = Path(os.environ.get("LUCID_CACHE", Path.home() / ".cache" / "lucid")) / "bin" / name
    if cache.exists():
        return str(cache)
    found = shutil.which(name)
    if not found:
        raise LocalServerError(f"{name} not found: run `make tools`")
    return found


@dataclass(frozen=True)
class RunAs:
    """Whom a server process runs as (``None``: as this process)."""

    uid: int | None = None
    gid: int | None = None
    groups: tuple[int, ...] | None = None

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` run as this user, through util-linux ``setpriv``.

        Not ``subprocess``'s ``user=``/``group=``: those make Python fork instead of
        vfork, and a fork of a process running gRPC runs gRPC's fork handlers in the child,
        which crashed it (SIGBUS) before the exec now and then.
        """
        if self.uid is None:
            return argv
        prefix = ["setpriv", f"--reuid={self.uid}"]
        if self.gid is not None:
            prefix.append(f"--regid={self.gid}")
        if self.groups is not None:
            prefix.append(
                f"--groups={','.join(map(str, self.groups))}" if self.groups else "--clear-groups"
            )
        return [*prefix, "--", *argv]


def postgres_tool(name: str) -> str:
    """A PostgreSQL server program (Debian keeps them off the PATH, under
    ``/usr/lib/postgresql/<version>/bin``; the newest version wins)."""
    versions = sorted(
        (p for p in POSTGRES_LIB.glob(f"*/bin/{name}") if p.parent.parent.name.isdigit()),
        key=lambda p: int(p.parent.parent.name),
    )
    if versions:
        return str(versions[-1])
    found = shutil.which(name)
    if not found:
        raise LocalServerError(f"{name} not found: run `make tools` (installs postgresql)")
    return found


@dataclass
class LocalServer:
    """One server process."""

    name: str
    port: int
    data_dir: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    stop_signal: signal.Signals = field(default=signal.SIGTERM, repr=False)

    @property
    def pid_file(self) -> Path:
        """Where a detached server's pid is kept."""
        return self.data_dir / f"{self.name}.pid"

    def command(self) -> list[str]:
        """The command line that runs the server."""
        raise NotImplementedError

    def run_as(self) -> RunAs:
        """The user the server runs as (this process's by default)."""
        return RunAs()

    def ping(self) -> bool:
        """Whether the server answers."""
        raise NotImplementedError

    def start(self, *, detached: bool = False) -> None:
        """Starts the server and waits until it answers."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = (self.data_dir / f"{self.name}.log").open("ab")
        self.process = subprocess.Popen(
            self.run_as().wrap(self.command()),
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
            os.kill(pid, self.stop_signal)
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


def _reachable_by(path: Path, uid: int) -> bool:
    """Whether user ``uid`` may pass through every directory above ``path``."""
    for parent in path.parents:
        try:
            info = parent.stat()
        except FileNotFoundError:
            continue  # made later by us, with the umask's o+x
        if info.st_uid != uid and not info.st_mode & stat.S_IXOTH:
            return False
    return True


@dataclass
class PostgresServer(LocalServer):
    """A private PostgreSQL cluster on loopback (no unix socket), for FerretDB: made with
    ``initdb`` on first start, trust authentication for its one local user."""

    stop_signal: signal.Signals = field(default=signal.SIGINT, repr=False)  # fast shutdown

    @property
    def _as_root(self) -> bool:
        return os.geteuid() == 0

    @property
    def _account(self) -> pwd.struct_passwd:
        try:
            return pwd.getpwnam(POSTGRES_USER)
        except KeyError:
            raise LocalServerError(
                f"PostgreSQL cannot run as root and there is no {POSTGRES_USER!r} user: "
                "run `make tools` (installs postgresql, which creates it)"
            ) from None

    @property
    def cluster_dir(self) -> Path:
        """The PostgreSQL data directory (``PGDATA``)."""
        inside = self.data_dir.resolve() / "pgdata"
        if not self._as_root or _reachable_by(inside, self._account.pw_uid):
            return inside
        digest = hashlib.sha256(str(inside).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"lucid-postgres-{digest}" / "pgdata"

    def run_as(self) -> RunAs:
        if not self._as_root:
            return RunAs()
        account = self._account
        return RunAs(account.pw_uid, account.pw_gid, ())

    def _initdb(self) -> None:
        pgdata = self.cluster_dir
        if (pgdata / "PG_VERSION").exists():
            return
        pgdata.mkdir(parents=True, exist_ok=True)
        pgdata.chmod(0o700)
        if self._as_root:
            account = self._account
            for path in (pgdata.parent, pgdata):
                os.chown(path, account.pw_uid, account.pw_gid)
        result = subprocess.run(
            self.run_as().wrap(
                [
                    postgres_tool("initdb"),
                    f"--pgdata={pgdata}",
                    f"--username={POSTGRES_USER}",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-sync",
                ]
            ),
            capture_output=True,
            text=True,
            check=False,
            cwd=pgdata,
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()[-2000:]
            raise LocalServerError(f"initdb failed (exit {result.returncode}): {output}")

    def command(self) -> list[str]:
        return [
            postgres_tool("postgres"),
            "-D", str(self.cluster_dir),
            "-p", str(self.port),
            "-c", "listen_addresses=127.0.0.1",
            "-c", "unix_socket_directories=",
            "-c", "max_connections=200",
            "-c", "log_min_messages=warning",
            "-c", "log_checkpoints=off",
        ]  # fmt: skip

    def start(self, *, detached: bool = False) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._as_root:  # the log and pid files are written by us, the server only reads
            self.data_dir.chmod(0o755)
        self._initdb()
        super().start(detached=detached)

    def stop(self, timeout_s: float = 10.0) -> None:
        super().stop(timeout_s)
        pgdata = self.cluster_dir
        if pgdata != self.data_dir.resolve() / "pgdata":
            shutil.rmtree(pgdata.parent, ignore_errors=True)

    @property
    def url(self) -> str:
        """The connection URL FerretDB uses."""
        return f"postgres://{POSTGRES_USER}@127.0.0.1:{self.port}/postgres"

    def ping(self) -> bool:
        result = subprocess.run(
            [postgres_tool("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
            check=False,
            timeout=5,
        )
        return result.returncode == 0


@dataclass
class FerretDB(LocalServer):
    """FerretDB v1: the local MongoDB, on PostgreSQL (``postgres`` given) or SQLite."""

    postgres: PostgresServer | None = None

    def backend_flags(self) -> list[str]:
        """The handler and its storage."""
        if self.postgres is not None:
            return ["--handler=postgresql", f"--postgresql-url={self.postgres.url}"]
        return ["--handler=sqlite", f"--sqlite-url=file:{self.data_dir / 'sqlite'}/"]

    def command(self) -> list[str]:
        return [
            tool_path("ferretdb"),
            *self.backend_flags(),
            f"--listen-addr=127.0.0.1:{self.port}",
            f"--state-dir={self.data_dir}",
            "--debug-addr=-",
            "--telemetry=disable",
            "--log-level=warn",
        ]

    def start(self, *, detached: bool = False) -> None:
        """Starts FerretDB (and its PostgreSQL first, unless that answers already; it
        outlives a FerretDB restart and stops with ``LocalStores.stop``)."""
        if self.postgres is None:
            (self.data_dir / "sqlite").mkdir(parents=True, exist_ok=True)
        elif not self.postgres.ping():
            self.postgres.start(detached=detached)
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


@dataclass
class RedisServer(LocalServer):
    """Debian's redis-server, with KEYS and FLUSHALL disabled as in production (spec 08).

    ``persistent``: an append-only file fsynced every second, replayed on start (``lucid
    up``: revocations, rate limits and stream offsets outlive a crash); otherwise nothing
    is kept on disk (the test servers start clean every run)."""

    persistent: bool = False

    def command(self) -> list[str]:
        return [
            tool_path("redis-server"),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes" if self.persistent else "no",
            "--appendfsync", "everysec",
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
    """A FerretDB (and the PostgreSQL under it) and a Redis that belong together."""

    mongo: FerretDB
    redis: RedisServer

    @classmethod
    def at(
        cls,
        root: Path,
        *,
        mongo_port: int,
        redis_port: int,
        backend: str = "postgresql",
        redis_persistent: bool = False,
    ) -> LocalStores:
        """Servers with data under ``root`` on the given ports (0 picks free ones);
        ``backend`` is FerretDB's store, ``postgresql`` or ``sqlite``; ``redis_persistent``
        keeps Redis's data in an append-only file."""
        if backend not in FERRETDB_BACKENDS:
            raise LocalServerError(
                f"unknown FerretDB backend {backend!r}: one of {', '.join(FERRETDB_BACKENDS)}"
            )
        root = root.resolve()
        postgres = (
            PostgresServer("postgres", free_port(), root / "postgres")
            if backend == "postgresql"
            else None
        )
        return cls(
            FerretDB("ferretdb", mongo_port or free_port(), root / "ferretdb", postgres=postgres),
            RedisServer(
                "redis", redis_port or free_port(), root / "redis", persistent=redis_persistent
            ),
        )

    @property
    def servers(self) -> list[LocalServer]:
        """Every server, in the order they start."""
        first = [self.mongo.postgres] if self.mongo.postgres is not None else []
        return [*first, self.mongo, self.redis]

    def start(self, *, detached: bool = False) -> None:
        """Starts them all (none stays up if one fails)."""
        try:
            self.mongo.start(detached=detached)
            self.redis.start(detached=detached)
        except Exception:
            self.stop()
            raise

    def stop(self) -> None:
        """Stops them all, the last started first."""
        for server in reversed(self.servers):
            server.stop()

    def env(self) -> Mapping[str, str]:
        """The settings that point Lucid at these servers."""
        return {"LUCID_MONGODB_URI": self.mongo.uri, "LUCID_REDIS_URL": self.redis.url}
