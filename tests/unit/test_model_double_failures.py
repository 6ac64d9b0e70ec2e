"""The model double fails the calls a test picks, the way each real API answers."""

from __future__ import annotations

import httpx
import pytest

from tests.support.model_double import ModelDouble

CALLS = {
    "anthropic": ("/v1/messages", {"model": "m", "max_tokens": 5, "messages": []}),
    "openai": ("/v1/responses", {"model": "m", "input": "hi"}),
    "gemini": ("/v1beta/models/gemini-2.5-flash:generateContent", {"contents": []}),
}


def call(double: ModelDouble, api: str) -> httpx.Response:
    path, body = CALLS[api]
    return httpx.post(double.url + path, json=body, timeout=30)


def test_fail_apis_fails_only_that_apis_calls():
    """With fail_apis=["anthropic"], claude's API answers 429 and the others answer."""
    with ModelDouble(fail_status=429, fail_apis="anthropic") as double:
        assert call(double, "anthropic").status_code == 429
        assert call(double, "openai").status_code == 200
        assert call(double, "gemini").status_code == 200
        assert [r["api"] for r in double.requests()] == ["anthropic", "openai", "gemini"]


@pytest.mark.parametrize(
    ("api", "status", "error_type", "body"),
    [
        ("anthropic", 429, None, {"type": "error", "error": {
            "type": "rate_limit_error", "message": "injected 429"}}),
        ("anthropic", 529, None, {"type": "error", "error": {
            "type": "overloaded_error", "message": "injected 529"}}),
        ("openai", 429, None, {"error": {"message": "injected 429", "type": "rate_limit_exceeded",
                                         "param": None, "code": "rate_limit_exceeded"}}),
        ("openai", 429, "insufficient_quota", {"error": {
            "message": "injected 429", "type": "insufficient_quota", "param": None,
            "code": "insufficient_quota"}}),
        ("gemini", 429, None, {"error": {"code": 429, "message": "injected 429",
                                         "status": "RESOURCE_EXHAUSTED"}}),
        ("gemini", 503, None, {"error": {"code": 503, "message": "injected 503",
                                         "status": "UNAVAILABLE"}}),
    ],
)
def test_each_api_fails_in_its_own_shape(api, status, error_type, body):
    """Error bodies follow each API's envelope and error type for the status."""
    with ModelDouble(fail_status=status, fail_error=error_type) as double:
        answer = call(double, api)
    assert answer.status_code == status
    assert answer.json() == body


def test_reset_headers_extra_fields_and_message():
    """fail_headers are sent with the failure; fail_extra fields join the error object."""
    retry_info = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}
    headers = {"retry-after": "37", "anthropic-ratelimit-requests-reset": "2030-01-01T00:00:00Z"}
    with ModelDouble(fail_status=429, fail_headers=headers, fail_message="slow down",
                     fail_extra={"details": [retry_info]}) as double:
        answer = call(double, "gemini")
    assert answer.headers["retry-after"] == "37"
    assert answer.headers["anthropic-ratelimit-requests-reset"] == "2030-01-01T00:00:00Z"
    assert answer.json()["error"]["message"] == "slow down"
    assert answer.json()["error"]["details"] == [retry_info]


def test_fail_calls_fails_only_the_first_calls():
    """fail_calls=2: two failures, then answers; setting a fail knob starts the count again."""
    with ModelDouble(fail_status=500, fail_calls=2) as double:
        assert [call(double, "openai").status_code for _ in range(3)] == [500, 500, 200]
        double.set(fail_calls=1)
        assert [call(double, "openai").status_code for _ in range(2)] == [500, 200]


def test_unknown_api_names_are_refused():
    """A misspelt API in fail_apis is an error, not a knob that silently fails nothing."""
    with pytest.raises(ValueError, match="fail_apis"):
        ModelDouble(fail_apis=["claude"])
