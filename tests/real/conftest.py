"""Fixtures for tests that run the real backend CLIs against the model-API double."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.clis import backend_settings, cli_dir, missing_clis
from tests.support.model_double import ModelDouble


@pytest.fixture(scope="session")
def model_double() -> Iterator[ModelDouble]:
    """One double for the whole run; `_fresh_double` resets it around every test."""
    with ModelDouble() as double:
        yield double


@pytest.fixture(autouse=True)
def _fresh_double(model_double: ModelDouble) -> Iterator[None]:
    model_double.reset()
    yield
    model_double.reset()


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A per-test folder for the CLIs' homes, config and temp files."""
    path = tmp_path / "scratch"
    path.mkdir()
    return path


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A per-test cwd for the CLI runs, outside any git repo and outside the homes."""
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def cli_settings(model_double: ModelDouble, scratch: Path) -> dict[str, dict]:
    """backend_settings() for this test; fails (never skips) when the CLIs are missing."""
    missing = missing_clis()
    if missing:
        pytest.fail(
            f"backend CLIs not installed: {', '.join(missing)} (looked in {cli_dir()}); "
            "run scripts/install-clis.sh or set CLINVK_CLI_DIR",
            pytrace=False,
        )
    return backend_settings(model_double.url, scratch)


@pytest.fixture(scope="session")
def clinvk_server(model_double: ModelDouble, tmp_path_factory) -> Iterator[object]:
    """A real `clinvk serve` (subprocess) running the real CLIs against the model double."""
    from tests.support.server import ClinvkServer

    missing = missing_clis()
    if missing:
        pytest.fail(f"backend CLIs not installed: {', '.join(missing)}", pytrace=False)
    server = ClinvkServer(model_double.url, tmp_path_factory.mktemp("clinvk-server")).start()
    server.double = model_double
    yield server
    server.stop()
