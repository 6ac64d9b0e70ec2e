"""Hot sessions with the real claude: turn 2 goes to the process of turn 1, never across
sessions, and the process ends with its session."""

from __future__ import annotations

import os
import threading
import time
from typing import Self

import httpx
import pytest
import yaml

from tests.support.clis import missing_clis
from tests.support.model_double import assistant_texts, generation_requests, user_texts
from tests.support.server import SETTLE_SECS, ClinvkServer


@pytest.fixture
def hot_server(model_double, tmp_path):
    assert not missing_clis()
    server = ClinvkServer(
        model_double.url, tmp_path, hot_sessions_max=2, hot_session_idle_secs=300
    )
    config = yaml.safe_load(server.config_path.read_text())
    config["backends"]["claude"]["warm_pool"] = 1
    config["backends"]["codex"]["warm_pool"] = 1  # pooled as app servers (the hot form)
    server.config_path.write_text(yaml.safe_dump(config))
    server.start()
    yield server
    server.stop()


def _prompt(server, **body) -> dict:
    r = httpx.post(server.url + "/api/v1/prompt", json={"backend": "claude", **body}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def _settled_pids(server, count: int) -> set[int]:
    """The server's CLI processes once exactly `count` CLI trees are left (a pool refill or
    an ended run may still be on its way)."""
    deadline = time.monotonic() + SETTLE_SECS  # a hang guard only
    while True:
        pids = set(server.cli_pids())
        trees = len([p for p in pids if _is_claude(p)])
        if trees == count or time.monotonic() > deadline:
            return pids
        time.sleep(0.05)


def _is_claude(pid: int) -> bool:
    return _is_cli(pid, "claude")


def _is_cli(pid: int, name: str) -> bool:
    """Whether `pid` is the CLI itself (not clinvk's supervisor, not a helper it ran)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return b"supervise.py" not in b" ".join(argv) and any(name.encode() in a for a in argv[:2])


class _Watcher:
    """Every CLI process seen while a request runs, sampled from another thread."""

    def __init__(self, server, name: str = "claude") -> None:
        self.server = server
        self.name = name
        self.seen: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.seen.update(p for p in self.server.cli_pids() if _is_cli(p, self.name))
            time.sleep(0.01)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_turn_two_is_answered_by_the_process_of_turn_one(hot_server, model_double):
    """The second turn of a session starts no process: the one that answered turn 1 takes
    it on its open stdin, with the conversation so far; another session never sees it."""
    model_double.set(reply="first answer")
    first = _prompt(hot_server, prompt="The secret word is PELICAN.")
    session = first["session_id"]
    # Waiting: the pool's claude (refilled) and the hot process of the session.
    before = _settled_pids(hot_server, 2)
    model_double.set(reply="second answer")
    with _Watcher(hot_server) as watch:
        second = _prompt(hot_server, prompt="What is the secret word?", session_id=session)
    assert second["output"] == "second answer"
    assert second["session_id"] == session
    assert watch.seen <= before, "turn 2 started a process"
    turn2 = generation_requests(model_double.requests())[-1]
    assert "What is the secret word?" in user_texts(turn2)[-1]
    assert any("PELICAN" in text for text in user_texts(turn2))  # turn 1 is in context
    assert "first answer" in assistant_texts(turn2)

    model_double.set(reply="other answer")
    other = _prompt(hot_server, prompt="Hello, who are you?")
    assert other["session_id"] != session
    turn_other = generation_requests(model_double.requests())[-1]
    assert "PELICAN" not in str(turn_other["body"])  # nothing crosses sessions


def test_deleting_a_session_ends_its_process_and_shutdown_ends_the_rest(hot_server):
    """A hot process ends with its session; at shutdown none is left."""
    first = _prompt(hot_server, prompt="one")
    second = _prompt(hot_server, prompt="two")
    assert first["session_id"] != second["session_id"]
    three = _settled_pids(hot_server, 3)  # the pool's process + two hot sessions
    assert len([p for p in three if _is_claude(p)]) == 3
    r = httpx.delete(hot_server.url + f"/api/v1/sessions/{first['session_id']}", timeout=30)
    assert r.status_code in (200, 204), r.text
    two = _settled_pids(hot_server, 2)
    assert len([p for p in two if _is_claude(p)]) == 2
    assert two < three
    hot_server.stop()
    assert hot_server.wait_no_cli() == []


def test_more_sessions_than_allowed_end_the_least_recently_used(hot_server, model_double):
    """With hot_sessions_max 2, a third session's process ends the oldest one, whose next
    turn then runs cold and still has its context."""
    model_double.set(reply="noted")
    a = _prompt(hot_server, prompt="Remember ALBATROSS.")
    _prompt(hot_server, prompt="b")
    _prompt(hot_server, prompt="c")
    after = _settled_pids(hot_server, 3)  # pool + 2 hot: session a's process was ended
    assert len([p for p in after if _is_claude(p)]) == 3
    model_double.set(reply="again")
    again = _prompt(hot_server, prompt="What did I ask you to remember?", session_id=a["session_id"])
    assert again["output"] == "again"
    turn = generation_requests(model_double.requests())[-1]
    assert any("ALBATROSS" in text for text in user_texts(turn))


def test_codex_turn_two_goes_to_the_app_server_of_turn_one(hot_server, model_double):
    """codex sessions run on `codex app-server`: turn 1 takes a pooled app server (no
    process starts for it), turn 2 is one more turn of that process, streamed piece by
    piece, with the conversation so far."""
    deadline = time.monotonic() + SETTLE_SECS  # a hang guard only
    while _codex_pool(hot_server)["ready"] < 1:
        assert time.monotonic() < deadline, _codex_pool(hot_server)
        time.sleep(0.05)
    pooled = {p for p in hot_server.cli_pids() if _is_cli(p, "codex")}
    model_double.set(reply="first answer")
    r = httpx.post(hot_server.url + "/api/v1/prompt", timeout=60,
                   json={"backend": "codex", "prompt": "The secret word is PELICAN."})
    assert r.status_code == 200, r.text
    assert _codex_pool(hot_server)["hits"] == 1  # turn 1 took the pooled app server ...
    assert pooled <= set(hot_server.cli_pids())  # ... which now waits as the hot process
    first = r.json()
    assert first["output"] == "first answer"
    # Waiting: the hot app server of the session and the pool's replacement, each in its
    # own process group (a codex is a node launcher and its native child).
    deadline = time.monotonic() + SETTLE_SECS  # a hang guard only
    while len(_groups(p for p in hot_server.cli_pids() if _is_cli(p, "codex"))) < 2:
        assert time.monotonic() < deadline, "no codex process waits"
        time.sleep(0.05)
    before = _groups(p for p in hot_server.cli_pids() if _is_cli(p, "codex"))
    model_double.set(reply="second answer")
    lines = []
    with _Watcher(hot_server, "codex") as watch, httpx.stream(
        "POST", hot_server.url + "/api/v1/prompt", timeout=60,
        json={"backend": "codex", "prompt": "What is the secret word?",
              "session_id": first["session_id"], "output_format": "stream-json"},
    ) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line.strip()]
    assert _groups(watch.seen) <= before, "turn 2 started a process"
    assert '"delta"' in "\n".join(lines)  # the app server streams its text
    turn2 = generation_requests(model_double.requests())[-1]
    assert any("PELICAN" in text for text in user_texts(turn2))
    assert "first answer" in assistant_texts(turn2)
    hot_server.stop()
    assert hot_server.wait_no_cli() == []


def _groups(pids) -> set[int]:
    """The process groups of `pids` (one per CLI clinvk started) that still exist."""
    out = set()
    for pid in pids:
        try:
            out.add(os.getpgid(pid))
        except ProcessLookupError:
            pass
    return out


def _codex_pool(server) -> dict:
    health = httpx.get(server.url + "/health").json()
    return next(b for b in health["backends"] if b["name"] == "codex")["warm_pool"]


def test_gemini_turn_two_goes_to_the_acp_process_of_turn_one(hot_server, model_double):
    """gemini sessions run on `gemini --acp`: turn 2 is one more prompt to the process that
    answered turn 1, with the conversation so far; a session deleted ends it."""
    model_double.set(reply="first answer")
    r = httpx.post(hot_server.url + "/api/v1/prompt", timeout=120,
                   json={"backend": "gemini", "prompt": "The secret word is PELICAN."})
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["output"] == "first answer"
    deadline = time.monotonic() + SETTLE_SECS  # a hang guard only
    while not [p for p in hot_server.cli_pids() if _is_cli(p, "gemini")]:
        assert time.monotonic() < deadline, "no gemini process waits"
        time.sleep(0.05)
    before = {p for p in hot_server.cli_pids() if _is_cli(p, "gemini")}
    model_double.set(reply="second answer")
    with _Watcher(hot_server, "gemini") as watch:
        r = httpx.post(hot_server.url + "/api/v1/prompt", timeout=120,
                       json={"backend": "gemini", "prompt": "What is the secret word?",
                             "session_id": first["session_id"]})
    assert r.status_code == 200, r.text
    assert r.json()["output"] == "second answer"
    assert watch.seen <= before, "turn 2 started a process"
    turn2 = generation_requests(model_double.requests())[-1]
    assert any("PELICAN" in text for text in user_texts(turn2))
    assert "first answer" in assistant_texts(turn2)
    r = httpx.delete(hot_server.url + f"/api/v1/sessions/{first['session_id']}", timeout=30)
    assert r.status_code in (200, 204), r.text
    deadline = time.monotonic() + SETTLE_SECS  # a hang guard only
    while [p for p in hot_server.cli_pids() if _is_cli(p, "gemini")]:
        assert time.monotonic() < deadline, "the gemini process outlived its session"
        time.sleep(0.05)
