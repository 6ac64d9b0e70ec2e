"""The route template a request matches (`/api/v1/sessions/{session_id}`), for metrics
labels and log lines: bounded in number, unlike raw paths, and free of ids."""

from __future__ import annotations

import re
from collections.abc import Sequence

from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import Scope

UNMATCHED = "unmatched"
_CONVERTER = re.compile(r"\{([^}:]+):[^}]+\}")


def template(path: str) -> str:
    """A Starlette path with its converters dropped: `{id:path}` -> `{id}`."""
    return _CONVERTER.sub(r"{\1}", path)


def route_template(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The template of the route whose path `scope` matches (any method), or `unmatched`."""
    if scope.get("type") != "http":
        return UNMATCHED
    probe = dict(scope)
    prefix = ""
    current: Sequence[BaseRoute] = routes
    while True:
        for route in current:
            match, child = route.matches(probe)
            if match == Match.NONE:
                continue  # PARTIAL (path matches, method does not) still names the route
            if isinstance(route, Mount):
                prefix += route.path
                probe.update(child)
                current = route.routes
                break
            if isinstance(route, Route):
                return template(prefix + route.path)
            return UNMATCHED
        else:
            return UNMATCHED
