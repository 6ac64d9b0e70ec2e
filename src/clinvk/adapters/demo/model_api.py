"""A local stand-in for the Anthropic, OpenAI Responses and Gemini model APIs.

The real `claude`, `codex` and `gemini` CLIs are pointed at this server (via their base-URL
settings, see `clinvk.adapters.demo.settings`) so they run end to end without a network or
keys: the real-CLI tests use it, and so does `clinvk serve --demo`. It answers every
generation call with fixed text (`w0 w1 ...` or a chosen reply), streams it piece by piece,
and records model calls so a test can check what the CLI actually sent (the prompt
verbatim, the earlier turns of a resumed session).

Knobs (constructor kwargs, CLI flags, or `POST /_control` at runtime):
  words, delay_ms, fail_status, hang, reply, input_tokens  -- see DEFAULT_KNOBS;
  fail_apis, fail_headers, fail_error, fail_message, fail_extra, fail_calls shape an
  injected failure as one API would send it (a 429 with `retry-after`, an Anthropic 529
  `overloaded_error`, an OpenAI `insufficient_quota`, a Gemini `RESOURCE_EXHAUSTED` with
  `RetryInfo`), for the calls of one CLI only if asked;
  tool_use makes a call that offers that tool (any of the three APIs) call it, and answers
  the call that carries its result with the result's text (an agent CLI as an MCP client).
Control endpoints: GET/POST /_control, POST /_reset, GET/DELETE /_log.

Stdlib only: the test suite and the demo need nothing else to run it.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import socket
import socketserver
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import urlsplit

DEFAULT_KNOBS: dict[str, Any] = {
    "words": 5,  # reply is "w0 w1 ... w{words-1}" unless `reply` is set
    "delay_ms": 0,  # slept before every streamed piece, so streaming is observable
    "fail_status": None,  # every model call answers this HTTP status with an error body
    "hang": False,  # read the request, log it, then never answer (until stop())
    "reply": None,  # fixed reply text instead of the generated words
    "input_tokens": 7,  # reported prompt token count; output tokens = number of pieces
    # Shaping an injected failure (only used while fail_status is set):
    "fail_apis": None,  # fail only the calls of these APIs ("anthropic", "openai", "gemini")
    "fail_headers": None,  # extra headers on the failure, e.g. {"retry-after": "30"}
    "fail_error": None,  # the error type in the body (default: the API's own for the status)
    "fail_message": None,  # the error message (default: "injected <status>")
    "fail_extra": None,  # fields added to the body's error object ({"details": [RetryInfo]})
    "fail_calls": None,  # fail only this many calls, then answer normally (None: all)
    # {"name": ..., "input": {...}}: a call whose tools offer `name` is answered with a call
    # to it; the next call, carrying its result, with the result's text.
    # A list of such calls is made at once, in one answer (parallel tool calls); a Responses
    # tool in a namespace (codex's `mcp__<server>` holding `<tool>`) is asked for as
    # `mcp__<server>__<tool>`.
    "tool_use": None,
}

#: Knobs that start a new failure: setting any of them restarts the `fail_calls` count.
_FAIL_KNOBS = frozenset(k for k in DEFAULT_KNOBS if k.startswith("fail_"))
_APIS = ("anthropic", "openai", "gemini")

# Gemini paths look like /v1beta/models/gemini-2.5-flash:streamGenerateContent
_GEMINI_RE = re.compile(r"^/v1(?:beta|alpha)?/models/([^/:]+):(\w+)$")


def _check_knobs(knobs: dict) -> None:
    unknown = set(knobs) - set(DEFAULT_KNOBS)
    if unknown:
        raise ValueError(f"unknown knobs: {sorted(unknown)}")
    apis = knobs.get("fail_apis")
    if apis is not None:
        names = [apis] if isinstance(apis, str) else list(apis)
        if not set(names) <= set(_APIS):
            raise ValueError(f"fail_apis: {names!r}; known APIs: {', '.join(_APIS)}")
        knobs["fail_apis"] = names


def split_pieces(text: str) -> list[str]:
    """Split text into the streamed pieces: "a b  c" -> ["a", " b", "  c"].

    Whitespace is kept with the word that follows it (trailing whitespace with the last
    piece), so "".join(pieces) == text and a test can compare the CLI's output verbatim.
    """
    pieces = re.findall(r"\s*\S+(?:\s+\Z)?", text)
    return pieces or ([text] if text else [])


def classify(path: str) -> tuple[str | None, str]:
    """Map a request path to (api, kind); kind is generate, stream, count_tokens or other."""
    p = urlsplit(path).path.rstrip("/")
    if p == "/v1/messages":
        return "anthropic", "generate"
    if p == "/v1/messages/count_tokens":
        return "anthropic", "count_tokens"
    if p == "/v1/responses":
        return "openai", "generate"
    m = _GEMINI_RE.match(p)
    if m:
        kind = {"streamGenerateContent": "stream", "generateContent": "generate",
                "countTokens": "count_tokens"}.get(m.group(2), "other")
        return "gemini", kind
    return None, "other"


# ---------------------------------------------------------------------------------------
# Helpers for tests that inspect the request log.


def _texts(content: Any) -> list[str]:
    """Text parts of a message content in any of the three APIs' shapes."""
    if isinstance(content, str):
        return [content]
    out: list[str] = []
    for part in content or []:
        if isinstance(part, str):
            out.append(part)
        elif isinstance(part, dict) and isinstance(part.get("text"), str):
            out.append(part["text"])  # anthropic text / openai input_text / gemini part
    return out


