"""What every CLI backend adapter provides: an argv builder and a line decoder."""

from __future__ import annotations

import os
from typing import Protocol

import msgspec

from clinvk.adapters.backends.environment import MINIMAL_ENV
from clinvk.adapters.backends.run_files import NO_FILES, RunFiles
from clinvk.domain.config import BackendConfig
from clinvk.domain.errors import InvalidRequest
from clinvk.domain.events import StreamEvent
from clinvk.domain.models import RunResult, RunSpec

#: Prompts longer than this (bytes) go on stdin: Linux refuses one argv element over 128 KiB.
ARGV_PROMPT_LIMIT = 100_000

#: What a `--version` probe (and `server.cli_env: minimal`) passes from the server.
BASE_ENV = MINIMAL_ENV


class Invocation(msgspec.Struct, kw_only=True):
    """One concrete CLI run: argv, stdin and environment additions."""

    argv: list[str]
    #: Prompt bytes sent on stdin from a private file (large prompts).
    stdin: bytes | None = None
    #: Bytes written to a stdin pipe instead (claude reads stream-json input only from one).
    input: bytes | None = None
    env: dict[str, str] = msgspec.field(default_factory=dict)


class Decoder(Protocol):
    """Turns one CLI's stdout lines into unified events and, at the end, a RunResult."""

    def feed(self, line: bytes) -> list[StreamEvent]:
        """Decode one stdout line into zero or more events."""
        ...

    def feed_stderr(self, line: bytes) -> list[StreamEvent]:
        """Decode one stderr line (retry notices some CLIs print only there)."""
        ...

    def finish(self, *, exit_code: int, stderr: str, duration_ms: int) -> RunResult:
        """Build the result once the process ended; raise BackendFailed on failure."""
        ...


class CliBackend(Protocol):
    """One backend CLI: how to call it and how to read it."""

    name: str
    #: Prefixes of environment variables the CLI itself reads, passed through from the server.
    env_prefixes: tuple[str, ...]
    #: Request `extra` flags accepted: flag -> whether it takes a value.
    allowed_extra: dict[str, bool]

    def invocation(
        self,
        spec: RunSpec,
        config: BackendConfig,
        command: str,
        system_prompt_file: str | None,
        *,
        files: RunFiles = NO_FILES,
    ) -> Invocation:
        """Build the argv (without running anything); the system prompt, if any, is in a
        file, and the run's images and output schema are in `files`."""
        ...

    def decoder(self, spec: RunSpec, config: BackendConfig) -> Decoder:
        """A fresh decoder for one run."""
        ...

    def session_files(self, env: dict[str, str], session_id: str) -> tuple[str, tuple[str, ...]]:
        """Where the CLI keeps one session, given the environment it runs with: its state
        folder and glob patterns inside it (the files a resume on another machine needs)."""
        ...


def check_extra(extra: tuple[str, ...], allowed: dict[str, bool], backend: str) -> list[str]:
    """Validate request `extra` flags against the backend's allow-list; return them as argv."""
    out: list[str] = []
    expect_value = False
    for item in extra:
        if expect_value:
            out.append(item)
            expect_value = False
            continue
        name, has_eq, _ = item.partition("=")
        if not item.startswith("-") or name not in allowed:
            raise InvalidRequest(
                f"extra flag {item!r} is not allowed for {backend}; allowed: "
                + ", ".join(sorted(allowed)),
                field="extra",
            )
        expect_value = allowed[name] and not has_eq
        out.append(item)
    if expect_value:
        raise InvalidRequest(f"extra flag {extra[-1]!r} needs a value", field="extra")
    return out


def prompt_via_stdin(prompt: str) -> bool:
    """Whether the prompt must travel on stdin rather than argv."""
    return "\x00" in prompt or len(prompt.encode("utf-8", "surrogatepass")) > ARGV_PROMPT_LIMIT


def build_env(prefixes: tuple[str, ...], config: BackendConfig, extra: dict[str, str]) -> dict:
    """The CLI's environment: an explicit base list, the CLI's own prefixes, then config."""
    env = {k: v for k, v in os.environ.items() if k in BASE_ENV or k.startswith(prefixes)}
    env.update(config.env)
    env.update(extra)
    env.pop("RUST_BACKTRACE", None)
    return env


def first_line(text: str) -> str:
    """The first non-empty line of a CLI message."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""
