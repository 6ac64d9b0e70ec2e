"""Summaries of samples: percentiles, medians and the per-variant figures the report shows."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from bench.clients import Sample


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) with linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def stdev(values: Sequence[float]) -> float | None:
    return statistics.stdev(values) if len(values) > 1 else None


def summarize(samples: list[Sample]) -> dict[str, Any]:
    """p50/p95 of the totals, first/last text, and the text chunk counts of good samples."""
    good = [s for s in samples if s.error is None]
    firsts = [s.first_text for s in good if s.first_text is not None]
    lasts = [s.last_text for s in good if s.last_text is not None]
    calls = [s for s in good if s.model_call is not None and s.first_text is not None]
    return {
        "n": len(samples),
        "errors": [s.error for s in samples if s.error is not None][:5],
        "error_count": len(samples) - len(good),
        "total_p50": percentile([s.total for s in good], 50),
        "total_p95": percentile([s.total for s in good], 95),
        "total_sd": stdev([s.total for s in good]),
        "first_text_sd": stdev(firsts),
        "first_text_p50": percentile(firsts, 50),
        "first_text_p95": percentile(firsts, 95),
        "last_text_p50": percentile(lasts, 50),
        # First text = model call (spawn + CLI start-up) + after the model call (the
        # double's 50 ms, the CLI's parsing, clinvk's relay): the second part is steady.
        "model_call_p50": percentile([s.model_call for s in calls], 50),
        "after_model_p50": percentile([s.first_text - s.model_call for s in calls], 50),
        "after_model_sd": stdev([s.first_text - s.model_call for s in calls]),
        "text_events_median": median([s.text_events for s in good]),
        "text_events_min": min((s.text_events for s in good), default=None),
        "text_chunks_median": median([s.text_chunks for s in good]),
        "text_chunks_min": min((s.text_chunks for s in good), default=None),
        # Runs in which every piece of text came in a body chunk of its own.
        "own_chunk_runs": sum(s.text_chunks == s.text_events for s in good),
        "min_gap_ms": min((s.min_gap * 1000 for s in good if s.min_gap is not None),
                          default=None),
        "totals": [round(s.total, 4) for s in samples],
        "first_texts": [round(s.first_text, 4) if s.first_text is not None else None
                        for s in samples],
    }
