"""The ``RdpBackend`` interface of server instances, and its working implementation
running real xrdp listeners (no systemd).

A backend prepares an instance (account, directories, configuration, certificate),
spawns its listener, stops it (SIGTERM, SIGKILL after the grace time), says whether
it is alive, removes it, and finds the X display of the account's desktop session
(what the recorder captures).
"""

from __future__ import annotations

import asyncio
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import psutil

from lucid.lib.sealing import Sealer
from lucid.rdp import accounts, xidle
from lucid.rdp.instance import InstanceFiles
from lucid.rdp.procs import Spawned, pid_alive, port_open, spawn, terminate
from lucid.rdp.sesman import SessionManager

X_SERVERS = ("Xvnc", "Xorg")


@dataclass(frozen=True)
class InstanceSpec:
    """What a backend needs to know about one server instance."""

    server_id: str
    host: str
    port: int
    username: str
    password: str
    color_depth: int
    audio: bool
    clipboard: bool
    drives: bool
    crypt_level: str = "high"
    tls_protocols: tuple[str, ...] = ("TLSv1.2", "TLSv1.3")
    bitmap_cache: bool = True
    compression: bool = True


@dataclass(frozen=True)
class Display:
    """An X display of a desktop session, and the cookie file to open it."""

    name: str
    """``:10``."""
    xauthority: Path
    server_pid: int


class RdpBackend(Protocol):
    """What the server lifecycle needs from RDP instances."""

    async def prepare(self, spec: InstanceSpec) -> None:
        """Creates the account, directories and configuration (idempotent)."""
        ...

    async def spawn(self, spec: InstanceSpec) -> int:
        """Starts the listener; its pid once it accepts TCP. Raises ``StartError``."""
        ...

    async def set_password(self, username: str, password: str) -> None:
        """Gives the desktop account a new password."""
        ...

    async def stop(self, username: str, pid: int, grace_s: float) -> None:
        """Stops the listener and ends the account's desktop sessions."""
        ...

    def alive(self, pid: int) -> bool:
        """Whether the listener of that pid is running."""
        ...

    async def remove(self, spec: InstanceSpec) -> None:
        """Deletes the account and the instance's files."""
        ...

    def display(self, username: str) -> Display | None:
        """The X display of the account's desktop session, if one runs."""
        ...

    async def end_client_connections(self, pid: int) -> int:
        """Drops the connected RDP clients of a listener; how many."""
        ...

    def client_count(self, pid: int) -> int:
        """How many RDP clients are connected to a listener."""
        ...

    def input_idle_s(self, display: Display) -> float | None:
        """Seconds since the desktop's last key or pointer input (None: unknown)."""
        ...


class StartError(RuntimeError):
    """The listener did not come up."""


class XrdpBackend:
    """Real xrdp: one listener process per instance, the shared session manager."""

    def __init__(
        self,
        instances_dir: Path,
        certs_dir: Path,
        sealer: Sealer,
        sesman: SessionManager,
        *,
        start_wait_s: float = 3.0,
    ) -> None:
        self.instances_dir = instances_dir
        self.certs_dir = certs_dir
        self.sealer = sealer
        self.sesman = sesman
        self.start_wait_s = start_wait_s
        self._spawned: dict[int, Spawned] = {}

    def files(self, server_id: str) -> InstanceFiles:
        """The files of a server."""
        return InstanceFiles.of(self.instances_dir, server_id)

    async def prepare(self, spec: InstanceSpec) -> None:
        await accounts.create(spec.username, spec.password)
        await asyncio.to_thread(
            self.files(spec.server_id).write,
            port=spec.port,
            max_bpp=spec.color_depth or 24,
            audio=spec.audio,
            clipboard=spec.clipboard,
            drives=spec.drives,
            crypt_level=spec.crypt_level,
            tls_protocols=", ".join(spec.tls_protocols),
            bitmap_cache=spec.bitmap_cache,
            compression=spec.compression,
            certs_dir=self.certs_dir,
            sealer=self.sealer,
        )

    async def set_password(self, username: str, password: str) -> None:
        await accounts.set_password(username, password)

    async def spawn(self, spec: InstanceSpec) -> int:
        files = self.files(spec.server_id)
        if not files.xrdp_ini.exists():
            await self.prepare(spec)
        await self.sesman.start()
        binary = shutil.which("xrdp") or "xrdp"
        spawned = await spawn(
            [binary, "--nodaemon", "--config", str(files.xrdp_ini)], files.output_log
        )
        deadline = time.monotonic() + self.start_wait_s
        while not await port_open(spec.host, spec.port):
            if not spawned.alive():
                raise StartError(f"xrdp exited with {spawned.process.returncode}")
            if time.monotonic() > deadline:
                await terminate(spawned, 1.0)
                raise StartError(f"xrdp did not listen on {spec.port} in {self.start_wait_s} s")
            await asyncio.sleep(0.05)
        self._spawned[spawned.pid] = spawned
        return spawned.pid

    async def stop(self, username: str, pid: int, grace_s: float) -> None:
        spawned = self._spawned.pop(pid, None)
        if spawned is not None:
            await terminate(spawned, grace_s)
        elif pid_alive(pid):
            await asyncio.to_thread(_kill_tree, pid, grace_s)
        await accounts.end_processes(username, grace_s)

    def alive(self, pid: int) -> bool:
        spawned = self._spawned.get(pid)
        if spawned is not None:
            return spawned.alive()
        return pid_alive(pid)

    async def remove(self, spec: InstanceSpec) -> None:
        await accounts.remove(spec.username)
        await asyncio.to_thread(self.files(spec.server_id).remove)

    def display(self, username: str) -> Display | None:
        for process in accounts.processes_of(username):
            try:
                if process.name() not in X_SERVERS:
                    continue
                args = process.cmdline()
                cwd = Path(process.cwd())
            except psutil.Error:
                continue
            name = next((a for a in args[1:] if a.startswith(":") and a[1:].isdigit()), "")
            auth = args[args.index("-auth") + 1] if "-auth" in args[:-1] else ".Xauthority"
            if name:
                return Display(name, cwd / auth, process.pid)
        return None

    def input_idle_s(self, display: Display) -> float | None:
        return xidle.idle_s(display.name, display.xauthority)

    def client_count(self, pid: int) -> int:
        # xrdp forks one child per client connection
        try:
            return len(psutil.Process(pid).children())
        except psutil.Error:
            return 0

    async def end_client_connections(self, pid: int) -> int:
        try:
            children = psutil.Process(pid).children()
        except psutil.Error:
            return 0
        for child in children:
            try:
                child.terminate()
            except psutil.Error:
                continue
        await asyncio.to_thread(psutil.wait_procs, children, 3.0)
        return len(children)


def _kill_tree(pid: int, grace_s: float) -> None:
    try:
        parent = psutil.Process(pid)
        processes = [parent, *parent.children(recursive=True)]
    except psutil.Error:
        return
    for process in processes:
        try:
            process.terminate()
        except psutil.Error:
            continue
    _, alive = psutil.wait_procs(processes, grace_s)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            continue
