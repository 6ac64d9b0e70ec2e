"""How each CLI is given a run's images, effort and output schema (argv and stdin), and
what it is given when the run has none."""

from __future__ import annotations

import base64
import json

import msgspec
import pytest

from clinvk.adapters.backends.base import ARGV_PROMPT_LIMIT
from clinvk.adapters.backends.claude import ClaudeBackend, ClaudeDecoder
from clinvk.adapters.backends.codex import CodexBackend
from clinvk.adapters.backends.gemini import GeminiBackend, thinking_settings
from clinvk.adapters.backends.run_files import RunFiles, needs_files
from clinvk.adapters.backends.runner import SubprocessBackendRunner
from clinvk.domain.config import BackendConfig, Config
from clinvk.domain.events import Message
from clinvk.domain.models import ImageInput, RunSpec
from tests.support.images import png_bytes

PNG = ImageInput(media_type="image/png", data=png_bytes())
GIF = ImageInput(media_type="image/gif", data=b"GIF89a fake")
SCHEMA = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
FILES = RunFiles(folder="/run/x", images=("/run/x/image-1.png", "/run/x/image-2.gif"),
                 output_schema="/run/x/schema.json")


def spec(backend: str, prompt: str = "what is [image 1]?", **fields) -> RunSpec:
    return RunSpec(backend=backend, prompt=prompt, workdir="/tmp", **fields)


# -- claude ----------------------------------------------------------------------------------


def test_claude_images_go_in_its_stream_json_input_on_a_pipe():
    """claude gets `--input-format stream-json` and one user turn on a stdin pipe: the
    prompt text, then each image as a base64 image block, in order; no argv prompt."""
    inv = ClaudeBackend().invocation(spec("claude", images=(PNG, GIF)), BackendConfig(),
                                     "claude", None, files=FILES)
    assert inv.argv[-2:] == ["--input-format", "stream-json"] and "--" not in inv.argv
    assert inv.stdin is None and inv.input is not None and inv.input.endswith(b"\n")
    turn = json.loads(inv.input)
    assert turn["type"] == "user" and turn["message"]["role"] == "user"
    assert turn["message"]["content"] == [
        {"type": "text", "text": "what is [image 1]?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": base64.b64encode(PNG.data).decode()}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/gif",
                                     "data": base64.b64encode(GIF.data).decode()}},
    ]


def test_claude_large_prompt_with_images_still_travels_in_the_turn():
    """A prompt over the argv limit with images goes inside the stream-json turn too."""
    big = "x" * (ARGV_PROMPT_LIMIT + 1)
    inv = ClaudeBackend().invocation(spec("claude", prompt=big, images=(PNG,)),
                                     BackendConfig(), "claude", None, files=FILES)
    assert inv.input is not None and json.loads(inv.input)["message"]["content"][0]["text"] == big


@pytest.mark.parametrize(
    ("effort", "flag"),
    [("minimal", "low"), ("low", "low"), ("medium", "medium"), ("high", "high"),
     ("xhigh", "xhigh"), ("max", "max")],
)
def test_claude_effort_is_its_effort_flag(effort, flag):
    """The effort becomes `--effort <level>` (claude has no `minimal`: low)."""
    backend = ClaudeBackend()
    for make in (backend.invocation, backend.warm_invocation):
        inv = make(spec("claude", effort=effort), BackendConfig(), "claude", None)
        assert inv.argv[inv.argv.index("--effort") + 1] == flag


def test_claude_output_schema_is_its_json_schema_flag():
    """The output schema is passed inline as `--json-schema <json>`."""
    inv = ClaudeBackend().invocation(spec("claude", output_schema=SCHEMA), BackendConfig(),
                                     "claude", None)
    assert json.loads(inv.argv[inv.argv.index("--json-schema") + 1]) == SCHEMA


def test_claude_without_the_new_options_is_unchanged():
    """No images, effort or schema: the prompt after `--`, none of the new flags."""
    inv = ClaudeBackend().invocation(spec("claude", prompt="hi"), BackendConfig(), "claude", None)
    assert inv.argv[-2:] == ["--", "hi"] and inv.input is None
    assert not {"--effort", "--json-schema", "--input-format"} & set(inv.argv)


