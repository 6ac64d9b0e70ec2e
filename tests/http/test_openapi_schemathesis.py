"""schemathesis against /openapi.json: generated requests for every operation, on fakes."""

from __future__ import annotations

import tempfile

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from clinvk.adapters.http.app import create_app
from clinvk.adapters.metrics import Metrics
from clinvk.domain.config import Config, ServerConfig
from clinvk.entrypoints.bootstrap import bootstrap
from tests.fakes import FakeBackendRunner, FakeClock, FakeIds, FakeSessionStore


def _app():
    # The fakes only pretend to run, so the system temp dir is a fine default workdir.
    config = Config(server=ServerConfig(default_workdir=tempfile.gettempdir(), heartbeat_secs=0.2))
    metrics = Metrics()
    services = bootstrap(config, runner=FakeBackendRunner(), store=FakeSessionStore(),
                         clock=FakeClock(), ids=FakeIds(), metrics=metrics)
    return create_app(services, metrics=metrics)


#: All default checks (no 5xx, documented statuses, media types and headers, bodies and
#: SSE events matching their schemas, invalid data refused, 405 with Allow) except:
#: - positive_data_acceptance: some schema-valid requests are refused on purpose with a
#:   400 the schema cannot express (a backend must be a configured one, a prompt not blank);
#: - one known gap of the native dialect, for its own operation only: the sessions
#:   query is converted leniently (msgspec strict=False, so `status=null` reads as "not
#:   given").
CHECKS = """
[checks]
positive_data_acceptance.enabled = false

[[operations]]
include-path = "/api/v1/sessions"
include-method = "GET"
checks.negative_data_rejection.enabled = false
"""

# Loaded at import: schemathesis parametrizes the test by the document's operations.
schema = schemathesis.openapi.from_asgi(
    "/openapi.json", _app(), config=SchemathesisConfig.from_str(CHECKS)
)


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_generated_requests_never_get_a_server_error(case):
    """Every generated request gets a documented, schema-conforming answer and never a 5xx."""
    case.call_and_validate()
