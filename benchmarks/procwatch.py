"""Peak resident memory and CPU time of a process while a measurement runs (Linux /proc)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _status_kib(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/PID/status (``VmRSS``, ``VmHWM``), 0 when absent."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def rss_bytes(pid: int) -> int:
    """The resident memory of the process right now."""
    return _status_kib(pid, "VmRSS") * 1024


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process (all its threads) has used."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def _group_cpu_seconds(groups: Mapping[str, int]) -> dict[str, float]:
    """CPU time used so far by every live process of each process group (name -> pgid).

    A group is its leader and whatever it forked (nginx workers, PostgreSQL backends).
    """
    by_pgid = {pgid: 0.0 for pgid in groups.values()}
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = stat_path.read_text()
        except OSError:  # gone meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        pgid = int(fields[2])
        if pgid in by_pgid:
            by_pgid[pgid] += (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    return {name: by_pgid[pgid] for name, pgid in groups.items()}


def _machine_busy_seconds() -> tuple[float, float]:
    """CPU seconds the whole machine spent busy, and in total, over all cores (/proc/stat)."""
    ticks = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    total = sum(ticks[:8])  # guest time is already counted in user
    return (total - idle) / _CLOCK_TICKS, total / _CLOCK_TICKS


def _reset_peak(pid: int) -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of the process; False if not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class ProcessWatch:
    """Between enter and exit: the peak RSS and the CPU time of process ``pid``.

    RSS is sampled every ``interval`` seconds; where the kernel lets us reset
    VmHWM, its exact peak is used too, so a spike between samples is not missed.
    With ``groups`` (name -> process group id), the CPU time of each of those
    process groups and the busy share of the whole machine are kept as well.
    """

    def __init__(
        self, pid: int, interval: float = 0.01, groups: Mapping[str, int] | None = None
    ) -> None:
        self.pid = pid
        self.interval = interval
        self.groups = dict(groups or {})
        self.peak_rss_bytes = 0
        self.cpu_seconds = 0.0
        self.wall_seconds = 0.0
        self.group_cpu_seconds: dict[str, float] = {}
        self.machine_busy_share = 0.0
        self._start_groups: dict[str, float] = {}
        self._start_machine = (0.0, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._hwm_reset = False
        self._start_cpu = 0.0
        self._start_wall = 0.0

    @property
    def cpu_share(self) -> float:
        """CPU time over wall time: 1.0 is one core kept busy throughout."""
        return self.cpu_seconds / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def group_cpu_shares(self) -> dict[str, float]:
        """Each watched process group's CPU time over wall time (1.0: one core busy)."""
        if not self.wall_seconds:
            return {}
        return {name: cpu / self.wall_seconds for name, cpu in self.group_cpu_seconds.items()}

    def _sample(self) -> None:
        peak = 0
        while not self._stop.is_set():
            peak = max(peak, rss_bytes(self.pid))
            self._stop.wait(self.interval)
        self.peak_rss_bytes = max(self.peak_rss_bytes, peak)

    def __enter__(self) -> Self:
        self._hwm_reset = _reset_peak(self.pid)
        if self.groups:
            self._start_groups = _group_cpu_seconds(self.groups)
            self._start_machine = _machine_busy_seconds()
        self._start_cpu = _cpu_seconds(self.pid)
        self._start_wall = time.monotonic()
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.wall_seconds = time.monotonic() - self._start_wall
        self.cpu_seconds = _cpu_seconds(self.pid) - self._start_cpu
        if self.groups:
            ended = _group_cpu_seconds(self.groups)
            self.group_cpu_seconds = {
                name: ended[name] - self._start_groups[name] for name in self.groups
            }
            busy, total = _machine_busy_seconds()
            start_busy, start_total = self._start_machine
            if total > start_total:
                self.machine_busy_share = (busy - start_busy) / (total - start_total)
        if self._hwm_reset:
            self.peak_rss_bytes = max(self.peak_rss_bytes, _status_kib(self.pid, "VmHWM") * 1024)
