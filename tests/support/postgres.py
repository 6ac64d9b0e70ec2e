"""A real PostgreSQL server for the tests: initdb + pg_ctl in a temp folder, on a free port.

The Debian package (`postgresql`, installed by scripts/test.sh) puts its programs in
/usr/lib/postgresql/<major>/bin, outside PATH; PATH is tried first. PostgreSQL refuses to run
as root, so as root the server runs as the `postgres` user (made by the package) or `nobody`,
through runuser, in a folder that user owns.

A server outlives nothing it should not: each has a lifeline, a small watcher process holding
the read end of a pipe only the test process writes to. When the test process ends in any
way (a SIGKILL or pytest-timeout included) the pipe closes and the watcher stops the server
and removes its folder. Folders whose owner died with its watcher too (a whole process
group killed) are swept when the next server starts.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Self

import psycopg
from psycopg import sql

SUPERUSER = "clinvk"
PREFIX = "clinvk-pg-"

#: The watcher: waits for the pipe to close; unless told "done" first, stops the server
#: (argv) and removes the folder. Stdlib only; it runs in a session of its own, so a
#: terminal's Ctrl-C that stops the tests does not end it before it has cleaned up.
_LIFELINE = """
import shutil, subprocess, sys
if sys.stdin.buffer.read() != b"done":
    subprocess.run(sys.argv[2:], capture_output=True, check=False)
    shutil.rmtree(sys.argv[1], ignore_errors=True)
"""


def pg_bin_dir() -> Path:
    """The folder holding initdb, pg_ctl and postgres (PATH first, then Debian's layout)."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(os.path.realpath(found)).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit()
        else 0,
    )
    if not candidates:
        raise RuntimeError(
            "PostgreSQL is not installed (no pg_ctl on PATH or in /usr/lib/postgresql/*/bin); "
            "scripts/test.sh installs the Debian package `postgresql`"
        )
    return Path(candidates[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One throwaway cluster; `stop()` / `start()` simulate an outage and its end."""

    def __init__(self, *, user: str = SUPERUSER, password: str | None = None) -> None:
        """`password`: the user logs in with it over TCP (scram-sha-256), as in a deployment;
        without one, connections are trusted."""
        sweep_stale()
        self.bin = pg_bin_dir()
        self.port = _free_port()
        self.user = user
        self.password = password
        self.root = Path(tempfile.mkdtemp(prefix=PREFIX))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._user: str | None = None
        if os.geteuid() == 0:
            self._user = _unprivileged_user()
            entry = pwd.getpwnam(self._user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        os.chmod(self.root, 0o700)
        (self.root / "owner").write_text(_process_identity(os.getpid()))
        auth = ["--auth=trust"]
        if password is not None:
            secret = self.root / "pwfile"
            secret.write_text(password + "\n")
            if self._user is not None:
                shutil.chown(secret, self._user)
            auth = ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={secret}"]
        self._run(
            self.bin / "initdb", "-D", self.data, "-U", user, *auth,
            "-E", "UTF8", "--no-locale", "--no-sync",
        )
        self._lifeline = subprocess.Popen(
            [sys.executable, "-c", _LIFELINE, str(self.root),
             *self._command(self.bin / "pg_ctl", "-D", self.data, "-m", "immediate", "-w",
                            "stop")],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def start(self) -> None:
        """Start (or restart) the server and wait until it accepts connections."""
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off"
        )
        self._run(
            self.bin / "pg_ctl", "-D", self.data, "-l", self.log, "-o", options, "-w", "start"
        )

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server (`immediate`: as abruptly as a crash, connections cut)."""
        self._run(self.bin / "pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        """A connection URL for `database` as the test superuser."""
        login = self.user if self.password is None else f"{self.user}:{self.password}"
        return f"postgresql://{login}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """Create an empty database and return its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def new_schema(self) -> str:
        """A URL whose connections see only a new, empty schema (much cheaper than a
        database; clinvk's unqualified table names land in it)."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        return f"{self.url()}?options=-csearch_path%3D{name}"

    def close(self) -> None:
        """Stop the server if it runs and remove its folder."""
        if (self.data / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
        if self._lifeline.stdin is not None:
            self._lifeline.stdin.write(b"done")
            self._lifeline.stdin.close()
        self._lifeline.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _command(self, *argv: object) -> list[str]:
        command = [str(a) for a in argv]
        if self._user is not None:
            command = ["runuser", "-u", self._user, "--", *command]
        return command

    def _run(self, *argv: object) -> None:
        command = self._command(*argv)
        done = subprocess.run(
            command, cwd=self.root, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            check=False,
        )
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}{log}"
            )


def sweep_stale() -> None:
    """Stop and remove the servers of test processes that are gone (their folder's `owner`
    names a process that no longer runs); folders of live processes are left alone."""
    for folder in glob.glob(os.path.join(tempfile.gettempdir(), PREFIX + "*")):
        root = Path(folder)
        try:
            owner = (root / "owner").read_text()
        except OSError:
            continue  # not ours to judge (older fixture, or being set up right now)
        pid = int(owner.split()[0]) if owner.split() and owner.split()[0].isdigit() else 0
        if pid and _process_identity(pid) == owner:
            continue
        pg_ctl = pg_bin_dir() / "pg_ctl"
        data = root / "data"
        if (data / "postmaster.pid").exists():
            user = _unprivileged_user() if os.geteuid() == 0 else None
            command = [str(pg_ctl), "-D", str(data), "-m", "immediate", "-w", "stop"]
            if user is not None:
                command = ["runuser", "-u", user, "--", *command]
            subprocess.run(command, capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)


def _process_identity(pid: int) -> str:
    """`pid` and its start time (pids are reused; the pair is not); empty if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b") ", 1)[1].split()
    except (OSError, IndexError):
        return ""
    if fields[0] == b"Z":
        return ""  # a zombie: it has ended
    return f"{pid} {fields[19].decode()}"


def _unprivileged_user() -> str:
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise RuntimeError("no unprivileged user (postgres or nobody) to run PostgreSQL as")
