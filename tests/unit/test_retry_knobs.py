"""Each CLI gets clinvk's retry budget through its own knob, and nothing when none is set."""

from __future__ import annotations

import gc
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from clinvk.adapters.backends.claude import ClaudeBackend
from clinvk.adapters.backends.codex import (
    CodexBackend,
    active_provider,
    config_flags,
    retry_flags,
)
from clinvk.adapters.backends.environment import CliEnvironment
from clinvk.adapters.backends.gemini import GeminiBackend
from clinvk.adapters.backends.gemini_settings import (
    HOME_ENV,
    SYSTEM_SETTINGS_ENV,
    HomeOverlays,
    SettingsOverlays,
    merge,
    strip_json_comments,
    trusted_by_gemini,
)
from clinvk.domain.config import BackendConfig, ServerConfig
from clinvk.domain.models import RunSpec

BUDGETS = [None, 0, 3]
DOUBLE_FLAGS = ["-c", "model_provider=double", "-c", 'model_providers.double={name="d"}']


def spec(backend: str, max_retries: int | None) -> RunSpec:
    return RunSpec(backend=backend, prompt="hi", workdir="/tmp", max_retries=max_retries)


@pytest.mark.parametrize("budget", BUDGETS)
def test_claude_budget_is_its_environment_variable(budget):
    """claude gets CLAUDE_CODE_MAX_RETRIES=<n> in its environment (cold and warm runs
    alike); with no budget the variable is not set, so the user's own value stands."""
    backend = ClaudeBackend()
    for make in (backend.invocation, backend.warm_invocation):
        inv = make(spec("claude", budget), BackendConfig(), "claude", None)
        assert inv is not None
        assert inv.env.get("CLAUDE_CODE_MAX_RETRIES") == (None if budget is None else str(budget))
        assert not any("RETRIES" in a for a in inv.argv)


def test_claude_budget_wins_over_the_backends_configured_environment():
    """A request's budget replaces a CLAUDE_CODE_MAX_RETRIES set in backends.claude.env
    (run additions come last in the environment)."""
    cfg = BackendConfig(env={"CLAUDE_CODE_MAX_RETRIES": "9"})
    backend = ClaudeBackend()
    inv = backend.invocation(spec("claude", 1), cfg, "claude", None)
    env = CliEnvironment(ServerConfig(), {}).build(backend.env_prefixes, cfg, inv.env)
    assert env["CLAUDE_CODE_MAX_RETRIES"] == "1"


@pytest.mark.parametrize("budget", BUDGETS)
def test_codex_budget_goes_to_the_active_provider(budget):
    """codex gets the budget as stream_max_retries (visible reconnects) of the provider the
    run uses, with request_max_retries 0 (the two nest), after the configured flags (a
    later -c wins), before `resume`."""
    cfg = BackendConfig(extra_flags=DOUBLE_FLAGS, env={"CODEX_HOME": "/nonexistent"})
    run = RunSpec(backend="codex", prompt="hi", workdir="/tmp", max_retries=budget,
                  resume_id="T1")
    argv = CodexBackend().invocation(run, cfg, "codex", None).argv
    knobs = [a for a in argv if "max_retries" in a]
    if budget is None:
        assert knobs == []
        return
    assert knobs == [
        "model_providers.double.request_max_retries=0",
        f"model_providers.double.stream_max_retries={budget}",
    ]
    first = argv.index(knobs[0])
    assert argv.index(DOUBLE_FLAGS[-1]) < first < argv.index("resume")


def test_codex_warm_invocation_carries_the_budget():
    """The warm-pool form of a codex run has the same knob, so the pool key tells runs
    with different budgets apart."""
    cfg = BackendConfig(extra_flags=DOUBLE_FLAGS, env={"CODEX_HOME": "/nonexistent"})
    backend = CodexBackend()
    warm = [backend.warm_invocation(spec("codex", n), cfg, "codex", None) for n in (None, 0, 2)]
    assert len({tuple(w.argv) for w in warm if w is not None}) == 3


def test_codex_provider_from_the_users_config_toml(tmp_path):
    """A custom provider chosen in codex's config.toml (CODEX_HOME) gets the budget; the
    built-in `openai` default gets nothing (codex refuses settings for it)."""
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(
        'model_provider = "x"\n[model_providers.x]\nname = "X"\nenv_key = "MY_PROVIDER_KEY"\n'
    )
    cfg = BackendConfig(env={"CODEX_HOME": str(home)})
    argv = CodexBackend().invocation(spec("codex", 0), cfg, "codex", None).argv
    assert "model_providers.x.stream_max_retries=0" in argv
    bare = BackendConfig(env={"CODEX_HOME": str(tmp_path / "empty")})
    argv = CodexBackend().invocation(spec("codex", 0), bare, "codex", None).argv
    assert not any("max_retries" in a for a in argv)


