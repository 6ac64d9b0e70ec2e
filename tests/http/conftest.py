"""The HTTP app in-process, on fakes."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from clinvk.adapters.http.app import create_app


@pytest.fixture
def client(services):
    with TestClient(create_app(services)) as c:
        yield c
