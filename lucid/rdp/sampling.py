"""Resource samples with psutil (spec 04 §4.4): the host (CPU, memory, root disk,
network rates) and one server: CPU and memory of its process tree (its xrdp
listener with the forked connections, and every process of its desktop account),
the disk its instance directory and the account's home take, and the network
rates of the TCP connections on its port (``lucid.rdp.tcpstats``)."""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import psutil

from lucid.rdp import accounts, tcpstats
from lucid.rdp.instance import InstanceFiles
from lucid.rdp.records import Sample

log = logging.getLogger("lucid.rdp.sampling")

MB = 1024 * 1024


class Sampler:
    """Keeps the process handles and counters between rounds (CPU and network rates
    are measured from one round to the next)."""

    def __init__(self, instances_dir: Path) -> None:
        self.instances_dir = instances_dir
        self._processes: dict[int, psutil.Process] = {}
        self._net: tuple[float, int, int] | None = None
        self._ports: dict[str, tuple[float, tcpstats.Counters]] = {}
        psutil.cpu_percent(interval=None)

    def host(self, now: datetime) -> Sample:
        """The whole machine."""
        memory = psutil.virtual_memory()
        disk = psutil.disk_usage("/")
        counters = psutil.net_io_counters()
        stamp = time.monotonic()
        net_in = net_out = 0.0
        if self._net is not None:
            elapsed = max(stamp - self._net[0], 1e-6)
            net_in = (counters.bytes_recv - self._net[1]) / 1024 / elapsed
            net_out = (counters.bytes_sent - self._net[2]) / 1024 / elapsed
        self._net = (stamp, counters.bytes_recv, counters.bytes_sent)
        return Sample(
            scope="host",
            subject_id="",
            time=now,
            cpu_percent=psutil.cpu_percent(interval=None),
            memory_percent=memory.percent,
            memory_mb=(memory.total - memory.available) / MB,
            disk_percent=disk.percent,
            disk_mb=disk.used / MB,
            net_in_kbps=net_in,
            net_out_kbps=net_out,
        )

    def _handle(self, process: psutil.Process) -> psutil.Process:
        known = self._processes.get(process.pid)
        if known is None:
            known = process
            known.cpu_percent(interval=None)  # the first call only starts the count
            self._processes[process.pid] = known
        return known

    def _port_rates(self, server_id: str, port: int) -> tuple[float, float]:
        """KiB/s (in, out) on the server's port since its previous sample (0 the first
        time)."""
        try:
            counters = tcpstats.of_port(port)
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("no network counters for server %s: %s", server_id, exc)
            return 0.0, 0.0
        stamp = time.monotonic()
        previous = self._ports.get(server_id)
        self._ports[server_id] = (stamp, counters)
        if previous is None:
            return 0.0, 0.0
        sent, received = tcpstats.delta(previous[1], counters)
        elapsed = max(stamp - previous[0], 1e-6)
        return received / 1024 / elapsed, sent / 1024 / elapsed

    def server(
        self, server_id: str, listener_pid: int, username: str, port: int, now: datetime
    ) -> Sample:
        """A server: the listener's tree and the account's processes, its files, its
        port's traffic."""
        found: dict[int, psutil.Process] = {}
        if listener_pid:
            try:
                listener = psutil.Process(listener_pid)
                for process in (listener, *listener.children(recursive=True)):
                    found[process.pid] = process
            except psutil.Error:
                pass
        for process in accounts.processes_of(username):
            found[process.pid] = process
        cpu = rss = 0.0
        for pid, process in found.items():
            try:  # a process may exit while it is read
                handle = self._handle(process)
                cpu += handle.cpu_percent(interval=None)
                rss += handle.memory_info().rss
            except psutil.Error:
                self._processes.pop(pid, None)
        total = psutil.virtual_memory().total
        homes = [accounts.home_of(username)] if accounts.exists(username) else []
        stored = disk_bytes([InstanceFiles.of(self.instances_dir, server_id).root, *homes])
        disk_total = psutil.disk_usage("/").total
        net_in, net_out = self._port_rates(server_id, port)
        return Sample(
            scope="server",
            subject_id=server_id,
            time=now,
            cpu_percent=cpu,
            memory_percent=100.0 * rss / total if total else 0.0,
            memory_mb=rss / MB,
            disk_percent=100.0 * stored / disk_total if disk_total else 0.0,
            disk_mb=stored / MB,
            net_in_kbps=net_in,
            net_out_kbps=net_out,
        )

    def keep_servers(self, server_ids: set[str]) -> None:
        """Drops the network counters of servers no longer sampled."""
        for server_id in set(self._ports) - server_ids:
            self._ports.pop(server_id)

    def forget_dead(self) -> None:
        """Drops handles of processes that exited."""
        for pid in [p for p, h in self._processes.items() if not h.is_running()]:
            self._processes.pop(pid, None)


def disk_bytes(roots: Iterable[Path]) -> int:
    """Bytes allocated on disk under each root (files not followed through symlinks;
    a root or file that vanishes while walking counts as nothing)."""
    total = 0
    stack = [str(root) for root in roots]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    total += entry.stat(follow_symlinks=False).st_blocks * 512
            except OSError:
                continue
    return total