def conversation(request: dict) -> list[tuple[str, str]]:
    """(role, text) pairs of a logged request's conversation, oldest first.

    Covers Anthropic `messages`, OpenAI Responses `input` and Gemini `contents`; roles are
    "user" and "assistant" (Gemini's "model" is mapped). Top-level system prompts and codex
    `developer` items are left out. Claude 2.1.197 also puts a role "system" message inside
    `messages` (its agent list); that one is kept, with role "system".
    """
    body = request.get("body")
    if not isinstance(body, dict):
        return []
    out: list[tuple[str, str]] = []
    if isinstance(body.get("messages"), list):  # anthropic
        for msg in body["messages"]:
            out += [(msg.get("role", ""), t) for t in _texts(msg.get("content"))]
    elif "input" in body:  # openai responses
        items = body["input"]
        if isinstance(items, str):
            items = [{"type": "message", "role": "user", "content": items}]
        for item in items:
            role = item.get("role")
            if item.get("type", "message") == "message" and role in ("user", "assistant"):
                out += [(role, t) for t in _texts(item.get("content"))]
    elif isinstance(body.get("contents"), list):  # gemini
        for c in body["contents"]:
            role = "assistant" if c.get("role") == "model" else c.get("role", "user")
            out += [(role, t) for t in _texts(c.get("parts"))]
    return out


def user_texts(request: dict) -> list[str]:
    """All user-authored text parts of a logged request (includes CLI-injected context)."""
    return [t for role, t in conversation(request) if role == "user"]


def assistant_texts(request: dict) -> list[str]:
    """All assistant/model text parts of a logged request (earlier turns of a session)."""
    return [t for role, t in conversation(request) if role == "assistant"]


def generation_requests(requests: list[dict]) -> list[dict]:
    """Only the calls that asked the model for an answer (no count_tokens or other calls)."""
    return [r for r in requests if r.get("kind") in ("generate", "stream")]


# ---------------------------------------------------------------------------------------
# Response shapes, one set per API.

_ANTHROPIC_ERR = {400: "invalid_request_error", 401: "authentication_error",
                  403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                  429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}
_OPENAI_ERR = {401: "invalid_api_key", 429: "rate_limit_exceeded"}
_GOOGLE_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                  404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE"}


