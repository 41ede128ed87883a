"""The TRON devnet as a real separate process for tests: start, SIGKILL, restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from tronpy import Tron
from tronpy.keys import PrivateKey
from tronpy.providers import HTTPProvider

from lucid.devnet.tron.config import DevnetConfig
from tests.waiting import eventually_sync

USDT = DevnetConfig().usdt_contract
"""The devnet's default USDT contract address."""


class Devnet:
    """``lucid devnet tron`` in a child process; blocks are mined by hand unless told."""

    def __init__(self, data_dir: Path, *, block_interval_s: float = 3600.0) -> None:
        self.data_dir = data_dir
        self.block_interval_s = block_interval_s
        self.genesis: list[str] = []
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fund_at_genesis(self, key: PrivateKey, trx_sun: int, usdt_micros: int) -> None:
        self.genesis.append(f"{key.public_key.to_base58check_address()}:{trx_sun}:{usdt_micros}")

    def start(self) -> None:
        port_file = self.data_dir / "port"
        port_file.unlink(missing_ok=True)
        args = [sys.executable, "-m", "lucid", "devnet", "tron", "--port", str(self.port)]
        args += ["--data-dir", str(self.data_dir), "--block-interval", str(self.block_interval_s)]
        for fund in self.genesis:
            args += ["--fund", fund]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        process = self.process

        def listening() -> bool:
            if process.poll() is not None:
                raise RuntimeError("the devnet exited before it listened")
            return port_file.exists()

        eventually_sync(listening, timeout_s=60, what="the devnet listening")
        self.port = int(port_file.read_text())

    def kill(self) -> None:
        """SIGKILL: no chance to flush anything."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def admin(self, action: str, **body: Any) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/admin/{action}", json=body, timeout=30)
        response.raise_for_status()
        return dict(response.json())

    def mine(self, n: int = 1) -> int:
        return int(self.admin("mine", n=n)["head"])

    def post(self, path: str, **body: Any) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/{path}", json=body, timeout=30)
        response.raise_for_status()
        return dict(response.json())

    def client(self) -> Tron:
        return Tron(HTTPProvider(self.url))