def test_claude_structured_output_is_the_answer():
    """When claude's result carries `structured_output` (its StructuredOutput tool's
    input), that JSON is the run's output."""
    decoder = ClaudeDecoder(spec("claude"))
    decoder.feed(json.dumps({"type": "system", "subtype": "init", "session_id": "s"}).encode())
    decoder.feed(json.dumps({"type": "result", "subtype": "success", "is_error": False,
                             "result": "", "session_id": "s",
                             "structured_output": {"a": "b"}}).encode())
    result = decoder.finish(exit_code=0, stderr="", duration_ms=1)
    assert msgspec.json.decode(result.output) == {"a": "b"}


# -- codex -----------------------------------------------------------------------------------


def test_codex_gets_each_image_and_the_schema_as_files():
    """Each image is one `--image=<file>` (one value each: the flag takes several), the
    schema `--output-schema <file>`, all before the prompt."""
    inv = CodexBackend().invocation(spec("codex", images=(PNG, GIF), output_schema=SCHEMA),
                                    BackendConfig(), "codex", None, files=FILES)
    argv = inv.argv
    assert "--image=/run/x/image-1.png" in argv and "--image=/run/x/image-2.gif" in argv
    assert argv[argv.index("--output-schema") + 1] == "/run/x/schema.json"
    assert argv[-2:] == ["--", "what is [image 1]?"]
    assert argv.index("--image=/run/x/image-2.gif") < argv.index("--")


def test_codex_resume_takes_the_images_after_the_session_id():
    """On a resumed run the files follow `resume ID` (the subcommand takes them too)."""
    inv = CodexBackend().invocation(spec("codex", images=(PNG,), resume_id="t-1"),
                                    BackendConfig(), "codex", None,
                                    files=RunFiles(folder="/r", images=("/r/image-1.png",)))
    argv = inv.argv
    assert argv.index("resume") < argv.index("--image=/r/image-1.png") < argv.index("--")


def test_codex_large_prompt_reads_stdin_after_the_images():
    """A large prompt goes on stdin (`-`), after the image flags."""
    big = "y" * (ARGV_PROMPT_LIMIT + 1)
    inv = CodexBackend().invocation(spec("codex", prompt=big, images=(PNG,)), BackendConfig(),
                                    "codex", None, files=FILES)
    assert inv.argv[-1] == "-" and inv.stdin == big.encode()


@pytest.mark.parametrize("effort", ["minimal", "low", "medium", "high", "xhigh", "max"])
def test_codex_effort_is_its_reasoning_effort_setting(effort):
    """The effort becomes `-c model_reasoning_effort="<level>"` (codex sends it as the
    Responses API's reasoning.effort)."""
    inv = CodexBackend().invocation(spec("codex", effort=effort), BackendConfig(), "codex", None)
    assert f'model_reasoning_effort="{effort}"' in inv.argv
    assert inv.argv[inv.argv.index(f'model_reasoning_effort="{effort}"') - 1] == "-c"


# -- gemini ----------------------------------------------------------------------------------


def test_gemini_gets_at_references_and_the_folder_in_its_workspace():
    """gemini reads `@file` only inside its workspace: the run's folder is added with
    `--include-directories`, and the prompt ends with an `@path` per image."""
    inv = GeminiBackend().invocation(spec("gemini", images=(PNG, GIF)), BackendConfig(),
                                     "gemini", None, files=FILES)
    argv = inv.argv
    assert argv[argv.index("--include-directories") + 1] == "/run/x"
    assert argv[-1] == ("--prompt=what is [image 1]?\n\nThe attached images, in order: "
                        "@/run/x/image-1.png @/run/x/image-2.gif")


def test_gemini_escapes_spaces_in_image_paths():
    """A space in a path is escaped as gemini's @-reference parser expects."""
    files = RunFiles(folder="/a b", images=("/a b/image-1.png",))
    inv = GeminiBackend().invocation(spec("gemini", images=(PNG,)), BackendConfig(), "gemini",
                                     None, files=files)
    assert inv.argv[-1].endswith("@/a\\ b/image-1.png")


