"""The run supervisor: a tiny process between the server and one CLI, so no CLI outlives it.

The server starts every CLI as `python -I -S supervise.py STATUS_FD LIFELINE_FD SERVER_PID
[--priority=MODE] -- ARGV...` (see process.py). This process leads the run's process group; it forks the CLI
into that group and then only waits. It is a child subreaper (Linux), so every descendant of
the CLI stays below it even when its parent dies, including helpers that left the group with
setsid (codex's shells) — the server alone cannot find those once their parent is gone.

It learns that the server died two ways, whichever comes first: its parent-death signal
(SIGUSR1, Linux) and EOF on the lifeline pipe (the server holds the only write end; the
kernel closes it when the server dies, by SIGKILL too). Then it ends the whole tree
(SIGTERM, a short grace, SIGKILL until nothing is left) and exits. The CLI itself gets
SIGKILL as its parent-death signal, should this process be killed outright.

When the CLI exits by itself, any descendant it left behind is killed and this process exits
the way the CLI did (the same code, or the same signal), so the server sees the CLI's exit.

With `--priority=autogroup` or `--priority=idle` (a warm pool's spare, see priority.py) it
lowers itself before it forks the CLI, so the CLI and all its threads start low: its
session's autogroup to nice 19, and with `idle` also SCHED_IDLE and nice 19 (inherited).
The server raises the tree back when a run takes the spare.

It reports on STATUS_FD, once: `ok <cli pid>` after a successful exec, or `err <errno>` when
the command could not be started. Standard library only, no clinvk imports: it runs with
`-I -S` to start in a few milliseconds.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
#: Seconds between SIGTERM and SIGKILL when the server died.
GRACE_SECS = 0.5
#: Give up killing after this long (a process stuck in the kernel cannot be killed anyway).
GIVE_UP_SECS = 10.0
_WAKE = (signal.SIGCHLD, signal.SIGUSR1, signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _prctl(option: int, value: int) -> bool:
    """prctl(2) through libc; False where there is none (not Linux)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _children() -> dict[int, list[int]]:
    found: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            found.setdefault(ppid, []).append(int(entry))
    return found


def _descendants() -> list[int]:
    """Every live descendant of this process (all of the CLI's, as we are its subreaper)."""
    try:
        children = _children()
    except OSError:
        return []
    found, todo = [], [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _signal_all(sig: int) -> None:
    for pid in _descendants():
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def _reap(cli: int, status: int | None) -> tuple[int | None, bool]:
    """Reap every exited child; (the CLI's wait status if it exited, any children left)."""
    while True:
        try:
            pid, st = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return status, False
        if pid == 0:
            return status, True
        if pid == cli:
            status = st


def _end_tree(cli: int, status: int | None, *, grace: float) -> int | None:
    """SIGTERM every descendant, wait up to `grace`, then SIGKILL until none is left.

    With a grace (the server died) the whole process group gets the signals too: where
    there is no /proc (macOS) that is what reaches the CLI's helpers; this process ignores
    the SIGTERM and dies of the final SIGKILL, its work done.
    """
    if grace > 0:
        _signal_group(signal.SIGTERM)
        _signal_all(signal.SIGTERM)
        until = time.monotonic() + grace
        while time.monotonic() < until:
            status, left = _reap(cli, status)
            if not left:
                return status
            time.sleep(0.02)
    until = time.monotonic() + GIVE_UP_SECS
    while time.monotonic() < until:
        _signal_all(signal.SIGKILL)
        status, left = _reap(cli, status)
        if not left:
            break
        time.sleep(0.01)
    if grace > 0:
        _signal_group(signal.SIGKILL)
    return status


def _signal_group(sig: int) -> None:
    try:
        os.killpg(os.getpgid(0), sig)
    except OSError:
        pass


def _exit_like(status: int) -> None:
    """Exit with the CLI's exit code, or die of the signal that killed it."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the CLI's crash, not ours
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(os.waitstatus_to_exitcode(status))


def _lower(mode: str) -> None:
    """Start low (see priority.py); what the kernel refuses is left as it is."""
    if mode not in ("autogroup", "idle"):
        return
    try:
        with open("/proc/self/autogroup", "w") as f:
            f.write("19")
    except OSError:
        pass
    if mode == "idle":
        try:
            os.setpriority(os.PRIO_PROCESS, 0, 19)
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except (OSError, AttributeError):
            pass


def main(argv: list[str]) -> None:
    status_fd, lifeline, parent = int(argv[1]), int(argv[2]), int(argv[3])
    split = argv.index("--", 4)
    options = dict(a[2:].partition("=")[::2] for a in argv[4:split])
    command = argv[split + 1:]
    os.set_inheritable(status_fd, False)
    if lifeline >= 0:
        os.set_inheritable(lifeline, False)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    for sig in _WAKE:
        # A handler, not SIG_IGN: the CLI must not inherit an ignored signal. SIGTERM and
        # SIGINT reach the CLI directly (the server signals the whole group).
        signal.signal(sig, lambda *_: None)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGUSR1)
    _lower(options.get("priority", "normal"))
    me = os.getpid()
    err_r, err_w = os.pipe()
    cli = os.fork()
    if cli == 0:  # the CLI
        try:
            os.close(err_r)
            signal.set_wakeup_fd(-1)
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != me:
                os._exit(127)
            os.execvp(command[0], command)
        except OSError as exc:
            os.write(err_w, str(exc.errno or 0).encode())
        finally:
            os._exit(127)
    os.close(err_w)
    failure = b""
    while chunk := os.read(err_r, 64):
        failure += chunk
    os.close(err_r)
    if failure:
        os.waitpid(cli, 0)
        os.write(status_fd, b"err " + failure + b"\n")
        os._exit(127)
    os.write(status_fd, f"ok {cli}\n".encode())
    os.close(status_fd)
    # Let go of the CLI's pipes: the server's EOF must depend on the CLI's tree alone.
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)

    status: int | None = None
    server_gone = os.getppid() != parent
    watched = [wake_r] + ([lifeline] if lifeline >= 0 else [])
    while not server_gone:
        ready, _, _ = select.select(watched, [], [])
        if lifeline in ready and not os.read(lifeline, 64):
            server_gone = True
        if wake_r in ready:
            try:
                woke = os.read(wake_r, 512)
            except BlockingIOError:
                woke = b""
            if signal.SIGUSR1 in woke or os.getppid() != parent:
                server_gone = True
        status, _ = _reap(cli, status)
        if status is not None:
            break
    if server_gone:
        _end_tree(cli, status, grace=GRACE_SECS)
        os._exit(1)  # nobody is waiting for this exit
    assert status is not None
    _end_tree(cli, status, grace=0)  # whatever the CLI left behind
    _exit_like(status)


if __name__ == "__main__":
    main(sys.argv)
