"""load_config: file, environment and flags merged into one validated Config."""

from __future__ import annotations

from pathlib import Path

import pytest

from clinvk.adapters.config.yaml_config import ConfigError, load_config
from clinvk.domain.config import DEFAULT_BLOCKED_WORKDIRS, Config


@pytest.fixture(autouse=True)
def fake_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ~ at a temporary directory so the user's real ~/.clinvk is never read."""
    home = tmp_path / "user"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_defaults_without_a_file(fake_home: Path) -> None:
    """With no config file and no environment the documented defaults apply."""
    config = load_config(environ={})
    assert config == Config(home=str(fake_home / ".clinvk"))
    assert (config.server.host, config.server.port) == ("127.0.0.1", 8080)
    assert config.server.blocked_workdir_prefixes == DEFAULT_BLOCKED_WORKDIRS
    assert (config.default_backend, config.session.retention_days) == ("claude", 30)
    assert config.parallel.max_workers == 3


def test_empty_file_gives_defaults(tmp_path: Path, fake_home: Path) -> None:
    """An empty config file means all defaults."""
    path = write(tmp_path / "empty.yaml", "# nothing yet\n")
    assert load_config(path, environ={}) == Config(home=str(fake_home / ".clinvk"))


def test_file_values(tmp_path: Path) -> None:
    """Values in the config file override the defaults, section by section."""
    path = write(
        tmp_path / "c.yaml",
        """
default_backend: codex
server:
  port: 9001
  trusted_proxies: [10.0.0.1]
backends:
  gemini:
    model: gemini-2.5-pro
    extra_flags: ["--debug"]
session:
  retention_days: 7
""",
    )
    config = load_config(path, environ={})
    assert config.default_backend == "codex"
    assert (config.server.port, config.server.host) == (9001, "127.0.0.1")
    assert config.server.trusted_proxies == ["10.0.0.1"]
    assert config.backend("gemini").model == "gemini-2.5-pro"
    assert config.backend("gemini").extra_flags == ["--debug"]
    assert config.session.retention_days == 7


def test_default_file_locations(tmp_path: Path, fake_home: Path) -> None:
    """Without --config the file is CLINVK_CONFIG, else $CLINVK_HOME/config.yaml, else ~/.clinvk."""
    write(fake_home / ".clinvk" / "config.yaml", "server: {port: 1}\n")
    assert load_config(environ={}).server.port == 1

    home = tmp_path / "state"
    write(home / "config.yaml", "server: {port: 2}\n")
    config = load_config(environ={"CLINVK_HOME": str(home)})
    assert (config.server.port, config.home) == (2, str(home))

    other = write(tmp_path / "other.yaml", "server: {port: 3}\n")
    env = {"CLINVK_HOME": str(home), "CLINVK_CONFIG": other}
    assert load_config(environ=env).server.port == 3
    explicit = write(tmp_path / "explicit.yaml", "server: {port: 4}\n")
    assert load_config(explicit, environ=env).server.port == 4


def test_clinvk_home_without_file_does_not_fall_back(tmp_path: Path, fake_home: Path) -> None:
    """When CLINVK_HOME is set, ~/.clinvk/config.yaml is not read."""
    write(fake_home / ".clinvk" / "config.yaml", "server: {port: 1}\n")
    config = load_config(environ={"CLINVK_HOME": str(tmp_path / "empty-home")})
    assert config.server.port == 8080


def test_home_is_expanded_to_an_absolute_path(tmp_path: Path, fake_home: Path) -> None:
    """A `home` set with ~ in the file comes back as an absolute path."""
    path = write(tmp_path / "c.yaml", "home: ~/state\n")
    assert load_config(path, environ={}).home == str(fake_home / "state")


