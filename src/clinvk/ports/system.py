"""Ports: time and identifiers, so services stay deterministic under test."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class Clock(Protocol):
    """Wall-clock and monotonic time."""

    def now(self) -> datetime:
        """Current UTC time."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary start; only differences matter."""
        ...


class IdGenerator(Protocol):
    """New unique identifiers."""

    def session_id(self) -> str:
        """A new clinvk session id."""
        ...
