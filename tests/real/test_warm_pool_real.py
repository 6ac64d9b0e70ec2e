"""The warm pool with the real CLIs: ready processes, one request each, no shared context."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.support.clis import missing_clis
from tests.support.model_double import assistant_texts, generation_requests, user_texts
from tests.support.server import SETTLE_SECS, ClinvkServer


@pytest.fixture
def pooled_server(model_double, tmp_path):
    assert not missing_clis()
    server = ClinvkServer(model_double.url, tmp_path, warm_pool_idle_secs=300)
    # Turn the pool on for claude and codex in the generated config.
    import yaml

    config = yaml.safe_load(server.config_path.read_text())
    for name in ("claude", "codex"):
        config["backends"][name]["warm_pool"] = 1
    server.config_path.write_text(yaml.safe_dump(config))
    server.start()
    yield server
    server.stop()


def _pool(server, backend: str) -> dict:
    health = httpx.get(server.url + "/health").json()
    return next(b for b in health["backends"] if b["name"] == backend)["warm_pool"]


def _wait_ready(server, backend: str) -> None:
    deadline = time.monotonic() + SETTLE_SECS  # a hang guard only
    while _pool(server, backend)["ready"] < 1:
        assert time.monotonic() < deadline, "the pool never refilled"
        time.sleep(0.05)


@pytest.mark.parametrize("backend", ["claude", "codex"])
def test_pooled_processes_serve_one_request_each(pooled_server, model_double, backend):
    """A warm process answers one request; the next request sees nothing of the first."""
    assert _pool(pooled_server, backend) == {"size": 1, "ready": 1, "hits": 0}
    model_double.set(reply="first answer")
    r1 = httpx.post(pooled_server.url + "/api/v1/prompt", timeout=60,
                    json={"backend": backend, "prompt": "The secret word is PELICAN."})
    assert r1.status_code == 200, r1.text
    assert r1.json()["output"] == "first answer"
    _wait_ready(pooled_server, backend)  # replaced in the background by a fresh process
    model_double.set(reply="second answer")
    r2 = httpx.post(pooled_server.url + "/api/v1/prompt", timeout=60,
                    json={"backend": backend, "prompt": "What is the secret word?"})
    assert r2.status_code == 200, r2.text
    assert r2.json()["output"] == "second answer"
    assert _pool(pooled_server, backend)["hits"] == 2
    assert r2.json()["session_id"] != r1.json()["session_id"]
    second = generation_requests(model_double.requests())[-1]
    seen = "\n".join(user_texts(second))
    assert "What is the secret word?" in seen
    assert "PELICAN" not in str(second["body"])  # no trace of the first request


def test_options_that_differ_run_cold(pooled_server, model_double):
    """A request whose options differ from the pooled signature runs cold; the default
    process stays ready."""
    r = httpx.post(pooled_server.url + "/api/v1/prompt", timeout=60,
                   json={"backend": "claude", "prompt": "hi", "model": "sonnet"})
    assert r.status_code == 200, r.text
    pool = _pool(pooled_server, "claude")
    assert pool["hits"] == 0 and pool["ready"] >= 1


def test_warm_processes_are_gone_after_shutdown(pooled_server):
    """Stopping the server terminates the idle pooled processes too."""
    assert len(pooled_server.cli_pids()) >= 2  # one claude, one codex waiting
    pooled_server.stop()
    assert pooled_server.wait_no_cli() == []


def test_a_missed_signature_is_warm_the_next_time(pooled_server, model_double):
    """After a request with other options misses, the pool keeps that signature ready too,
    so the same kind of request (e.g. every Anthropic request, which sets max_tokens) is warm
    from then on, and still without context from earlier requests."""
    body = {"backend": "claude", "prompt": "first PELICAN", "max_tokens": 1024}
    assert httpx.post(pooled_server.url + "/api/v1/prompt", json=body, timeout=60).status_code == 200
    deadline = time.monotonic() + SETTLE_SECS  # a hang guard only
    while _pool(pooled_server, "claude")["ready"] < 2:  # default + the learnt signature
        assert time.monotonic() < deadline, _pool(pooled_server, "claude")
        time.sleep(0.05)
    body["prompt"] = "second"
    r = httpx.post(pooled_server.url + "/api/v1/prompt", json=body, timeout=60)
    assert r.status_code == 200
    assert _pool(pooled_server, "claude")["hits"] == 1  # the learnt process was used
    second = generation_requests(model_double.requests())[-1]
    assert "PELICAN" not in str(second["body"])


@pytest.fixture
def growing_server(model_double, tmp_path):
    assert not missing_clis()
    # Growth waits for idle CPU; the test machine is shared, so growth is tested without it.
    server = ClinvkServer(model_double.url, tmp_path, warm_pool_shrink_secs=600,
                          warm_pool_min_idle_cores=0)
    import yaml

    config = yaml.safe_load(server.config_path.read_text())
    config["backends"]["claude"]["warm_pool"] = 1
    config["backends"]["claude"]["warm_pool_max"] = 3
    server.config_path.write_text(yaml.safe_dump(config))
    server.start()
    yield server
    server.stop()


def _burst(server, n: int) -> None:
    def one(i: int) -> None:
        r = httpx.post(server.url + "/api/v1/prompt", timeout=60,
                       json={"backend": "claude", "prompt": f"request {i}"})
        assert r.status_code == 200, r.text

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_the_pool_grows_when_requests_find_it_empty(growing_server):
    """Three requests at once find one warm process: the pool's target grows to three,
    the spares beyond the floor are started after the burst (by the pool's own timer, no
    request needed) until three wait, the next burst is served by them, and it never holds
    more than warm_pool_max."""
    _burst(growing_server, 3)
    pool = _pool(growing_server, "claude")
    assert pool["hits"] == 1 and pool["size"] == 3
    deadline = time.monotonic() + 60  # a hang guard only: the state is polled
    while _pool(growing_server, "claude")["ready"] < 3:
        assert time.monotonic() < deadline, _pool(growing_server, "claude")
        time.sleep(0.1)
    _burst(growing_server, 3)
    pool = _pool(growing_server, "claude")
    assert pool["hits"] == 4 and pool["size"] <= 3 and pool["ready"] <= 3


@pytest.fixture
def gemini_pooled(model_double, tmp_path):
    assert not missing_clis()
    server = ClinvkServer(model_double.url, tmp_path, warm_pool_idle_secs=600)
    import yaml

    config = yaml.safe_load(server.config_path.read_text())
    config["backends"]["gemini"]["warm_pool"] = 1
    server.config_path.write_text(yaml.safe_dump(config))
    server.start()
    yield server
    server.stop()


def _gemini(server, **body) -> dict:
    r = httpx.post(server.url + "/api/v1/prompt", timeout=180, json={"backend": "gemini", **body})
    assert r.status_code == 200, r.text
    return r.json()


def _gemini_clis(server) -> list[int]:
    from tests.real.test_hot_sessions_real import _is_cli

    return [p for p in server.cli_pids() if _is_cli(p, "gemini")]


def test_gemini_is_pooled_as_an_acp_process_that_answers_like_gemini_p(
    gemini_pooled, model_double
):
    """A one-shot gemini request takes a waiting `gemini --acp` process, which answers with
    the same text, usage and model as a cold `gemini -p` run, opens a session that
    `gemini -p --resume` continues with its context, and is then ended; the next pooled
    request sees nothing of the first."""
    _wait_ready(gemini_pooled, "gemini")
    model_double.set(reply="first answer")
    warm = _gemini(gemini_pooled, prompt="The secret word is PELICAN.")
    assert _pool(gemini_pooled, "gemini")["hits"] == 1
    # The same prompt cold (an extra flag makes another invocation): `gemini -p`.
    workdir = str(gemini_pooled.workdir)
    cold = _gemini(gemini_pooled, prompt="The secret word is PELICAN.",
                   extra=["--include-directories", workdir])
    assert _pool(gemini_pooled, "gemini")["hits"] == 1
    for field in ("output", "token_usage", "model", "exit_code"):
        assert warm[field] == cold[field], field
    assert warm["output"] == "first answer" and warm["token_usage"]["output_tokens"] > 0

    # The pooled process served one request and ended: only waiting ones are left (its
    # replacement and one for the invocation the cold request taught the pool).
    deadline = time.monotonic() + 60  # a hang guard only: the state is polled
    while len(_gemini_clis(gemini_pooled)) != 2 or _pool(gemini_pooled, "gemini")["ready"] != 2:
        state = (_gemini_clis(gemini_pooled), _pool(gemini_pooled, "gemini"))
        assert time.monotonic() < deadline, state
        time.sleep(0.1)

    # Its session resumes cold (`gemini -p --resume`: ACP's session/load may erase a
    # session created in the same minute, see gemini.py) with the conversation so far.
    model_double.set(reply="resumed answer")
    resumed = _gemini(gemini_pooled, prompt="What is the secret word?",
                      session_id=warm["session_id"])
    assert resumed["output"] == "resumed answer"
    assert _pool(gemini_pooled, "gemini")["hits"] == 1
    turn = generation_requests(model_double.requests())[-1]
    assert any("PELICAN" in text for text in user_texts(turn))
    assert "first answer" in assistant_texts(turn)

    # A new request on the refilled pool: a fresh session, no trace of the others.
    model_double.set(reply="other answer")
    other = _gemini(gemini_pooled, prompt="What is the secret word?")
    assert other["output"] == "other answer" and other["session_id"] != warm["session_id"]
    assert _pool(gemini_pooled, "gemini")["hits"] == 2
    turn = generation_requests(model_double.requests())[-1]
    assert "PELICAN" not in str(turn["body"]) and "first answer" not in str(turn["body"])