def test_unknown_key_is_named(tmp_path: Path) -> None:
    """An unknown key fails with a message naming the key, its section and the file."""
    path = write(tmp_path / "c.yaml", "server:\n  prot: 9000\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert "`prot`" in str(caught.value)
    assert "$.server" in str(caught.value)
    assert str(caught.value).startswith(path)


def test_unknown_key_in_backend_section_names_the_backend(tmp_path: Path) -> None:
    """An unknown key inside backends.<name> is reported at $.backends.<name>."""
    path = write(tmp_path / "c.yaml", "backends:\n  claude:\n    modle: opus\n")
    with pytest.raises(ConfigError, match=r"`modle` - at `\$\.backends\.claude`"):
        load_config(path, environ={})


def test_wrong_type_names_the_path(tmp_path: Path) -> None:
    """A value of the wrong type fails with the expected type and its $.path."""
    path = write(tmp_path / "c.yaml", "server:\n  port: eighty\n")
    with pytest.raises(ConfigError, match=r"Expected `int`, got `str` - at `\$\.server\.port`"):
        load_config(path, environ={})


def test_wrong_type_in_backend_section_names_the_path(tmp_path: Path) -> None:
    """A wrongly typed backend value is reported at $.backends.<name>.<key>."""
    path = write(tmp_path / "c.yaml", "backends:\n  codex:\n    enabled: [yes]\n")
    with pytest.raises(ConfigError, match=r"at `\$\.backends\.codex\.enabled`"):
        load_config(path, environ={})


def test_unknown_backend_names_are_rejected(tmp_path: Path) -> None:
    """A misspelt backend section or default backend is an error, not silently ignored."""
    path = write(tmp_path / "c.yaml", "backends:\n  claud:\n    model: x\n")
    with pytest.raises(ConfigError, match="unknown backend 'claud'"):
        load_config(path, environ={})
    with pytest.raises(ConfigError, match="unknown backend 'gpt'"):
        load_config(environ={"CLINVK_BACKEND": "gpt"})


def test_environment_overrides(tmp_path: Path) -> None:
    """Each documented CLINVK_* variable sets its config key over the file's value."""
    path = write(
        tmp_path / "c.yaml",
        "default_backend: codex\nbackends:\n  claude:\n    model: file-model\n    enabled: false\n",
    )
    env = {
        "CLINVK_BACKEND": "gemini",
        "CLINVK_CLAUDE_MODEL": "opus",
        "CLINVK_CODEX_MODEL": "gpt-5",
        "CLINVK_GEMINI_MODEL": "gemini-pro",
        "CLINVK_API_KEYS_GOPASS_PATH": "clinvk/keys",
        "CLINVK_HOME": str(tmp_path / "state"),
        "CLINVK_API_KEYS": "not-config",
    }
    config = load_config(path, environ=env)
    assert config.default_backend == "gemini"
    assert config.backend("claude").model == "opus"
    assert config.backend("claude").enabled is False
    assert config.backend("codex").model == "gpt-5"
    assert config.backend("gemini").model == "gemini-pro"
    assert config.server.api_keys_gopass_path == "clinvk/keys"
    assert config.home == str(tmp_path / "state")


def test_empty_environment_values_are_ignored(tmp_path: Path) -> None:
    """A variable set to the empty string leaves the file's value in place."""
    path = write(tmp_path / "c.yaml", "default_backend: codex\n")
    assert load_config(path, environ={"CLINVK_BACKEND": ""}).default_backend == "codex"


def test_empty_sections_mean_defaults(tmp_path: Path) -> None:
    """A section left empty in the file (all keys commented out) means its defaults."""
    path = write(tmp_path / "c.yaml", "server:\nsession:\nbackends:\n  claude:\n")
    config = load_config(path, environ={"CLINVK_API_KEYS_GOPASS_PATH": "p"})
    assert config.server.api_keys_gopass_path == "p"
    assert config.session.retention_days == 30
    assert config.backend("claude").enabled is True


def test_flags_beat_environment_beat_file(tmp_path: Path) -> None:
    """Flags override the environment, which overrides the file, which overrides defaults."""
    path = write(
        tmp_path / "c.yaml",
        "default_backend: codex\n"
        "server: {host: 10.0.0.1, port: 7000, metrics_enabled: true}\n",
    )
    env = {"CLINVK_BACKEND": "gemini", "CLINVK_HOME": str(tmp_path / "env-home")}
    flags = {
        "server.host": "0.0.0.0",
        "server.port": 9000,
        "default_backend": "claude",
        "home": str(tmp_path / "flag-home"),
        "server.read_timeout_secs": None,
    }
    config = load_config(path, environ=env, overrides=flags)
    assert (config.server.host, config.server.port) == ("0.0.0.0", 9000)
    assert config.default_backend == "claude"
    assert config.home == str(tmp_path / "flag-home")
    assert config.server.metrics_enabled is True
    assert config.server.read_timeout_secs == 30
    assert load_config(path, environ=env).default_backend == "gemini"


def test_flag_values_are_type_checked(tmp_path: Path) -> None:
    """A flag value of the wrong type is rejected like a file value."""
    with pytest.raises(ConfigError, match=r"\$\.server\.port"):
        load_config(environ={}, overrides={"server.port": "x"})


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    """A config file named by --config or CLINVK_CONFIG must exist."""
    missing = str(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not found"):
        load_config(missing, environ={})
    with pytest.raises(ConfigError, match="not found"):
        load_config(environ={"CLINVK_CONFIG": missing})


def test_yaml_syntax_error_gives_line(tmp_path: Path) -> None:
    """A YAML syntax error is a ConfigError that names the file and the line."""
    path = write(tmp_path / "c.yaml", "server:\n  port: 1\n  host: [unclosed\n")
    with pytest.raises(ConfigError, match=r"line \d+, column \d+") as caught:
        load_config(path, environ={})
    assert str(caught.value).startswith(path)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    """A file whose top level is not a mapping is rejected."""
    path = write(tmp_path / "c.yaml", "- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path, environ={})


def test_config_error_is_a_value_error() -> None:
    """ConfigError is a ValueError, so callers can treat it as bad input."""
    assert issubclass(ConfigError, ValueError)