def error_body(
    api: str | None, status: int, message: str, *, error_type: str | None = None,
    extra: dict | None = None,
) -> dict:
    """An error answer in `api`'s own shape; `error_type` replaces the type the API would
    use for `status` (Anthropic `overloaded_error`, OpenAI `insufficient_quota`, Google
    `RESOURCE_EXHAUSTED`); `extra` fields are added to the error object (Google's
    `details` with a RetryInfo, OpenAI's `resets_in_seconds` ...)."""
    body: dict
    if api == "anthropic":
        body = {"type": "error", "error": {
            "type": error_type or _ANTHROPIC_ERR.get(status, "api_error"), "message": message}}
    elif api == "gemini":
        body = {"error": {"code": status, "message": message,
                          "status": error_type or _GOOGLE_STATUS.get(status, "INTERNAL")}}
    else:
        kind = error_type or _OPENAI_ERR.get(status) or (
            "server_error" if status >= 500 else "invalid_request_error")
        body = {"error": {"message": message, "type": kind, "param": None,
                          "code": kind if status == 429 or error_type else None}}
    body["error"].update(extra or {})
    return body


def _anthropic_events(model: str, pieces: list[str], usage_in: int):
    """(event name, data) pairs of a Messages stream with one text_delta per piece."""
    msg = {"id": "msg_" + uuid.uuid4().hex[:20], "type": "message", "role": "assistant",
           "content": [], "model": model, "stop_reason": None, "stop_sequence": None,
           "usage": {"input_tokens": usage_in, "output_tokens": 1}}
    yield "message_start", {"type": "message_start", "message": msg}
    yield "content_block_start", {"type": "content_block_start", "index": 0,
                                  "content_block": {"type": "text", "text": ""}}
    for piece in pieces:
        yield "content_block_delta", {"type": "content_block_delta", "index": 0,
                                      "delta": {"type": "text_delta", "text": piece}}
    yield "content_block_stop", {"type": "content_block_stop", "index": 0}
    yield "message_delta", {"type": "message_delta",
                            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                            "usage": {"output_tokens": len(pieces)}}
    yield "message_stop", {"type": "message_stop"}


def _anthropic_tool_events(model: str, calls: list[dict], usage_in: int):
    """(event name, data) pairs of a Messages stream that calls each tool of `calls`
    ({"name", "input"}) in one message."""
    msg = {"id": "msg_" + uuid.uuid4().hex[:20], "type": "message", "role": "assistant",
           "content": [], "model": model, "stop_reason": None, "stop_sequence": None,
           "usage": {"input_tokens": usage_in, "output_tokens": 1}}
    yield "message_start", {"type": "message_start", "message": msg}
    for index, call in enumerate(calls):
        block = {"type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:20],
                 "name": call["name"], "input": {}}
        yield "content_block_start", {"type": "content_block_start", "index": index,
                                      "content_block": block}
        yield "content_block_delta", {"type": "content_block_delta", "index": index, "delta": {
            "type": "input_json_delta", "partial_json": json.dumps(call.get("input") or {})}}
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    yield "message_delta", {"type": "message_delta",
                            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                            "usage": {"output_tokens": 1}}
    yield "message_stop", {"type": "message_stop"}


def _last(items: Any) -> Any:
    return items[-1] if isinstance(items, list) and items else None


def _tool_result_text(api: str, request: dict) -> str | None:
    """The text of the tool results the request ends with (Anthropic tool_result blocks,
    OpenAI function_call_output items, Gemini functionResponse parts); None without any."""
    if api == "anthropic":
        last = _last(request.get("messages"))
        content = last.get("content") if isinstance(last, dict) else None
        results = [b for b in content or [] if isinstance(b, dict)
                   and b.get("type") == "tool_result"]
        return "".join("".join(_texts(b.get("content"))) for b in results) if results else None
    if api == "openai":
        items = request.get("input") if isinstance(request.get("input"), list) else []
        outputs = []
        for item in reversed(items):  # the outputs the input ends with, in their order
            if not (isinstance(item, dict) and item.get("type") == "function_call_output"):
                break
            output = item.get("output")
            outputs.insert(0, output if isinstance(output, str) else "".join(_texts(output)))
        return "".join(outputs) if outputs else None
    last = _last(request.get("contents"))
    parts = last.get("parts") if isinstance(last, dict) else None
    results = [p["functionResponse"] for p in parts or [] if isinstance(p, dict)
               and isinstance(p.get("functionResponse"), dict)]
    return "".join(json.dumps(r.get("response")) for r in results) if results else None


