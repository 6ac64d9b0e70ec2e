"""A run's files (images, an output schema): private (folder 0700, files 0600), handed to
the CLI, and gone when the run ends — after success, failure or cancellation."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import anyio
import pytest

from clinvk.adapters.backends.run_files import NO_FILES, placeholders, run_files
from clinvk.adapters.backends.runner import SubprocessBackendRunner
from clinvk.domain.config import BackendConfig, Config
from clinvk.domain.errors import BackendFailed
from clinvk.domain.models import ImageInput, RunSpec
from tests.support.images import png_bytes

PNG = ImageInput(media_type="image/png", data=png_bytes())
JPEG = ImageInput(media_type="image/jpeg", data=b"\xff\xd8\xff fake jpeg")
SCHEMA = {"type": "object", "properties": {"a": {"type": "string"}}}


def _spec(workdir: Path, **fields) -> RunSpec:
    return RunSpec(backend="codex", prompt="look at [image 1]", workdir=str(workdir), **fields)


def _mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_files_are_private_and_removed_on_exit(tmp_path):
    """Images and the schema are written 0600 in a fresh 0700 folder, named by media type,
    and the folder is gone after the block."""
    spec = _spec(tmp_path, images=(PNG, JPEG), output_schema=SCHEMA)
    with run_files(spec, parent=str(tmp_path)) as files:
        assert files.folder is not None and _mode(files.folder) == 0o700
        assert [Path(p).name for p in files.images] == ["image-1.png", "image-2.jpg"]
        assert [Path(p).read_bytes() for p in files.images] == [PNG.data, JPEG.data]
        assert files.output_schema is not None
        assert json.loads(Path(files.output_schema).read_text()) == SCHEMA
        assert {_mode(p) for p in (*files.images, files.output_schema)} == {0o600}
        folder = files.folder
    assert not os.path.exists(folder)


def test_files_are_removed_when_the_run_fails(tmp_path):
    """An exception inside the block still removes the folder."""
    with pytest.raises(RuntimeError), run_files(_spec(tmp_path, images=(PNG,)),
                                                parent=str(tmp_path)) as files:
        folder = files.folder
        raise RuntimeError("the CLI failed")
    assert folder is not None and not os.path.exists(folder)


def test_a_run_without_files_writes_nothing(tmp_path):
    """No images and no schema: no folder at all."""
    with run_files(_spec(tmp_path), parent=str(tmp_path)) as files:
        assert files == NO_FILES
    assert list(tmp_path.iterdir()) == []
    assert placeholders(_spec(tmp_path)) == NO_FILES


def test_dry_run_names_the_files_without_writing_them(tmp_path):
    """A dry run shows where the files would be, and writes none."""
    runner = SubprocessBackendRunner(Config(backends={"codex": BackendConfig(command="codex")}))
    command = runner.command(_spec(tmp_path, images=(PNG,), output_schema=SCHEMA))
    assert "--image=<run-folder>/image-1.png" in command
    assert command[command.index("--output-schema") + 1] == "<run-folder>/schema.json"


# -- through the runner, with a stand-in codex ------------------------------------------------

#: A stand-in `codex exec --json`: writes what it was given (each file's mode and its
#: folder's) to $REPORT, then answers, fails or hangs as $MODE says.
FAKE_CODEX = """\
import json, os, stat, sys, time
images = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--image=")]
schema = sys.argv[sys.argv.index("--output-schema") + 1] if "--output-schema" in sys.argv else None
paths = images + ([schema] if schema else [])
mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)
with open(os.environ["REPORT"], "w") as f:
    json.dump({"files": {p: mode(p) for p in paths},
               "folders": sorted({mode(os.path.dirname(p)) for p in paths}),
               "argv": sys.argv[1:]}, f)
print(json.dumps({"type": "thread.started", "thread_id": "t1"}), flush=True)
if os.environ["MODE"] == "hang":
    time.sleep(600)
if os.environ["MODE"] == "fail":
    print(json.dumps({"type": "turn.failed", "error": {"message": "boom"}}), flush=True)
    sys.exit(1)
print(json.dumps({"type": "item.completed",
                  "item": {"id": "i", "type": "agent_message", "text": "ok"}}))
print(json.dumps({"type": "turn.completed", "usage": {"input_tokens": 1, "output_tokens": 1}}))
"""


def _runner(tmp_path: Path, mode: str) -> tuple[SubprocessBackendRunner, Path]:
    script = tmp_path / "codex"
    script.write_text(f"#!{sys.executable}\n{FAKE_CODEX}")
    script.chmod(0o755)
    report = tmp_path / "report.json"
    env = {"REPORT": str(report), "MODE": mode}
    config = Config(backends={"codex": BackendConfig(command=str(script), env=env)})
    return SubprocessBackendRunner(config), report


def _files_seen(report: Path) -> dict:
    seen = json.loads(report.read_text())
    assert seen["files"], "the CLI was given no files"
    return seen


def _files_seen_paths(tmp_path: Path) -> list[str]:
    report = tmp_path / "report.json"
    if not report.exists():
        return []
    seen = json.loads(report.read_text())
    return [*seen["files"], *{os.path.dirname(p) for p in seen["files"]}]


def _leftovers(tmp_path: Path) -> list[str]:
    """The files (and folder) the CLI was given that still exist."""
    return [p for p in _files_seen_paths(tmp_path) if os.path.exists(p)]


@pytest.mark.anyio
async def test_the_cli_gets_private_files_that_are_gone_after_the_run(tmp_path):
    """The CLI sees its images and schema as 0600 files in a 0700 folder; after the run
    they and the folder are gone."""
    runner, report = _runner(tmp_path, "ok")
    spec = _spec(tmp_path, images=(PNG, JPEG), output_schema=SCHEMA)
    result = await runner.run(spec)
    assert result.output == "ok"
    seen = _files_seen(report)
    assert set(seen["files"].values()) == {0o600} and seen["folders"] == [0o700]
    assert len(seen["files"]) == 3
    assert _leftovers(tmp_path) == []


@pytest.mark.anyio
async def test_files_are_gone_after_a_failed_run(tmp_path):
    """A CLI that fails still leaves no files behind."""
    runner, report = _runner(tmp_path, "fail")
    with pytest.raises(BackendFailed):
        await runner.run(_spec(tmp_path, images=(PNG,)))
    assert _files_seen(report)["folders"] == [0o700]
    assert _leftovers(tmp_path) == []


@pytest.mark.anyio
async def test_files_are_gone_after_a_cancelled_run(tmp_path):
    """Cancelling a run (client gone, shutdown) while the CLI holds the files removes them."""
    runner, report = _runner(tmp_path, "hang")
    started = anyio.Event()

    async def on_event(event) -> None:
        started.set()  # the CLI printed its first line: it has read its files by now

    async with anyio.create_task_group() as tg:
        tg.start_soon(runner.run, _spec(tmp_path, images=(PNG,)), on_event)
        await started.wait()
        assert _files_seen_paths(tmp_path) and all(map(os.path.exists,
                                                       _files_seen_paths(tmp_path)))
        tg.cancel_scope.cancel()
    assert _files_seen(report)["folders"] == [0o700]
    assert _leftovers(tmp_path) == []
