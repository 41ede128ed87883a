"""Resource samples with psutil (spec 04 §4.4): the host (CPU, memory, root disk,
network rates) and one server's process tree (its xrdp listener with the forked
connections, and every process of its desktop account)."""

from __future__ import annotations

import time
from datetime import datetime

import psutil

from lucid.rdp import accounts
from lucid.rdp.records import Sample

MB = 1024 * 1024


class Sampler:
    """Keeps the process handles and counters between rounds (CPU and network rates
    are measured from one round to the next)."""

    def __init__(self) -> None:
        self._processes: dict[int, psutil.Process] = {}
        self._net: tuple[float, int, int] | None = None
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

    def server(self, server_id: str, listener_pid: int, username: str, now: datetime) -> Sample:
        """A server: the listener's tree and the account's processes."""
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
            handle = self._handle(process)
            try:
                cpu += handle.cpu_percent(interval=None)
                rss += handle.memory_info().rss
            except psutil.Error:
                self._processes.pop(pid, None)
        total = psutil.virtual_memory().total
        return Sample(
            scope="server",
            subject_id=server_id,
            time=now,
            cpu_percent=cpu,
            memory_percent=100.0 * rss / total if total else 0.0,
            memory_mb=rss / MB,
        )

    def forget_dead(self) -> None:
        """Drops handles of processes that exited."""
        for pid in [p for p, h in self._processes.items() if not h.is_running()]:
            self._processes.pop(pid, None)