def _offers_tool(api: str, request: dict, name: str) -> bool:
    return _tool_fields(api, request, name) is not None


def _tool_fields(api: str, request: dict, name: str) -> dict | None:
    """How a call of tool `name` names it, when the request offers it: {"name": name}, or
    for a Responses namespace (codex's MCP tools: `mcp__<server>` holding `<tool>`, asked
    for as `mcp__<server>__<tool>`) {"name": tool, "namespace": ns}."""
    tools = request.get("tools")
    tools = list(tools) if isinstance(tools, list) else []
    if api == "openai" and isinstance(request.get("input"), list):
        # A "lite" Responses request (codex's newest models) offers tools in an input
        # item of type additional_tools instead.
        tools += [t for item in request["input"] if isinstance(item, dict)
                  and item.get("type") == "additional_tools" for t in item.get("tools") or []]
    if api == "gemini":
        tools = [f for t in tools if isinstance(t, dict)
                 for f in t.get("functionDeclarations") or []]
    for tool in tools:
        if not isinstance(tool, dict):
            continue
        if tool.get("name") == name and tool.get("type") != "namespace":
            return {"name": name}
        if api == "openai" and tool.get("type") == "namespace":
            for inner in tool.get("tools") or []:
                if isinstance(inner, dict) and f"{tool.get('name')}__{inner.get('name')}" == name:
                    return {"name": inner["name"], "namespace": tool["name"]}
    return None


def _openai_tool_events(model: str, calls: list[dict], usage_in: int):
    """The Responses API event sequence of function calls made at once (each of `calls`
    is {"name", "input"} plus the `fields` naming it, see _tool_fields)."""
    resp_id = "resp_" + uuid.uuid4().hex[:20]
    base = {"id": resp_id, "object": "response", "created_at": int(time.time()),
            "model": model, "status": "in_progress", "output": []}
    yield "response.created", {"response": base}
    items = []
    for index, call in enumerate(calls):
        args = json.dumps(call.get("input") or {})
        item = {"id": "fc_" + uuid.uuid4().hex[:20], "type": "function_call",
                "status": "completed", "call_id": "call_" + uuid.uuid4().hex[:20],
                **call.get("fields", {"name": call["name"]}), "arguments": args}
        items.append(item)
        yield "response.output_item.added", {"output_index": index, "item": {
            **item, "status": "in_progress", "arguments": ""}}
        yield "response.function_call_arguments.delta", {"item_id": item["id"],
                                                         "output_index": index, "delta": args}
        yield "response.function_call_arguments.done", {"item_id": item["id"],
                                                        "output_index": index, "arguments": args}
        yield "response.output_item.done", {"output_index": index, "item": item}
    usage = {"input_tokens": usage_in, "input_tokens_details": {"cached_tokens": 0},
             "output_tokens": 1, "output_tokens_details": {"reasoning_tokens": 0},
             "total_tokens": usage_in + 1}
    yield "response.completed", {"response": {**base, "status": "completed", "output": items,
                                              "usage": usage}}


def _gemini_call_chunk(model: str, calls: list[dict], usage_in: int) -> dict:
    """One (last) Gemini chunk whose parts call each function of `calls`."""
    parts = [{"functionCall": {"name": c["name"], "args": c.get("input") or {}}} for c in calls]
    cand = {"content": {"parts": parts, "role": "model"}, "finishReason": "STOP", "index": 0}
    return {"candidates": [cand], "modelVersion": model, "usageMetadata": {
        "promptTokenCount": usage_in, "candidatesTokenCount": 1,
        "totalTokenCount": usage_in + 1}}


