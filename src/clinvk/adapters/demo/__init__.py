"""`clinvk serve --demo`: the real CLIs against clinvk's own stand-in model API.

`DemoEnvironment` starts the stand-in (`model_api.ModelDouble`) on a free loopback port with
a labelled canned answer, makes a temporary folder for every bit of state (the CLIs' homes,
clinvk's sessions, the default workdir), and turns the CLI settings of `settings.py` into
config overrides. Leaving the `with` block stops the stand-in and removes the folder.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from clinvk.adapters.demo.model_api import ModelDouble
from clinvk.adapters.demo.settings import CLI_NAMES, backend_settings

__all__ = ["DEMO_LABEL", "DEMO_REPLY", "DemoEnvironment"]

#: Every demo answer starts with this, so nobody mistakes it for a model's.
DEMO_LABEL = "[clinvk demo] "
DEMO_REPLY = (
    DEMO_LABEL + "This is a canned answer from clinvk's stand-in model API; no model was "
    "asked. Run `clinvk serve` without --demo to use your own accounts."
)
#: Model calls the stand-in remembers (a long-running demo must not grow without bound).
_LOG_LIMIT = 20


class DemoEnvironment:
    """The stand-in model API and a throwaway folder, for as long as the `with` block runs."""

    def __init__(self, *, reply: str = DEMO_REPLY) -> None:
        self._reply = reply
        self._double: ModelDouble | None = None
        self.folder: Path | None = None

    def __enter__(self) -> Self:
        self.folder = Path(tempfile.mkdtemp(prefix="clinvk-demo-"))
        try:
            self._double = ModelDouble(reply=self._reply, log_limit=_LOG_LIMIT).start()
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._double is not None:
            self._double.stop()
            self._double = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    @property
    def url(self) -> str:
        """Base URL of the stand-in model API."""
        assert self._double is not None, "use DemoEnvironment in a `with` block"
        return self._double.url

    def overrides(self, commands: Mapping[str, str]) -> dict[str, Any]:
        """Dotted config keys that point every backend at the stand-in.

        `commands` maps a backend to its executable; a backend without one keeps clinvk's
        own search. The backends' `env` and `extra_flags` are replaced, not merged: a
        setting meant for the real API could send a CLI elsewhere.
        """
        assert self.folder is not None, "use DemoEnvironment in a `with` block"
        clis = self.folder / "clis"
        work = self.folder / "work"
        clis.mkdir(exist_ok=True)
        work.mkdir(exist_ok=True)
        settings = backend_settings(self.url, clis, commands)
        out: dict[str, Any] = {
            "home": str(self.folder / "clinvk-home"),
            "server.default_workdir": str(work),
        }
        for name in CLI_NAMES:
            s = settings[name]
            out[f"backends.{name}.command"] = s["command"]
            out[f"backends.{name}.env"] = s["env"]
            out[f"backends.{name}.extra_flags"] = s["extra_flags"]
            if s["model"] is not None:
                out[f"backends.{name}.model"] = s["model"]
        return out