def test_codex_without_a_settable_provider_says_so_with_init(tmp_path):
    """When the budget cannot reach codex's provider (its built-in `openai`), the native
    stream says so after init; with a settable provider, or no budget, nothing is said."""
    bare = BackendConfig(env={"CODEX_HOME": str(tmp_path / "empty")})
    init = b'{"type":"thread.started","thread_id":"t"}'
    events = CodexBackend().decoder(spec("codex", 0), bare).feed(init)
    assert [type(e).__name__ for e in events] == ["Init", "Notice"]
    assert "built into codex" in events[1].message
    assert len(CodexBackend().decoder(spec("codex", None), bare).feed(init)) == 1
    mine = BackendConfig(extra_flags=DOUBLE_FLAGS, env=bare.env)
    assert len(CodexBackend().decoder(spec("codex", 0), mine).feed(init)) == 1


@pytest.mark.parametrize(
    ("flags", "config", "expected"),
    [
        (DOUBLE_FLAGS, {}, "double"),
        (["-c", 'model_provider="double"', "-c", "model_providers.double.name=\"d\""], {},
         "double"),
        (["--config=model_provider=x"], {"model_providers": {"x": {}}}, "x"),
        ([], {"model_provider": "x", "model_providers": {"x": {}}}, "x"),
        (["-p", "work"], {"model_provider": "x", "profiles": {"work": {"model_provider": "y"}},
                          "model_providers": {"x": {}, "y": {}}}, "y"),
        ([], {"profile": "work", "profiles": {"work": {"model_provider": "y"}},
              "model_providers": {"y": {}}}, "y"),
        ([], {}, None),  # codex's default: the built-in openai provider
        (["-c", "model_provider=ollama"], {}, None),  # built in
        (["--oss"], {"model_provider": "x", "model_providers": {"x": {}}}, None),
        (["-c", "model_provider=nowhere"], {}, None),  # not defined: codex fails anyway
        (["-c", "model_provider=a.b", "-c", "model_providers.a.b.name=\"q\""], {}, None),
    ],
)
def test_active_provider(flags, config, expected):
    """The provider is found the way codex resolves it; built-in, undefined or
    unaddressable ids get no knob."""
    assert active_provider(flags, config) == expected


def test_config_flags_reads_both_forms():
    """`-c k=v`, `--config k=v`, `-c=k=v`, `-p NAME`, `--profile=NAME` and `--oss`."""
    overrides, profile, oss = config_flags(
        ["-c", "a=1", "--config", 'b="s"', "-c=c=raw", "--profile=p", "--oss"]
    )
    assert overrides == [("a", 1), ("b", "s"), ("c", "raw")]
    assert (profile, oss) == ("p", True)


def test_retry_flags_need_a_provider_and_a_budget():
    """No provider or no budget: no flags."""
    assert retry_flags(None, 2) == [] and retry_flags("x", None) == []


# -- gemini -----------------------------------------------------------------------------


def overlays_in(folder: Path) -> SettingsOverlays:
    return SettingsOverlays(candidates=lambda: [str(folder)])


needs_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="gemini trusts a settings overlay only in folders root owns",
)


def _trusted_folder(tmp_path: Path) -> Path:
    # pytest's tmp_path sits under /tmp (world-writable), which gemini would refuse.
    folder = Path(os.path.expanduser("~")) / ".cache"
    folder.mkdir(exist_ok=True)
    if not trusted_by_gemini(str(folder)):
        pytest.skip("no root-owned folder to put the overlay in")
    return folder


@needs_root
@pytest.mark.parametrize(("budget", "attempts"), [(None, None), (0, 1), (3, 4), (50, 10)])
def test_gemini_budget_is_a_system_settings_overlay(tmp_path, budget, attempts):
    """gemini gets GEMINI_CLI_SYSTEM_SETTINGS_PATH naming a file with general.maxAttempts
    = budget + 1 (at most 10); with no budget nothing is set."""
    backend = GeminiBackend(overlays_in(_trusted_folder(tmp_path)))
    inv = backend.invocation(spec("gemini", budget), BackendConfig(), "gemini", None)
    if budget is None:
        assert SYSTEM_SETTINGS_ENV not in inv.env
        return
    overlay = json.loads(Path(inv.env[SYSTEM_SETTINGS_ENV]).read_text())
    assert overlay["general"]["maxAttempts"] == attempts
    assert trusted_by_gemini(inv.env[SYSTEM_SETTINGS_ENV])