def _openai_events(model: str, pieces: list[str], usage_in: int):
    """The event sequence the real Responses API sends for a single text message.

    codex only strictly needs created / output_item.done / completed, but the full set
    keeps the double honest if codex starts reading the intermediate events.
    """
    resp_id, item_id = "resp_" + uuid.uuid4().hex[:20], "msg_" + uuid.uuid4().hex[:20]
    text = "".join(pieces)
    base = {"id": resp_id, "object": "response", "created_at": int(time.time()),
            "model": model, "status": "in_progress", "output": []}
    part = {"type": "output_text", "text": text, "annotations": []}
    item = {"id": item_id, "type": "message", "status": "completed", "role": "assistant",
            "content": [part]}
    loc = {"item_id": item_id, "output_index": 0, "content_index": 0}
    yield "response.created", {"response": base}
    yield "response.in_progress", {"response": base}
    yield "response.output_item.added", {"output_index": 0, "item": {
        **item, "status": "in_progress", "content": []}}
    yield "response.content_part.added", {**loc, "part": {**part, "text": ""}}
    for piece in pieces:
        yield "response.output_text.delta", {**loc, "delta": piece}
    yield "response.output_text.done", {**loc, "text": text}
    yield "response.content_part.done", {**loc, "part": part}
    yield "response.output_item.done", {"output_index": 0, "item": item}
    usage = {"input_tokens": usage_in, "input_tokens_details": {"cached_tokens": 0},
             "output_tokens": len(pieces), "output_tokens_details": {"reasoning_tokens": 0},
             "total_tokens": usage_in + len(pieces)}
    yield "response.completed", {"response": {**base, "status": "completed", "output": [item],
                                              "usage": usage}}


def _gemini_chunk(model: str, text: str, last: bool, n_pieces: int, usage_in: int) -> dict:
    cand: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
    chunk: dict[str, Any] = {"candidates": [cand], "modelVersion": model}
    if last:
        cand["finishReason"] = "STOP"
        chunk["usageMetadata"] = {"promptTokenCount": usage_in, "candidatesTokenCount": n_pieces,
                                  "totalTokenCount": usage_in + n_pieces}
    return chunk


