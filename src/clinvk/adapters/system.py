"""System clock and id generator."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def monotonic(self) -> float:
        return time.monotonic()


class UuidIds:
    """Random UUID4 session ids."""

    def session_id(self) -> str:
        return uuid.uuid4().hex
