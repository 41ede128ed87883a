"""The shared xrdp session manager (``xrdp-sesman``), run without systemd.

Every instance's listener asks the session manager named by the fixed
``/etc/xrdp/sesman.ini`` (port 3350, loopback), so one runs for the whole host.
It authenticates the desktop accounts with PAM and starts their X sessions
(TigerVNC's Xvnc plus the account's ``~/.xsession``). If one already answers on
its port it is used as it is; one started here is stopped with the cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import subprocess
import time
from pathlib import Path

from lucid.rdp.procs import Spawned, port_open, spawn, terminate

SYSTEM_SESMAN_INI = Path("/etc/xrdp/sesman.ini")
SOCKSETUP = Path("/usr/share/xrdp/socksetup")
DEFAULT_PORT = 3350
START_TIMEOUT_S = 10.0


def sesman_port() -> int:
    """The port xrdp listeners use to reach the session manager."""
    try:
        text = SYSTEM_SESMAN_INI.read_text()
    except OSError:
        return DEFAULT_PORT
    match = re.search(r"^\s*ListenPort\s*=\s*(\d+)", text, re.MULTILINE)
    return int(match.group(1)) if match else DEFAULT_PORT


class SessionManager:
    """Starts, stops and reports the shared ``xrdp-sesman``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.process: Spawned | None = None
        self.started_at = 0.0
        self.limits = (100, 0)
        """(MaxSessions, IdleTimeLimit seconds) written into ``sesman.ini``."""
        self._lock = asyncio.Lock()

    @property
    def port(self) -> int:
        """Its TCP port (loopback)."""
        return sesman_port()

    async def running(self) -> bool:
        """Whether a session manager answers on its port. It binds ``::1`` even when told
        127.0.0.1 (xrdp resolves the address itself), so both loopbacks are asked."""
        return await port_open("127.0.0.1", self.port) or await port_open("::1", self.port)

    def _write_config(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        text = SYSTEM_SESMAN_INI.read_text()
        text = re.sub(r"^ListenAddress=.*$", "ListenAddress=127.0.0.1", text, flags=re.M)
        text = re.sub(r"^LogFile=.*$", f"LogFile={self.directory / 'sesman.log'}", text, flags=re.M)
        text = re.sub(r"^EnableSyslog=.*$", "EnableSyslog=false", text, flags=re.M)
        text = re.sub(r"^MaxSessions=.*$", f"MaxSessions={self.limits[0]}", text, flags=re.M)
        text = re.sub(r"^IdleTimeLimit=.*$", f"IdleTimeLimit={self.limits[1]}", text, flags=re.M)
        path = self.directory / "sesman.ini"
        path.write_text(text)
        return path

    async def start(self) -> bool:
        """Starts it unless one answers already; whether this call started it."""
        async with self._lock:
            if await self.running():
                return False
            await asyncio.to_thread(_socksetup)
            config = await asyncio.to_thread(self._write_config)
            binary = shutil.which("xrdp-sesman") or "xrdp-sesman"
            self.process = await spawn(
                [binary, "--nodaemon", "--config", str(config)],
                self.directory / "sesman.out",
            )
            self.started_at = time.time()
            deadline = time.monotonic() + START_TIMEOUT_S
            while not await self.running():
                if not self.process.alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"xrdp-sesman did not start; see {self.directory}")
                await asyncio.sleep(0.05)
            return True

    async def stop(self, grace_s: float = 5.0) -> bool:
        """Stops the one started here; whether there was one."""
        async with self._lock:
            process, self.process = self.process, None
            if process is None:
                return False
            await terminate(process, grace_s)
            return True

    @property
    def pid(self) -> int:
        """The pid of the one started here (0 if none)."""
        return self.process.pid if self.process and self.process.alive() else 0

    def uptime_s(self) -> float:
        """Seconds since this process started it (0 when it did not)."""
        return time.time() - self.started_at if self.pid else 0.0


def _socksetup() -> None:
    if not SOCKSETUP.exists():
        return
    with contextlib.suppress(OSError):
        subprocess.run(["sh", str(SOCKSETUP)], check=False, capture_output=True)
