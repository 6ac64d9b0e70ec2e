"""The model-API double, re-exported: it lives in `clinvk.adapters.demo.model_api` because
`clinvk serve --demo` runs it too. Run it alone with `python -m tests.support.model_double`.

The tests get a subclass with two holds, so a real-tier test can order events by cause
instead of by sleeping "long enough" (see `ModelDouble` below).
"""

from __future__ import annotations

import threading
from typing import Any

from clinvk.adapters.demo.model_api import (
    DEFAULT_KNOBS,
    assistant_texts,
    classify,
    conversation,
    error_body,
    generation_requests,
    main,
    split_pieces,
    user_texts,
)
from clinvk.adapters.demo.model_api import ModelDouble as _ModelDouble

__all__ = [
    "DEFAULT_KNOBS",
    "ModelDouble",
    "assistant_texts",
    "classify",
    "conversation",
    "error_body",
    "generation_requests",
    "main",
    "split_pieces",
    "user_texts",
]

_GENERATION = ("generate", "stream")


class _HoldingHandler:
    """Mixed into the double's request handler: streamed answers can stop after N pieces."""

    double: ModelDouble

    def _model_call(self, method: str, body: Any) -> None:
        self._pieces = 0  # one handler serves several calls on a keep-alive connection
        super()._model_call(method, body)  # type: ignore[misc]

    def _pause(self, seconds: float) -> None:
        # Called before every streamed piece (and once before a whole non-streamed answer).
        self.double._hold_piece(self._pieces)
        self._pieces += 1
        super()._pause(seconds)  # type: ignore[misc]


class ModelDouble(_ModelDouble):
    """The double plus two holds for tests; reset() and stop() release and clear both.

    - `hold_until(*apis, calls=0, unrouted=False)`: every generation call (and, with
      `unrouted`, every call no route matches) waits after it is logged until each API in
      `apis` has made a generation call and at least `calls` generation calls were made.
      With all three APIs a run can only get an answer once all three CLIs were waiting on
      the model at the same moment: concurrency by cause, not by clock.
    - `hold_after(n)`: every streamed answer stops after its first `n` pieces until
      `release()`, so a test sees partial output while the rest is certainly still to come.

    And `reply_for(api=text, ...)` gives one API its own reply (the `reply` knob is shared).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cond = threading.Condition(self._lock)
        self._epoch = 0  # bumped by reset() and stop(): every hold of the old epoch lets go
        self._gate: tuple[frozenset[str], int, bool] | None = None
        self._after: int | None = None
        self._released = False
        self._replies: dict[str, str] = {}
        self._local = threading.local()

    # -- what a test calls ----------------------------------------------------------------

    def hold_until(self, *apis: str, calls: int = 0, unrouted: bool = False) -> None:
        with self._cond:
            self._gate = (frozenset(apis), calls, unrouted)
            self._cond.notify_all()

    def hold_after(self, pieces: int) -> None:
        with self._cond:
            self._after, self._released = pieces, False

    def reply_for(self, **replies: str) -> None:
        """Answer calls to these APIs ("anthropic", "openai", "gemini") with these texts."""
        with self._cond:
            self._replies.update(replies)

    def release(self) -> None:
        """Let every answer stopped by hold_after() go on (and later ones not stop)."""
        with self._cond:
            self._released = True
            self._cond.notify_all()

    def reset(self) -> None:
        super().reset()
        with self._cond:
            self._gate, self._after, self._released = None, None, False
            self._replies = {}
            self._epoch += 1
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._epoch += 1
            self._cond.notify_all()
        super().stop()

    # -- the machinery --------------------------------------------------------------------

    def start(self) -> ModelDouble:
        super().start()
        assert self._server is not None
        base = self._server.RequestHandlerClass
        self._server.RequestHandlerClass = type("HoldingHandler", (_HoldingHandler, base), {})
        return self

    def _gate_open(self) -> bool:
        assert self._gate is not None
        apis, calls, _ = self._gate
        made = [r["api"] for r in self._log if r["kind"] in _GENERATION]
        return apis <= set(made) and len(made) >= calls

    def _log_call(self, method: str, path: str, api: str | None, kind: str, body: Any,
                  headers: dict) -> dict:
        knobs = super()._log_call(method, path, api, kind, body, headers)
        with self._cond:
            self._cond.notify_all()  # this call may be the one a held call waits for
            if api in self._replies:
                knobs["reply"] = self._replies[api]
            epoch = self._epoch
            self._local.epoch, self._local.after = epoch, self._after
            gate = self._gate
            if gate is not None and (kind in _GENERATION or (gate[2] and api is None)):
                self._cond.wait_for(lambda: self._epoch != epoch or self._gate is None
                                    or self._gate_open())
        return knobs

    def _hold_piece(self, index: int) -> None:
        """Block the handler thread before piece `index` when hold_after() says so."""
        after, epoch = getattr(self._local, "after", None), getattr(self._local, "epoch", 0)
        if after is None or index != after:
            return
        with self._cond:
            self._cond.wait_for(lambda: self._released or self._epoch != epoch)


if __name__ == "__main__":
    main()
