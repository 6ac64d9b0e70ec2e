"""Load the configuration: `config.yaml`, then the environment, then command-line flags.

Every source is merged into one plain mapping first and decoded into `Config` once, so the
types of file values, environment values and flags are all checked by the same schema.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect
import yaml

from clinvk.domain.config import BACKEND_NAMES, BackendConfig, Config

DEFAULT_HOME = "~/.clinvk"
CONFIG_NAME = "config.yaml"

#: Environment variable -> dotted config key it sets.
ENV_KEYS = {
    "CLINVK_BACKEND": "default_backend",
    "CLINVK_CLAUDE_MODEL": "backends.claude.model",
    "CLINVK_CODEX_MODEL": "backends.codex.model",
    "CLINVK_GEMINI_MODEL": "backends.gemini.model",
    "CLINVK_API_KEYS_GOPASS_PATH": "server.api_keys_gopass_path",
    "CLINVK_HOME": "home",
    "CLINVK_MCP_TRANSPORT": "mcp.transport",
    "CLINVK_MCP_HOST": "mcp.host",
    "CLINVK_MCP_PORT": "mcp.port",
    "CLINVK_MCP_HTTP_PATH": "mcp.http_path",
    "CLINVK_MCP_EXPOSE_HEALTH": "mcp.expose_health",
    "CLINVK_SESSION_STORE": "session.store",
    "CLINVK_REPLICA_ID": "server.replica_id",
}

#: Environment variables whose text is read as another type (`8081`, `true`/`1`).
_ENV_TYPES: dict[str, type] = {"CLINVK_MCP_PORT": int, "CLINVK_MCP_EXPOSE_HEALTH": bool}

#: Top-level keys holding a mapping (a section, or `backends`).
_SECTIONS = frozenset(
    field.name
    for field in msgspec.inspect.type_info(Config).fields
    if isinstance(field.type, (msgspec.inspect.StructType, msgspec.inspect.DictType))
)


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the file and the offending key."""


def load_config(
    path: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the Config with precedence flags > environment > config file > defaults.

    `overrides` maps dotted keys ("server.port") to flag values; None values are ignored,
    so unset flags can be passed as they are.
    """
    env = os.environ if environ is None else environ
    file, explicit = config_path(path, env)
    from_file = _read_yaml(file, required=explicit)
    data = from_file or {}
    for name, key in ENV_KEYS.items():
        if env.get(name):
            _set(data, key, _env_value(name, env[name]))
    for key, value in (overrides or {}).items():
        if value is not None:
            _set(data, key, value)
    home = data.get("home") or DEFAULT_HOME
    if isinstance(home, str):
        data["home"] = os.path.abspath(os.path.expanduser(home))
    return _decode(data, source=str(file) if from_file is not None else "config")


def _env_value(name: str, text: str) -> Any:
    kind = _ENV_TYPES.get(name)
    if kind is None:
        return text
    try:
        return msgspec.convert(text.strip().lower(), kind, strict=False)
    except msgspec.ValidationError:
        raise ConfigError(f"{name}={text!r}: expected {kind.__name__}") from None


def config_path(path: str | None, environ: Mapping[str, str]) -> tuple[Path, bool]:
    """The config file to read, and whether it was asked for explicitly (so must exist)."""
    if path:
        return Path(path).expanduser(), True
    if environ.get("CLINVK_CONFIG"):
        return Path(environ["CLINVK_CONFIG"]).expanduser(), True
    # CLINVK_HOME isolates a whole installation, so ~/.clinvk is not consulted when it is set.
    home = environ.get("CLINVK_HOME") or DEFAULT_HOME
    return Path(home).expanduser() / CONFIG_NAME, False


def _read_yaml(file: Path, *, required: bool) -> dict[str, Any] | None:
    """The file's settings; None when an optional file does not exist."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise ConfigError(f"{file}: config file not found") from None
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read config file: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: {_yaml_problem(exc)}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: expected a mapping of settings, got {type(data).__name__}")
    return data


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is None:
        return f"invalid YAML: {problem}"
    return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}"


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for key in parents:
        child = node.get(key)
        if child is None:  # absent, or an empty section such as `server:` in the file
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {dotted}: `{key}` is not a mapping")
        node = child
    node[leaf] = value


def _decode(data: dict[str, Any], *, source: str) -> Config:
    # A section whose keys are all commented out (`server:`) reads as null: it means defaults.
    for key in _SECTIONS:
        if key in data and data[key] is None:
            data[key] = {}
    backends = data.get("backends")
    if isinstance(backends, dict):
        for name, section in backends.items():
            if section is None:
                backends[name] = section = {}
            _check_backend(name, section, source=source)
    try:
        config = msgspec.convert(data, Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    if config.default_backend not in BACKEND_NAMES:
        raise ConfigError(
            f"{source}: unknown backend {config.default_backend!r} - at `$.default_backend`;"
            f" known backends: {', '.join(BACKEND_NAMES)}"
        )
    return config


def _check_backend(name: Any, section: Any, *, source: str) -> None:
    # Decoding a section on its own lets the message name it (msgspec says `$.backends[...]`).
    if name not in BACKEND_NAMES:
        raise ConfigError(
            f"{source}: unknown backend {name!r} - at `$.backends`;"
            f" known backends: {', '.join(BACKEND_NAMES)}"
        )
    try:
        msgspec.convert(section, BackendConfig)
    except msgspec.ValidationError as exc:
        message, at, where = str(exc).partition(" - at `$")
        where = f".backends.{name}{where}" if at else f".backends.{name}`"
        raise ConfigError(f"{source}: {message} - at `${where}") from exc
