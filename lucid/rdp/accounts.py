"""Dedicated local desktop accounts, one per server (PAM users for xrdp).

Each server gets a system user with a random password, set with ``chpasswd`` over
stdin (never on a command line, never logged). The account's ``~/.xsession`` is
the desktop xrdp's session manager starts at login. Creating and removing users
needs root (CI runs as root).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import secrets
import signal
from pathlib import Path

import psutil

from lucid.runtime.errors import ErrorCode, LucidError

PASSWORD_BYTES = 18
XSESSION = """#!/bin/sh
# The desktop of a Lucid RDP server: a terminal on the whole screen.
exec xterm -maximized -bg white -fg black -fa Monospace -fs 14
"""


def username_for(prefix: str, server_id: str) -> str:
    """The account name of a server (≤ 32 characters, as useradd requires)."""
    return f"{prefix}{server_id.replace('-', '')[:12]}"


def new_password() -> str:
    """A random password."""
    return secrets.token_urlsafe(PASSWORD_BYTES)


async def _run(*args: str, stdin: bytes | None = None) -> None:
    process = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate(stdin)
    if process.returncode != 0:
        raise LucidError(
            ErrorCode.ERROR_CODE_INTERNAL,
            f"{args[0]} failed ({process.returncode}): {err.decode(errors='replace').strip()}",
        )


def exists(username: str) -> bool:
    """Whether the account exists."""
    try:
        pwd.getpwnam(username)
    except KeyError:
        return False
    return True


def home_of(username: str) -> Path:
    """The account's home directory."""
    return Path(pwd.getpwnam(username).pw_dir)


async def set_password(username: str, password: str) -> None:
    """Replaces the account's password (over stdin: never on a command line)."""
    await _run("chpasswd", stdin=f"{username}:{password}\n".encode())


async def create(username: str, password: str) -> None:
    """Creates the account (or resets its password) and writes its desktop session."""
    if not exists(username):
        await _run("useradd", "--create-home", "--shell", "/bin/sh", username)
    await set_password(username, password)
    entry = pwd.getpwnam(username)
    xsession = Path(entry.pw_dir) / ".xsession"
    await asyncio.to_thread(xsession.write_text, XSESSION)
    os.chown(xsession, entry.pw_uid, entry.pw_gid)
    xsession.chmod(0o755)


def processes_of(username: str) -> list[psutil.Process]:
    """The account's running processes."""
    found = []
    for process in psutil.process_iter(["username"]):
        if process.info["username"] == username:
            found.append(process)
    return found


async def end_processes(username: str, grace_s: float) -> None:
    """SIGTERM to every process of the account, SIGKILL to those left after ``grace_s``."""
    processes = processes_of(username)
    for process in processes:
        try:
            process.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            continue
    _, alive = await asyncio.to_thread(psutil.wait_procs, processes, grace_s)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            continue


async def remove(username: str) -> None:
    """Ends the account's processes and deletes it with its home directory."""
    if not exists(username):
        return
    await end_processes(username, 2.0)
    await _run("userdel", "--remove", username)