# ---------------------------------------------------------------------------------------
# The server.


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 so the CLIs can keep connections alive like they would with the real APIs;
    # streams use chunked encoding so every piece is flushed on its own.
    protocol_version = "HTTP/1.1"
    double: ModelDouble  # set on the per-instance subclass made by ModelDouble.start()

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def setup(self) -> None:
        super().setup()
        self.double._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.double._track(self.connection, add=False)

    # -- plumbing -----------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                data += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return data
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send_json(self, status: int, obj: Any, headers: dict | None = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, str(value))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, text: str) -> None:
        data = text.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _pause(self, seconds: float) -> None:
        # Event.wait instead of sleep: stop() wakes every handler at once.
        if seconds > 0:
            self.double._stopping.wait(seconds)

    # -- verbs --------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET", b"")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE", b"")

    def do_POST(self) -> None:
        self._dispatch("POST", self._read_body())

    def _dispatch(self, method: str, raw: bytes) -> None:
        try:
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")  # logged as-is; tests can see it
            path = urlsplit(self.path).path
            if path.startswith("/_"):
                self._control(method, path, body)
            else:
                self._model_call(method, body)
        except OSError:  # includes BrokenPipe/ConnectionReset/timeout
            self.close_connection = True  # the CLI went away mid-answer: nothing to do

    def _control(self, method: str, path: str, body: Any) -> None:
        d = self.double
        if path == "/_control" and method == "POST":
            try:
                d.set(**(body or {}))
            except (TypeError, ValueError) as e:
                return self._send_json(400, {"error": {"message": str(e)}})
        elif path == "/_reset" and method == "POST":
            d.reset()
        elif path == "/_log" and method == "DELETE":
            d.clear_log()
        elif path == "/_log" and method == "GET":
            return self._send_json(200, {"requests": d.requests()})
        elif not (path == "/_control" and method == "GET"):
            return self._send_json(404, {"error": {"message": f"no such control {method} {path}"}})
        self._send_json(200, {"knobs": d.knobs()})

    def _model_call(self, method: str, body: Any) -> None:
        api, kind = classify(self.path)
        if method != "POST":
            kind = "other"
        k = self.double._log_call(method, self.path, api, kind, body, dict(self.headers))
        if api is None or kind == "other":
            # Unknown calls are logged (so a test can see what a CLI probed) and answered
            # at once with a 404, never hung or failed by the knobs.
            message = f"model double: no route for {method} {self.path}"
            return self._send_json(404, {"error": {"message": message}})
        if k["hang"]:
            self.double._stopping.wait()
            self.close_connection = True
            return
        if k["fail_status"] and k["_fails"]:
            status = int(k["fail_status"])
            body = error_body(
                api, status, k["fail_message"] or f"injected {status}",
                error_type=k["fail_error"], extra=k["fail_extra"],
            )
            return self._send_json(status, body, k["fail_headers"])
        req = body if isinstance(body, dict) else {}
        text = k["reply"]
        if text is None:
            text = " ".join(f"w{i}" for i in range(k["words"]))
        pieces, n_in = split_pieces(text), int(k["input_tokens"])
        delay = k["delay_ms"] / 1000

        if kind == "count_tokens":
            return self._send_json(200, {"input_tokens": n_in} if api == "anthropic"
                                   else {"totalTokens": n_in})
        tool = k["tool_use"]
        calls_tool = False
        # One call, or a list of calls the model makes at once (parallel tool calls).
        wanted = [dict(c) for c in (tool if isinstance(tool, list) else [tool] if tool else [])]
        for call in wanted:
            call["fields"] = _tool_fields(api, req, call["name"])
        if wanted and all(c["fields"] is not None for c in wanted):
            result = _tool_result_text(api, req)
            calls_tool = result is None
            if result is not None:
                text, pieces = result, split_pieces(result)
        if api == "gemini":
            model = _GEMINI_RE.match(urlsplit(self.path).path.rstrip("/")).group(1)
            if calls_tool:
                chunk = _gemini_call_chunk(model, wanted, n_in)
                if kind != "stream":
                    return self._send_json(200, chunk)
                self._start_stream()
                self._chunk(f"data: {json.dumps(chunk)}\r\n\r\n")
                return self._chunk("")
            if kind == "stream":
                self._start_stream()
                for i, piece in enumerate(pieces or [""]):
                    self._pause(delay)
                    last = i == max(len(pieces), 1) - 1
                    chunk = _gemini_chunk(model, piece, last, len(pieces), n_in)
                    self._chunk(f"data: {json.dumps(chunk)}\r\n\r\n")
                return self._chunk("")
            self._pause(delay * len(pieces))  # same total latency as the stream would have
            return self._send_json(200, _gemini_chunk(model, text, True, len(pieces), n_in))

        model = req.get("model") or ("claude-double" if api == "anthropic" else "gpt-double")
        events = _anthropic_events if api == "anthropic" else _openai_events
        if calls_tool:
            call = _anthropic_tool_events if api == "anthropic" else _openai_tool_events
            self._start_stream()
            seq = 0
            for name, data in call(model, wanted, n_in):
                if api == "openai":
                    data = {"type": name, "sequence_number": seq, **data}
                    seq += 1
                self._chunk(f"event: {name}\ndata: {json.dumps(data)}\n\n")
            return self._chunk("")
        if req.get("stream") or api == "openai":  # codex always streams /v1/responses
            self._start_stream()
            seq = 0
            for name, data in events(model, pieces, n_in):
                if name in ("content_block_delta", "response.output_text.delta"):
                    self._pause(delay)
                if api == "openai":
                    data = {"type": name, "sequence_number": seq, **data}
                    seq += 1
                self._chunk(f"event: {name}\ndata: {json.dumps(data)}\n\n")
            return self._chunk("")
        # Non-streaming Messages call (claude uses these for side jobs such as titles).
        self._pause(delay * len(pieces))
        self._send_json(200, {
            "id": "msg_" + uuid.uuid4().hex[:20], "type": "message", "role": "assistant",
            "model": model, "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": n_in, "output_tokens": len(pieces)}})


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a hung handler must never keep the test process alive

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn), which can stall for
        # seconds in a sandbox without DNS; the double only needs the socket bound.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