def test_gemini_large_prompt_carries_the_references_on_stdin():
    """A large prompt goes on stdin with the references at its end."""
    big = "z" * (ARGV_PROMPT_LIMIT + 1)
    inv = GeminiBackend().invocation(spec("gemini", prompt=big, images=(PNG, GIF)),
                                     BackendConfig(), "gemini", None, files=FILES)
    assert inv.stdin is not None and inv.stdin.startswith(big.encode())
    assert inv.stdin.endswith(b"@/run/x/image-1.png @/run/x/image-2.gif")


def test_gemini_ignores_an_output_schema_and_says_so():
    """gemini has no structured-output knob: the schema changes nothing in its argv, and
    the run's init notice says it was not applied."""
    plain = GeminiBackend().invocation(spec("gemini"), BackendConfig(), "gemini", None)
    run = spec("gemini", output_schema=SCHEMA)
    with_schema = GeminiBackend().invocation(run, BackendConfig(), "gemini", None)
    assert plain.argv == with_schema.argv
    decoder = GeminiBackend().decoder(run, BackendConfig())
    events = decoder.feed(json.dumps({"type": "init", "session_id": "s", "model": "m"}).encode())
    assert any("output_schema not applied to gemini" in getattr(e, "message", "")
               for e in events)


# -- the warm pool ---------------------------------------------------------------------------


def test_runs_with_files_never_take_a_warm_process():
    """A pooled process was started without the run's files, so a run with images or a
    schema always starts its own CLI."""
    runner = SubprocessBackendRunner(Config(backends={"claude": BackendConfig(warm_pool=1)}))
    backend = ClaudeBackend()
    plain = spec("claude", prompt="hi")
    assert runner._warm(backend, plain, BackendConfig(), "claude", None) is not None
    for fields in ({"images": (PNG,)}, {"output_schema": SCHEMA}):
        run = spec("claude", **fields)
        assert needs_files(run)
        assert runner._warm(backend, run, BackendConfig(), "claude", None) is None


@pytest.mark.parametrize(
    ("model", "effort", "thinking"),
    [("gemini-2.5-flash", "low", {"thinkingBudget": 1024}),
     ("gemini-2.5-pro", "minimal", {"thinkingBudget": 128}),
     ("gemini-2.5-flash", "max", {"thinkingBudget": 24576}),
     ("gemini-3-pro-preview", "low", {"thinkingLevel": "LOW"}),
     ("gemini-3-pro-preview", "high", {"thinkingLevel": "HIGH"})],
)
def test_gemini_effort_is_a_thinking_override_for_the_runs_model(model, effort, thinking):
    """gemini has no effort flag: the effort becomes a settings override matching the run's
    model (a thinking budget for 2.x models, a thinking level for later ones)."""
    settings = thinking_settings(spec("gemini", model=model, effort=effort))
    assert settings == {"modelConfigs": {"customOverrides": [
        {"match": {"model": model},
         "modelConfig": {"generateContentConfig": {"thinkingConfig": thinking}}}]}}


def test_gemini_effort_without_a_model_is_not_applied_and_said():
    """Without a model (gemini routes each call itself) the effort is left out, and the
    run's init says so."""
    run = spec("gemini", effort="high")
    assert thinking_settings(run) is None
    assert thinking_settings(spec("gemini", model="gemini-2.5-flash")) is None
    decoder = GeminiBackend().decoder(run, BackendConfig())
    events = decoder.feed(json.dumps({"type": "init", "session_id": "s", "model": "m"}).encode())
    assert any("effort not applied to gemini" in getattr(e, "message", "") for e in events)


def test_claude_structured_output_is_streamed_as_a_message():
    """A structured answer is given as a whole message when the result comes, so a stream
    carries it too (claude's model answered through a tool, with no text deltas)."""
    decoder = ClaudeDecoder(spec("claude"))
    events = decoder.feed(json.dumps({"type": "result", "subtype": "success",
                                      "is_error": False, "result": "", "session_id": "s",
                                      "structured_output": {"a": 1}}).encode())
    assert isinstance(events[0], Message) and json.loads(events[0].text) == {"a": 1}
