"""A real RDP client for the demo: ``xfreerdp`` on a private ``Xvfb`` display.

``lucid demo`` logs into the desktop of an RDP server it started with this client, so
the rdp cluster records a real xrdp desktop without a person at the keyboard. The
client and its display are children of the demo and end with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

TOOLS = ("xrdp", "xrdp-sesman", "Xvnc", "Xvfb", "xfreerdp")
"""What a real recorded desktop needs: the xrdp stack (server side) and a client."""

DISPLAY_WAIT_S = 30.0
X11_DIR = Path("/tmp/.X11-unix")  # noqa: S108  (where X servers put their sockets)
X_LOCKS = Path("/tmp")  # noqa: S108  (and their lock files)


def missing_tools() -> list[str]:
    """The tools of a real desktop that are not installed."""
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def free_display(first: int = 300) -> int:
    """An X display number nothing uses, from ``first`` on."""
    for number in range(first, first + 300):
        if not ((X11_DIR / f"X{number}").exists() or (X_LOCKS / f".X{number}-lock").exists()):
            return number
    raise RuntimeError("no free X display")


def xfreerdp_argv(host: str, port: int, username: str, password: str) -> list[str]:
    """The client's command line: 1024x768, 24 bit, no clipboard or sound, and the
    development CA's certificate not checked."""
    return [
        "xfreerdp",
        f"/v:{host}:{port}",
        f"/u:{username}",
        f"/p:{password}",
        "/cert:ignore",
        "/size:1024x768",
        "/bpp:24",
        "-clipboard",
        "/audio-mode:2",
    ]


def _popen(argv: list[str], env: dict[str, str], out: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, env={**os.environ, **env}, stdout=out, stderr=out)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextlib.asynccontextmanager
async def rdp_client(
    host: str, port: int, username: str, password: str, log: Path
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """``xfreerdp`` connected to ``host:port`` as ``username`` (the development CA's
    certificate is not checked); yields the client process."""
    number = free_display()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        xvfb = await asyncio.to_thread(
            _popen,
            ["Xvfb", f":{number}", "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
            {},
            out,
        )
        client: subprocess.Popen[bytes] | None = None
        try:
            socket_path = X11_DIR / f"X{number}"
            deadline = asyncio.get_running_loop().time() + DISPLAY_WAIT_S
            while not await asyncio.to_thread(socket_path.exists):
                if xvfb.poll() is not None or asyncio.get_running_loop().time() > deadline:
                    raise RuntimeError(f"Xvfb :{number} did not start (see {log})")
                await asyncio.sleep(0.1)
            argv = xfreerdp_argv(host, port, username, password)
            client = await asyncio.to_thread(_popen, argv, {"DISPLAY": f":{number}"}, out)
            yield client
        finally:
            for process in (client, xvfb):
                if process is not None:
                    await asyncio.to_thread(_stop, process)
