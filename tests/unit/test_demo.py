"""`clinvk serve --demo`'s parts: the stand-in with its labelled answer, the config it makes."""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import httpx
import pytest

from clinvk.adapters.backends.discovery import CliDiscovery
from clinvk.adapters.config.yaml_config import load_config
from clinvk.adapters.demo import DEMO_LABEL, DemoEnvironment
from clinvk.entrypoints import demo as demo_entry
from clinvk.entrypoints.cli import _parser, main


def test_the_demo_config_points_every_cli_at_the_stand_in_and_keeps_state_in_its_folder():
    """The overrides decode as a normal config: each CLI gets the stand-in's URL in its
    environment and its own home, and clinvk's home and default workdir are in the demo's
    folder, which is gone when the demo ends."""
    with DemoEnvironment() as demo:
        folder = demo.folder
        assert folder is not None
        commands = {"claude": "/x/claude", "codex": "/x/codex"}
        config = load_config(environ={}, overrides=demo.overrides(commands))
        assert config.home == str(folder / "clinvk-home")
        assert config.server.default_workdir == str(folder / "work")
        claude, codex, gemini = (config.backend(n) for n in ("claude", "codex", "gemini"))
        assert (claude.command, codex.command, gemini.command) == ("/x/claude", "/x/codex", "")
        assert claude.env["ANTHROPIC_BASE_URL"] == demo.url
        assert gemini.env["GOOGLE_GEMINI_BASE_URL"] == demo.url
        assert any(demo.url + "/v1" in flag for flag in codex.extra_flags)
        for cfg in (claude, codex, gemini):
            assert Path(cfg.env["HOME"]).is_relative_to(folder)
        assert gemini.model  # gemini must be told a model, or it asks a router model first
        url = demo.url
    assert not folder.exists()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/_control", timeout=5)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/messages", {"model": "m", "max_tokens": 10, "messages": []}),
        ("/v1beta/models/gemini-2.5-flash:generateContent", {"contents": []}),
    ],
)
def test_every_canned_answer_is_labelled(path, body):
    """The stand-in's answer text starts with the demo label, whatever API is asked."""
    with DemoEnvironment() as demo:
        answer = httpx.post(demo.url + path, json=body, timeout=30).json()
    text = answer["content"][0]["text"] if "content" in answer else (
        answer["candidates"][0]["content"]["parts"][0]["text"]
    )
    assert text.startswith(DEMO_LABEL)


def test_streamed_canned_answers_start_with_the_label():
    """The first streamed piece of an OpenAI Responses answer is the start of the label."""
    with DemoEnvironment() as demo:
        events = httpx.post(demo.url + "/v1/responses", json={"input": "hi"}, timeout=30).text
    first = next(line for line in events.splitlines() if '"response.output_text.delta"' in line)
    assert DEMO_LABEL.split()[0] in first


def test_serve_has_a_demo_flag():
    """`clinvk serve --demo` parses, and is off by default."""
    assert _parser().parse_args(["serve", "--demo"]).demo is True
    assert _parser().parse_args(["serve"]).demo is False


def test_demo_without_any_cli_refuses_and_says_how_to_install(tmp_path, monkeypatch, capsys):
    """With no CLI installed anywhere, `--demo` does not start and tells the user to run
    ./scripts/install-clis.sh (or the npm command for all three packages)."""
    checkout = tmp_path / "checkout"
    monkeypatch.setattr(
        demo_entry,
        "CliDiscovery",
        functools.partial(
            CliDiscovery, {"PATH": ""}, home=str(tmp_path), checkout=checkout,
            ask_npm=lambda path: None,
        ),
    )
    monkeypatch.setenv("PATH", "")
    with contextlib.ExitStack() as stack:
        assert demo_entry.start_demo(stack) is None
    err = capsys.readouterr().err
    assert f"`./scripts/install-clis.sh` in {checkout}" in err
    assert "npm install -g @anthropic-ai/claude-code @openai/codex @google/gemini-cli" in err
    monkeypatch.setattr(demo_entry, "start_demo", lambda stack: None)
    assert main(["serve", "--demo"]) == 2