@needs_root
def test_gemini_overlay_keeps_the_users_system_settings(tmp_path):
    """The user's system settings (when gemini would read them) are in the overlay too,
    with clinvk's value merged over theirs; their file is untouched, and one budget makes
    one file (the same path every time)."""
    folder = _trusted_folder(tmp_path)
    users = folder / f"clinvk-test-system-{os.getpid()}.json"
    original = '{\n  // admin\n  "general": {"maxAttempts": 7, "x": 1},\n  "tools": {"a": "//"}\n}'
    users.write_text(original)
    users.chmod(0o644)
    try:
        backend = GeminiBackend(overlays_in(folder))
        cfg = BackendConfig(env={SYSTEM_SETTINGS_ENV: str(users)})
        first = backend.invocation(spec("gemini", 1), cfg, "gemini", None).env
        again = backend.invocation(spec("gemini", 1), cfg, "gemini", None).env
        assert first == again
        overlay = json.loads(Path(first[SYSTEM_SETTINGS_ENV]).read_text())
        assert overlay == {"general": {"maxAttempts": 2, "x": 1}, "tools": {"a": "//"}}
        assert users.read_text() == original
    finally:
        users.unlink()


@needs_root
def test_gemini_overlay_folders_of_gone_servers_are_swept(tmp_path):
    """A server stopped by a signal skips its exit handlers and leaves its overlay folder;
    the next server removes folders whose server is gone, and keeps live ones."""
    base = Path(tempfile.mkdtemp(dir=_trusted_folder(tmp_path), prefix="clinvk-test-"))
    try:
        gone = base / "clinvk-gemini-999999999-abc"  # above any pid_max
        live = base / f"clinvk-gemini-{os.getppid()}-def"
        for folder in (gone, live):
            folder.mkdir()
            (folder / "system-settings-x.json").write_text("{}")
        overlays = overlays_in(base)
        path = overlays.path({"general": {"maxAttempts": 1}}, {})
        assert path is not None and Path(path).parent.name.startswith(
            f"clinvk-gemini-{os.getpid()}-")
        assert not gone.exists() and live.exists()
        folder = Path(path).parent
        del overlays
        gc.collect()
        assert not folder.exists()  # removed once the overlays object is gone
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _open_folder(tmp_path: Path) -> Path:
    open_folder = tmp_path / "open"
    open_folder.mkdir()
    open_folder.chmod(0o777)
    return open_folder


def test_gemini_with_no_overlay_possible_sets_nothing_and_says_why(tmp_path):
    """Where gemini would not read a system overlay (a folder others can write, or not
    root's) and no home overlay can be made, the run gets no knob and the decoder tells
    the client so with the init event."""
    backend = GeminiBackend(overlays_in(_open_folder(tmp_path)), HomeOverlays(list))
    inv = backend.invocation(spec("gemini", 0), BackendConfig(), "gemini", None)
    assert SYSTEM_SETTINGS_ENV not in inv.env and HOME_ENV not in inv.env
    decoder = backend.decoder(spec("gemini", 0), BackendConfig())
    events = decoder.feed(b'{"type":"init","session_id":"s","model":"m"}')
    assert [type(e).__name__ for e in events] == ["Init", "Notice"]
    assert "max_retries not applied to gemini" in events[1].message


def _user_home(tmp_path: Path) -> Path:
    home = tmp_path / "user"
    (home / ".gemini" / "tmp" / "work" / "chats").mkdir(parents=True)
    (home / ".gemini" / "tmp" / "work" / "chats" / "session-1.jsonl").write_text("{}\n")
    (home / ".gemini" / "oauth_creds.json").write_text('{"token": "t"}')
    return home


def test_gemini_without_a_system_overlay_gets_a_home_overlay(tmp_path):
    """Not root: the run's GEMINI_CLI_HOME is an overlay whose settings are the user's
    with maxAttempts merged over them, and whose other entries are the user's own (chats,
    credentials); the user's settings file is untouched; one budget, one home."""
    home = _user_home(tmp_path)
    original = '{\n  // mine\n  "general": {"maxAttempts": 7, "x": 1},\n  "ui": {"theme": "a"}\n}'
    (home / ".gemini" / "settings.json").write_text(original)
    homes = HomeOverlays(lambda: [str(tmp_path / "homes")])
    (tmp_path / "homes").mkdir()
    backend = GeminiBackend(overlays_in(_open_folder(tmp_path)), homes)
    cfg = BackendConfig(env={HOME_ENV: str(home)})
    inv = backend.invocation(spec("gemini", 2), cfg, "gemini", None)
    again = backend.invocation(spec("gemini", 2), cfg, "gemini", None)
    assert inv.env[HOME_ENV] == again.env[HOME_ENV] != str(home)
    assert SYSTEM_SETTINGS_ENV not in inv.env
    overlay = Path(inv.env[HOME_ENV]) / ".gemini"
    assert json.loads((overlay / "settings.json").read_text()) == {
        "general": {"maxAttempts": 3, "x": 1}, "ui": {"theme": "a"}}
    assert (home / ".gemini" / "settings.json").read_text() == original
    assert (overlay / "tmp" / "work" / "chats" / "session-1.jsonl").read_text() == "{}\n"
    assert json.loads((overlay / "oauth_creds.json").read_text()) == {"token": "t"}
    other = backend.invocation(spec("gemini", 0), cfg, "gemini", None).env[HOME_ENV]
    assert other != inv.env[HOME_ENV]
    decoder = backend.decoder(spec("gemini", 0), cfg)
    events = decoder.feed(b'{"type":"init","session_id":"s","model":"m"}')
    assert [type(e).__name__ for e in events] == ["Init"]


