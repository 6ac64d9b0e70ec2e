"""/openapi.json: generated from the msgspec types, valid, and covering every route."""

from __future__ import annotations

import re

import msgspec
import pytest
from openapi_spec_validator import validate
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from clinvk.adapters.http.app import create_app
from clinvk.adapters.http.native.schemas import NativePromptRequest
from clinvk.adapters.http.openapi import _PARAM
from clinvk.adapters.metrics import Metrics


@pytest.fixture
def full_app(services):
    """The app with every optional route (metrics) switched on."""
    return create_app(services, metrics=Metrics())


@pytest.fixture
def document(full_app):
    with TestClient(full_app) as client:
        r = client.get("/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    return r.json()


def served_operations(routes, prefix: str = "") -> set[tuple[str, str]]:
    """(METHOD, path template) of every route the app serves (static files excepted)."""
    found = set()
    for route in routes:
        if isinstance(route, Mount):
            found |= served_operations(route.routes, prefix + route.path)
        elif isinstance(route, Route) and route.include_in_schema:
            path = _PARAM.sub(r"{\1}", prefix + route.path)
            found |= {(m, path) for m in route.methods or () if m != "HEAD"}
    return found


def test_the_document_is_valid_openapi(document):
    """openapi-spec-validator accepts the document as OpenAPI 3.1."""
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_every_route_of_every_dialect_is_described(full_app, document):
    """Each route the app serves (all three dialects and the meta endpoints) is in the
    document, and nothing in the document is not served."""
    described = {(m.upper(), p) for p, item in document["paths"].items() for m in item}
    assert described == served_operations(full_app.routes)
    prefixes = {p.split("/")[1] for p in document["paths"]}
    assert {"api", "openai", "anthropic", "health", "metrics", "docs"} <= prefixes


def test_body_schemas_are_the_msgspec_types(document):
    """Component schemas are msgspec's own JSON Schema of the wire types, not hand-written."""
    (_,), expected = msgspec.json.schema_components(
        [NativePromptRequest], ref_template="#/components/schemas/{name}"
    )
    schemas = document["components"]["schemas"]
    assert schemas["NativePromptRequest"] == expected["NativePromptRequest"]
    assert {"tools", "tool_choice", "builtin_tools", "tool_results"} <= set(
        schemas["NativePromptRequest"]["properties"])
    prompt = document["paths"]["/api/v1/prompt"]["post"]
    assert prompt["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/NativePromptRequest"
    }
    chat = document["paths"]["/openai/v1/chat/completions"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/OpenAIChatRequest"
    )


@pytest.mark.parametrize(("path", "method", "media", "schema"), [
    ("/api/v1/prompt", "post", "application/problem+json", "Problem"),
    ("/openai/v1/chat/completions", "post", "application/json", "OpenAIError"),
    ("/anthropic/v1/messages", "post", "application/json", "AnthropicError"),
])
def test_errors_are_described_in_each_dialects_envelope(document, path, method, media, schema):
    """Error statuses (including the middleware's 401/413/429) use the dialect's envelope."""
    responses = document["paths"][path][method]["responses"]
    for status in ("400", "401", "413", "429", "504"):
        assert responses[status]["content"][media]["schema"]["$ref"].endswith("/" + schema)


def test_streams_are_described_per_event(document):
    """Streaming answers are described event by event: SSE data as JSON of the chunk type."""
    ok = document["paths"]["/openai/v1/chat/completions"]["post"]["responses"]["200"]
    data = ok["content"]["text/event-stream"]["schema"]["properties"]["data"]
    assert {"const": "[DONE]"} in data["anyOf"]
    assert any(o.get("contentSchema", {}).get("$ref", "").endswith("/OpenAIChatCompletionChunk")
               for o in data["anyOf"])
    ndjson = document["paths"]["/api/v1/prompt"]["post"]["responses"]["200"]["content"]
    assert ndjson["application/x-ndjson"]["x-item-schema"]["$ref"].endswith("/StreamLine")


def test_security_follows_the_key_setting(services, document):
    """Keys are optional in the document when auth is off, required when it is on;
    /health is always public."""
    assert {} in document["security"]
    with TestClient(create_app(services, api_keys=["k"])) as client:
        keyed = client.get("/openapi.json", headers={"X-Api-Key": "k"}).json()
    assert {} not in keyed["security"]
    assert keyed["paths"]["/health"]["get"]["security"] == []


def test_the_docs_page_and_its_assets_are_served_locally(client):
    """/docs, its script and its style come from clinvk itself, with a strict CSP: no CDN."""
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sorted(assets) == ["/docs/docs.css", "/docs/docs.js", "/openapi.json"]
    for asset, kind in (("/docs/docs.js", "text/javascript"), ("/docs/docs.css", "text/css")):
        r = client.get(asset)
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind)
        assert "http://" not in r.text and "https://" not in r.text
