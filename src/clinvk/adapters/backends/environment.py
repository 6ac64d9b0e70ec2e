"""The environment a CLI runs with.

`server.cli_env: inherit` (the default) gives each CLI the server's own environment, as in
the user's shell, so a codex provider's `env_key`, an MCP server's token or claude's Vertex
settings work unchanged. Taken out, always: clinvk's own settings and secrets (every
`CLINVK_*` variable, gopass's and the password store's variables), every variable whose
value holds one of the server's API keys (whatever its name), and the names or globs of
`server.cli_env_deny`. `minimal` passes only a short allow-list plus the variables each
CLI reads itself (its prefixes), for hardened deployments.

Then `backends.<name>.env` is added as configured (the user's explicit choice wins), and
last the run's own additions (settings overlays, retry knobs).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence

from clinvk.domain.config import BackendConfig, ServerConfig

#: `minimal` mode: variables passed from the server to every CLI (besides its prefixes).
MINIMAL_ENV = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "TERM",
    "TZ",
    "TMPDIR",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "XDG_CACHE_HOME",
    "XDG_STATE_HOME",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
    "NODE_OPTIONS",
)

#: Never passed on, in either mode: clinvk's own settings and what gopass reads.
ALWAYS_DENIED = ("CLINVK_*", "GOPASS_*", "PASSWORD_STORE_*")

#: Shorter keys are only matched as a whole value (a 3-letter key would match everywhere).
_MIN_SUBSTRING_KEY = 6

#: Variables that make a CLI print more than its protocol (or crash reports) on stdout.
_DROPPED = ("RUST_BACKTRACE",)


class CliEnvironment:
    """Builds each CLI run's environment from the server's, by the rules above."""

    def __init__(
        self,
        server: ServerConfig,
        environ: Mapping[str, str],
        secrets: Iterable[str] = (),
    ) -> None:
        self.mode = server.cli_env
        self._deny = (*ALWAYS_DENIED, *server.cli_env_deny)
        self._secrets = tuple(s for s in secrets if s)
        self._base = self._inherited(environ)

    def _denied(self, name: str, value: str) -> bool:
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in self._deny):
            return True
        for secret in self._secrets:
            if value == secret or (len(secret) >= _MIN_SUBSTRING_KEY and secret in value):
                return True
        return False

    def _inherited(self, environ: Mapping[str, str]) -> dict[str, str]:
        return {
            name: value
            for name, value in environ.items()
            if not self._denied(name, value) and name not in _DROPPED
        }

    def build(
        self,
        prefixes: Sequence[str],
        config: BackendConfig,
        extra: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """The environment of one run of a CLI that reads variables starting with `prefixes`."""
        if self.mode == "minimal":
            env = {
                k: v
                for k, v in self._base.items()
                if k in MINIMAL_ENV or k.startswith(tuple(prefixes))
            }
        else:
            env = dict(self._base)
        env.update(config.env)
        if extra:
            env.update(extra)
        return env


_MISSING_ENV = [
    # codex: "Missing environment variable: `MY_PROVIDER_KEY`."
    re.compile(r"[Mm]issing environment variable:?\s*`?([A-Za-z_][A-Za-z0-9_]*)`?"),
    # generic Node/CLI wordings: "environment variable FOO is not set", "FOO is not set"
    re.compile(r"environment variable `?([A-Z_][A-Z0-9_]*)`? (?:is not set|is required|not set)"),
    re.compile(r"\b([A-Z][A-Z0-9_]{2,}) (?:environment variable )?(?:is not set|must be set)"),
]


def missing_variable(text: str) -> str | None:
    """The environment variable a CLI's error message says is missing, if it says one."""
    for pattern in _MISSING_ENV:
        match = pattern.search(text)
        if match:
            return match.group(1)
    return None
