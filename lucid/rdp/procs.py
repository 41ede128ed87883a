"""Child processes of the rdp cluster: spawn in their own process group with output to
a log file, SIGTERM then SIGKILL, liveness, and TCP reachability checks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Spawned:
    """A running child process."""

    process: asyncio.subprocess.Process

    @property
    def pid(self) -> int:
        """Its pid."""
        return self.process.pid

    def alive(self) -> bool:
        """Whether it has not exited."""
        return self.process.returncode is None


async def spawn(argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None) -> Spawned:
    """Starts ``argv`` in a new session, stdout and stderr appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            env=dict(env) if env is not None else None,
        )
    return Spawned(process)


def pid_alive(pid: int) -> bool:
    """Whether a process of that pid exists and is not a zombie."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


async def terminate(spawned: Spawned, grace_s: float) -> None:
    """SIGTERM to the process group, SIGKILL after ``grace_s``; waits for the exit."""
    if spawned.alive():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(spawned.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(spawned.process.wait(), grace_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(spawned.pid, signal.SIGKILL)
            await spawned.process.wait()
    else:
        await spawned.process.wait()


async def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def port_bindable(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound now (no other process holds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as xrdp binds
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True