class ModelDouble:
    """The double: `with ModelDouble(words=3) as d: ... d.url ... d.requests()`.

    Knob changes and the request log are shared by all handler threads under one lock.
    """

    def __init__(
        self, port: int = 0, host: str = "127.0.0.1", *, log_limit: int | None = None,
        **knobs: Any,
    ):
        """`log_limit` keeps only the newest calls (a long-running demo must not grow)."""
        _check_knobs(knobs)
        self.host, self.port = host, port
        self._initial = {**DEFAULT_KNOBS, **knobs}
        self._knobs = dict(self._initial)
        self._lock = threading.Lock()
        self._log: collections.deque[dict] = collections.deque(maxlen=log_limit)
        self._conns: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._failed = 0  # failures injected since the fail_* knobs were last set

    def start(self) -> Self:
        handler = type("Handler", (_Handler,), {"double": self})
        self._stopping.clear()
        self._server = _Server((self.host, self.port), handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                         daemon=True, name=f"model-double:{self.port}").start()
        return self

    def stop(self) -> None:
        srv, self._server = self._server, None
        if srv is None:
            return
        self._stopping.set()  # releases hung and delayed handlers
        srv.shutdown()
        srv.server_close()
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for c in conns:  # wakes handlers blocked reading an idle keep-alive connection
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def set(self, **knobs: Any) -> None:
        _check_knobs(knobs)
        with self._lock:
            self._knobs.update(knobs)
            if _FAIL_KNOBS & set(knobs):
                self._failed = 0

    set_knobs = set

    def knobs(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._knobs)

    def reset(self) -> None:
        """Back to the knobs given at construction (not the library defaults); empty log."""
        with self._lock:
            self._knobs = dict(self._initial)
            self._log.clear()
            self._failed = 0

    def requests(self) -> list[dict]:
        """Every call the CLIs made (control endpoints excluded), oldest first."""
        with self._lock:
            return list(self._log)

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)

    def _log_call(self, method: str, path: str, api: str | None, kind: str, body: Any,
                  headers: dict) -> dict:
        # Log and snapshot knobs under one lock, so a request is always answered with the
        # knobs that were in force when it was logged; `_fails` says whether this call is
        # one the fail_* knobs pick.
        with self._lock:
            self._log.append({"method": method, "path": path, "api": api, "kind": kind,
                              "body": body, "headers": headers, "ts": time.time()})
            knobs = dict(self._knobs)
            fails = bool(knobs["fail_status"]) and api is not None and kind != "other"
            fails = fails and (knobs["fail_apis"] is None or api in knobs["fail_apis"])
            limit = knobs["fail_calls"]
            fails = fails and (limit is None or self._failed < limit)
            if fails:
                self._failed += 1
            knobs["_fails"] = fails
            return knobs


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Serve the model-API double until interrupted.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--words", type=int, default=DEFAULT_KNOBS["words"])
    ap.add_argument("--delay-ms", type=int, default=DEFAULT_KNOBS["delay_ms"])
    ap.add_argument("--fail-status", type=int, default=None)
    ap.add_argument("--fail-api", action="append", default=None, choices=_APIS,
                    help="fail only this API's calls (repeatable)")
    ap.add_argument("--hang", action="store_true")
    ap.add_argument("--reply", default=None)
    ap.add_argument("--input-tokens", type=int, default=DEFAULT_KNOBS["input_tokens"])
    a = ap.parse_args(argv)
    double = ModelDouble(port=a.port, host=a.host, words=a.words, delay_ms=a.delay_ms,
                         fail_status=a.fail_status, fail_apis=a.fail_api, hang=a.hang,
                         reply=a.reply, input_tokens=a.input_tokens).start()
    print(double.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        double.stop()


if __name__ == "__main__":
    main()
