"""The model-API double, re-exported: it lives in `clinvk.adapters.demo.model_api` because
`clinvk serve --demo` runs it too. Run it alone with `python -m tests.support.model_double`."""

from __future__ import annotations

from clinvk.adapters.demo.model_api import (
    DEFAULT_KNOBS,
    ModelDouble,
    assistant_texts,
    classify,
    conversation,
    error_body,
    generation_requests,
    main,
    split_pieces,
    user_texts,
)

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

if __name__ == "__main__":
    main()