def test_gemini_home_overlay_writes_land_in_the_users_folder(tmp_path):
    """What gemini writes through the overlay reaches the user's real `.gemini`: new chats
    and history (linked folders), a file written in place (dangling link), and a file it
    replaces by a rename over the link (moved back before the next run)."""
    home = _user_home(tmp_path)
    (tmp_path / "homes").mkdir()
    homes = HomeOverlays(lambda: [str(tmp_path / "homes")])
    real = home / ".gemini"
    overlay = Path(homes.path({"general": {"maxAttempts": 1}}, {HOME_ENV: str(home)})) / ".gemini"
    (overlay / "tmp" / "work" / "chats" / "session-2.jsonl").write_text("two")
    (overlay / "history" / "work").mkdir()
    (overlay / "installation_id").write_text("id-1")  # through a dangling link
    temp = overlay / "projects.json.123.tmp"
    temp.write_text('{"projects": {}}')
    os.replace(temp, overlay / "projects.json")  # as gemini saves its registry
    assert (real / "tmp" / "work" / "chats" / "session-2.jsonl").read_text() == "two"
    assert (real / "history" / "work").is_dir()
    assert (real / "installation_id").read_text() == "id-1"
    assert not (real / "projects.json").exists()
    homes.path({"general": {"maxAttempts": 1}}, {HOME_ENV: str(home)})
    assert (real / "projects.json").read_text() == '{"projects": {}}'
    assert (overlay / "projects.json").is_symlink()
    (real / "extensions").mkdir()  # a folder the user made since: linked on the next run
    homes.path({"general": {"maxAttempts": 1}}, {HOME_ENV: str(home)})
    assert (overlay / "extensions").resolve() == (real / "extensions").resolve()


def test_gemini_home_overlays_are_settled_and_removed_at_exit(tmp_path):
    """When the server's overlays object goes (normal exit), files gemini left in an
    overlay are moved to the user's folder and the overlays are removed."""
    home = _user_home(tmp_path)
    (tmp_path / "homes").mkdir()
    homes = HomeOverlays(lambda: [str(tmp_path / "homes")])
    path = Path(homes.path({"general": {"maxAttempts": 1}}, {HOME_ENV: str(home)}))
    temp = path / ".gemini" / "trustedFolders.json.tmp"
    temp.write_text("{}")
    os.replace(temp, path / ".gemini" / "trustedFolders.json")
    del homes
    gc.collect()
    assert not path.exists()
    assert (home / ".gemini" / "trustedFolders.json").read_text() == "{}"
    assert (home / ".gemini" / "oauth_creds.json").exists()


def test_trusted_by_gemini_follows_its_rule(tmp_path):
    """Trusted: every folder up to / owned by root and writable by no group or other."""
    def fake(owner: dict[str, tuple[int, int]]):
        def lstat(path: str):
            uid, mode = owner.get(path, (0, 0o40755))
            return os.stat_result((mode, 0, 0, 0, uid, 0, 0, 0, 0, 0))
        return lstat

    assert trusted_by_gemini("/a/b/f.json", lstat=fake({}))
    assert not trusted_by_gemini("/a/b/f.json", lstat=fake({"/a": (0, 0o41777)}))
    assert not trusted_by_gemini("/a/b/f.json", lstat=fake({"/a/b": (1000, 0o40700)}))
    assert not trusted_by_gemini("/a/b/f.json", lstat=fake({"/a/b/f.json": (0, 0o100666)}))


def test_merge_and_comment_stripping():
    """Objects merge key by key; comments go, strings that look like comments stay."""
    assert merge({"a": {"b": 1, "c": 2}, "d": 1}, {"a": {"b": 3}}) == {
        "a": {"b": 3, "c": 2}, "d": 1}
    text = '{"u": "http://x", /* c */ "v": "a\\"//b" // end\n}'
    assert json.loads(strip_json_comments(text)) == {"u": "http://x", "v": 'a"//b'}
