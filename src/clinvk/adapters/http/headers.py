"""Response headers clinvk adds on every dialect."""

from __future__ import annotations

#: The clinvk session an answer belongs to (continue it with `session_id`).
SESSION_HEADER = "X-Clinvk-Session-Id"
#: Which backend answered (after a fallback, not the one the request or model name chose).
BACKEND_HEADER = "X-Clinvk-Backend"
