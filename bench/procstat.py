"""Read memory and CPU figures of live processes from /proc (Linux only, stdlib only)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Self

TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Cpu:
    """CPU seconds of one process: its own, and those of its children it has reaped."""

    own: float
    children: float

    def __add__(self, other: Cpu) -> Cpu:
        return Cpu(own=self.own + other.own, children=self.children + other.children)

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(own=self.own - other.own, children=self.children - other.children)


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat", "rb") as f:
        # The command name may hold spaces and parentheses: split after its last ")".
        return f.read().rsplit(b") ", 1)[1].decode().split()


def cpu(pid: int) -> Cpu:
    """utime+stime of `pid`, and cutime+cstime (CPU of children it waited for)."""
    f = _stat_fields(pid)  # f[0] is field 3 (state); utime is field 14
    utime, stime, cutime, cstime = (int(x) for x in f[11:15])
    return Cpu(own=(utime + stime) / TICK, children=(cutime + cstime) / TICK)


def rss_mb(pid: int) -> float:
    """VmRSS of one process in MiB (0 when it is gone or a zombie)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (CLIs run in their own sessions, but stay children)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(entry))[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def tree_rss_mb(pid: int) -> float:
    """VmRSS summed over `pid` and all its descendants (shared pages counted per process)."""
    return rss_mb(pid) + sum(rss_mb(p) for p in descendants(pid))


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies over all CPUs from /proc/stat, to compute load over a span."""
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return total - idle, total


class RssSampler:
    """Samples the peak RSS of a process and of its whole tree in a background thread."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_own = 0.0
        self.peak_tree = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_own = max(self.peak_own, rss_mb(self.pid))
            self.peak_tree = max(self.peak_tree, tree_rss_mb(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def wall() -> float:
    """A monotonic clock for every timing in the bench."""
    return time.perf_counter()
