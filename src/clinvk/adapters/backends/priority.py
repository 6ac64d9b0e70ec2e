"""The CPU priority of a warm pool's spare: low while it starts, normal once a run takes it.

A CLI starting takes about a CPU-second; on a 2-core machine a spare starting beside a live
run slows that run's first text. A spare is therefore started at the lowest priority, so it
only takes CPU the live runs leave idle, and raised back when a run takes it.

Two levers, because the CLIs run in sessions of their own (`start_new_session`):

- **autogroup nice** (`/proc/<pid>/autogroup`, sched(7)): with
  `kernel.sched_autogroup_enabled`, the scheduler first shares the CPU between sessions by
  their autogroup's nice, so a per-thread nice alone does not yield to another session.
  Lowering and raising it back to 0 need no privilege (only a negative value does), but a
  process without CAP_SYS_ADMIN may change it at most once per 0.1 s (a refused raise is
  retried beside the run, which does not wait for it).
- **per thread** (SCHED_IDLE and nice 19, inherited by every thread and child the CLI
  starts): what counts where autogroups do not apply (a CLI in a cpu cgroup other than the
  root, e.g. a systemd service). Raising it back needs CAP_SYS_NICE or an RLIMIT_NICE of 20.

`choose` picks what can be undone: a spare that could not be raised back would serve its
whole request at the lowest priority, which costs more than its start-up ever does. The
supervisor (supervise.py) lowers itself before it starts the CLI, so nothing of the CLI runs
at normal priority; `restore` raises the whole tree back from the server.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import threading
import time
from typing import Literal

#: How a spare starts: "normal" (as a cold run), "autogroup" (its session's autogroup at nice
#: 19) or "idle" (that, plus SCHED_IDLE and nice 19 on every thread).
Mode = Literal["normal", "autogroup", "idle"]
CAP_SYS_NICE = 23
#: A process without CAP_SYS_ADMIN may change an autogroup's nice once per this (kernel).
AUTOGROUP_RATE_SECS = 0.1


def choose(requested: str, *, can_renice: bool, autogroup: bool) -> Mode:
    """The mode spares start in: the lowest that `restore` can undo with these rights."""
    if requested != "low":
        return "normal"
    if can_renice:
        return "idle"
    return "autogroup" if autogroup else "normal"


def can_renice() -> bool:
    """Whether this process may raise a thread's priority back (CAP_SYS_NICE, root, or an
    RLIMIT_NICE that allows nice 0)."""
    if os.geteuid() == 0:
        return True
    try:
        if resource.getrlimit(resource.RLIMIT_NICE)[0] >= 20:  # 20 - nice, for nice 0
            return True
    except (AttributeError, ValueError, OSError):
        pass
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_SYS_NICE & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


def autogroup_enabled(path: str = "/proc/sys/kernel/sched_autogroup_enabled") -> bool:
    """Whether the kernel groups the CPU by session (autogroup)."""
    try:
        with open(path) as f:
            return f.read().strip() == "1"
    except OSError:
        return False


def detect(requested: str) -> Mode:
    """`choose` with this process's rights and this kernel."""
    if requested != "low":
        return "normal"
    return choose(requested, can_renice=can_renice(), autogroup=autogroup_enabled())


def restore(pid: int, mode: Mode) -> bool:
    """Raise the process tree led by `pid` (a spare's supervisor) back to the server's own
    priority; False when some of it could not be (it stays low). Reads and writes /proc:
    call it off the event loop."""
    if mode == "normal":
        return True
    ok = _autogroup(pid, 0)
    if mode == "idle":
        nice = os.getpriority(os.PRIO_PROCESS, 0)
        # Twice at most again: a thread started from a not yet raised one inherits the low
        # priority, the next pass sees it.
        for _ in range(3):
            changed, raised = _raise_threads(pid, nice)
            ok = ok and raised
            if not changed:
                break
    return ok


def _autogroup(pid: int, nice: int) -> bool:
    """Set the autogroup's nice; when the kernel's rate limit refuses it, try again from a
    thread of its own for a while (the run does not wait for it)."""
    try:
        _write_autogroup(pid, nice)
        return True
    except OSError as exc:
        if exc.errno != errno.EAGAIN:
            return exc.errno in (errno.ENOENT, errno.ESRCH)  # gone, or no autogroups
    threading.Thread(target=_retry_autogroup, args=(pid, nice), daemon=True).start()
    return True


def _write_autogroup(pid: int, nice: int) -> None:
    with open(f"/proc/{pid}/autogroup", "w") as f:
        f.write(str(nice))


def _retry_autogroup(pid: int, nice: int, *, tries: int = 10) -> None:
    for _ in range(tries):
        time.sleep(AUTOGROUP_RATE_SECS / 2)
        try:
            _write_autogroup(pid, nice)
            return
        except OSError as exc:
            if exc.errno != errno.EAGAIN:
                return


def _raise_threads(pid: int, nice: int) -> tuple[bool, bool]:
    """(whether any thread was changed, whether every one could be)."""
    changed, ok = False, True
    for task in _tree_tasks(pid):
        try:
            if os.sched_getscheduler(task) == os.SCHED_IDLE:
                os.sched_setscheduler(task, os.SCHED_OTHER, os.sched_param(0))
                changed = True
            if os.getpriority(os.PRIO_PROCESS, task) != nice:
                os.setpriority(os.PRIO_PROCESS, task, nice)
                changed = True
        except ProcessLookupError:
            continue
        except OSError:
            ok = False
    return changed, ok


def starting(pid: int) -> bool:
    """Whether the process tree led by `pid` is still busy (some thread running or waiting
    for a CPU or the disk): a spare that is done starting sleeps until its prompt comes."""
    for task in _tree_tasks(pid):
        try:
            with open(f"/proc/{task}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state in (b"R", b"D"):
            return True
    return False


def _tree_tasks(pid: int) -> list[int]:
    """Every thread of `pid` and of its descendants (Linux /proc)."""
    tasks: list[int] = []
    todo = [pid]
    while todo:
        proc = todo.pop()
        try:
            threads = os.listdir(f"/proc/{proc}/task")
        except OSError:
            continue
        for tid in threads:
            tasks.append(int(tid))
            with (
                contextlib.suppress(OSError, ValueError),
                open(f"/proc/{proc}/task/{tid}/children") as f,
            ):
                todo.extend(int(c) for c in f.read().split())
    return tasks
