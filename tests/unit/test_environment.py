"""The CLI environment: the user's shell environment, never clinvk's own secrets."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from clinvk.adapters.backends.environment import CliEnvironment, missing_variable
from clinvk.domain.config import BackendConfig, ServerConfig

_names = st.text(alphabet=string.ascii_uppercase + string.digits + "_", min_size=1,
                 max_size=20).filter(lambda n: not n[0].isdigit())
_values = st.text(alphabet=string.printable, max_size=40)
_keys = st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=8, max_size=40)


def test_inherit_passes_the_users_environment():
    """By default a CLI sees the server's variables (a provider key, Vertex settings)."""
    env = CliEnvironment(ServerConfig(), {
        "PATH": "/bin", "MY_PROVIDER_KEY": "sk-x", "CLOUD_ML_REGION": "us-east5",
        "GITHUB_TOKEN": "ghp",
    }).build(("OPENAI_",), BackendConfig())
    assert env == {"PATH": "/bin", "MY_PROVIDER_KEY": "sk-x", "CLOUD_ML_REGION": "us-east5",
                   "GITHUB_TOKEN": "ghp"}


def test_clinvks_own_variables_and_gopass_never_pass():
    """CLINVK_*, GOPASS_* and PASSWORD_STORE_* are never passed, in either mode."""
    environ = {"CLINVK_API_KEYS": "k1,k2", "CLINVK_API_KEYS_GOPASS_PATH": "x/y",
               "GOPASS_HOMEDIR": "/g", "PASSWORD_STORE_DIR": "/p", "HOME": "/h"}
    for mode in ("inherit", "minimal"):
        env = CliEnvironment(ServerConfig(cli_env=mode), environ).build((), BackendConfig())
        assert env == {"HOME": "/h"}


def test_deny_list_takes_names_and_globs():
    """server.cli_env_deny removes names and globs on top of clinvk's own."""
    server = ServerConfig(cli_env_deny=["AWS_SECRET_ACCESS_KEY", "*_TOKEN"])
    env = CliEnvironment(server, {"AWS_SECRET_ACCESS_KEY": "s", "GITHUB_TOKEN": "t",
                                  "NPM_TOKEN": "n", "AWS_REGION": "eu"}).build((), BackendConfig())
    assert env == {"AWS_REGION": "eu"}


def test_minimal_keeps_the_allow_list_and_the_clis_prefixes():
    """`minimal` passes only the base list and the CLI's own prefixes."""
    environ = {"PATH": "/bin", "OPENAI_API_KEY": "o", "ANTHROPIC_API_KEY": "a", "OTHER": "x"}
    env = CliEnvironment(ServerConfig(cli_env="minimal"), environ).build(
        ("OPENAI_",), BackendConfig()
    )
    assert env == {"PATH": "/bin", "OPENAI_API_KEY": "o"}


def test_backend_env_and_run_additions_come_last():
    """`backends.<name>.env` overrides the inherited values; a run's additions override both."""
    env = CliEnvironment(ServerConfig(), {"A": "server", "B": "server"}).build(
        (), BackendConfig(env={"A": "config", "C": "config"}), {"C": "run"}
    )
    assert env == {"A": "config", "B": "server", "C": "run"}


@given(
    keys=st.lists(_keys, min_size=1, max_size=3),
    environ=st.dictionaries(_names, _values, max_size=10),
    hidden=st.dictionaries(_names, st.tuples(_values, _values), max_size=4),
    mode=st.sampled_from(["inherit", "minimal"]),
)
def test_no_api_key_ever_reaches_a_cli_whatever_the_names(keys, environ, hidden, mode):
    """Whatever variable names hold them (alone or inside a longer value), the server's API
    keys never appear in a CLI's inherited environment."""
    environ = dict(environ)
    for i, (name, (before, after)) in enumerate(hidden.items()):
        environ[name] = before + keys[i % len(keys)] + after
    env = CliEnvironment(ServerConfig(cli_env=mode), environ, secrets=keys).build(
        ("", "A", "OPENAI_"), BackendConfig()
    )
    for value in env.values():
        assert not any(key in value for key in keys)
    assert not any(name.startswith("CLINVK_") for name in env)


@given(st.dictionaries(_names, _values, max_size=12))
def test_nothing_but_secrets_is_taken_from_inherit(environ):
    """In `inherit` mode every variable that is not clinvk's own or a secret passes as is."""
    env = CliEnvironment(ServerConfig(), environ).build((), BackendConfig())
    expected = {k: v for k, v in environ.items()
                if not k.startswith(("CLINVK_", "GOPASS_", "PASSWORD_STORE_"))
                and k != "RUST_BACKTRACE"}
    assert env == expected


def test_missing_variable_is_read_from_the_clis_words():
    """The variable a CLI says is missing is found in its message."""
    assert missing_variable("Missing environment variable: `MY_PROVIDER_KEY`.") == (
        "MY_PROVIDER_KEY"
    )
    assert missing_variable("error: environment variable FOO_TOKEN is not set") == "FOO_TOKEN"
    assert missing_variable("API Error: 500 internal") is None
