"""A local OpenAI-compatible server for one loaded Generator: `humanlike-tui serve --adapter RUN`.

    server = ChatServer(generator, port=8000, base_too=True)
    server.start()                # serves in a background thread
    server.url                    # http://127.0.0.1:8000/v1  (give it to any OpenAI client as base_url)
    server.stop()

Endpoints (the subset of the OpenAI API a chat client needs):

- GET  /v1/models                the adapter (model id = the run name) and, with base_too, the base model
                                 (model id = the base model's name), which answers with the adapter off.
- GET  /v1/models/{id}
- POST /v1/chat/completions      messages, model, temperature, top_p, max_tokens (or max_completion_tokens),
                                 stop (a string or up to 4), seed, stream. Streaming answers are server-sent
                                 events (`data: {chunk}` ... `data: [DONE]`), as OpenAI sends them.

The conversation is formatted exactly as the chat path formats it (the run's training template; earlier
user/assistant turns as history; the oldest dropped when the context is full). System messages are
ignored: the model was trained without them (a chat template's own default system prompt still applies).
Unknown fields (frequency_penalty, user, ...) are ignored as OpenAI-compatible servers do; n > 1, tools
and non-text content are refused with 400. `repetition_penalty` (not in OpenAI's API) is accepted too.

Requests are served one at a time on the one loaded model, first come first served; at most
`max_queue` wait (then 503). Errors are OpenAI-shaped: {"error": {"message", "type", "param", "code"}},
400 for a bad request, 404 for an unknown model or path, 413 for a body over 1 MB.

Loopback (127.0.0.1) only by default: the server has no authentication, so binding another address is
the caller's explicit choice.
"""

from __future__ import annotations

import ipaddress
import json
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from humanlike_tui.engine.inference.streaming import split_at_marker
from humanlike_tui.errors import GenerationError, HumanlikeError, InputError
from humanlike_tui.events import AnswerStarted, AnswerText
from humanlike_tui.records import Turn

MAX_BODY = 1 << 20
DRAIN_LIMIT = 64 << 20  # an oversized body up to this is read away so its sender sees the 413
MAX_STOPS = 4


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class ChatRequest:
    side: str  # adapter | base
    model: str
    prompt: str
    history: tuple[Turn, ...]
    overrides: dict[str, Any]
    stop: tuple[str, ...]
    stream: bool


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ApiError(400, f"{where}: only text content is supported", "messages")
            parts.append(part["text"])
        return "".join(parts)
    if content is None:
        return ""
    raise ApiError(400, f"{where}.content must be a string or a list of text parts", "messages")


def _number(body: dict, key: str, kind: type, low: float, high: float) -> Any:
    value = body.get(key)
    if value is None:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (kind is float or float(value).is_integer())
    if not ok or not (low <= value <= high):
        raise ApiError(400, f"{key} must be {'a number' if kind is float else 'an integer'} in [{low:g}, {high:g}], "
                       f"got {value!r}", key)
    return kind(value)


def parse_chat_request(body: Any, models: dict[str, str]) -> ChatRequest:
    """Check an OpenAI chat-completion body; raises ApiError (400/404) with the field at fault."""
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "model is required: one of " + ", ".join(models), "model")
    if model not in models:
        raise ApiError(404, f"the model {model!r} does not exist here; this server has: {', '.join(models)}",
                       "model", "model_not_found")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages must be a non-empty list of {role, content}", "messages")
    turns: list[tuple[str, str]] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "developer", "user", "assistant"):
            raise ApiError(400, f"messages[{i}].role must be system, user or assistant", "messages")
        if m["role"] in ("system", "developer"):
            continue  # the model was trained without a system prompt
        text = _text(m.get("content"), f"messages[{i}]")
        if turns and turns[-1][0] == m["role"]:  # two in a row: one message
            turns[-1] = (m["role"], turns[-1][1] + "\n\n" + text)
        else:
            turns.append((m["role"], text))
    if not turns or turns[-1][0] != "user":
        raise ApiError(400, "the last message must be the user's", "messages")
    if not turns[-1][1].strip():
        raise ApiError(400, "the last user message is empty", "messages")
    if turns[0][0] == "assistant":
        turns.insert(0, ("user", ""))
    history = []
    for (_, user), (_, assistant) in zip(turns[0:-1:2], turns[1:-1:2]):
        history.append(Turn(user, base=assistant, adapter=assistant))
    n = body.get("n", 1)
    if n != 1:
        raise ApiError(400, "n must be 1 (one answer per request)", "n")
    for key in ("tools", "functions", "tool_choice", "response_format"):
        if body.get(key) not in (None, [], "none") and not (key == "response_format" and body[key] == {"type": "text"}):
            raise ApiError(400, f"{key} is not supported by this server", key)
    stop = body.get("stop")
    if stop is None:
        stops: tuple[str, ...] = ()
    elif isinstance(stop, str):
        stops = (stop,)
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop) and len(stop) <= MAX_STOPS:
        stops = tuple(stop)
    else:
        raise ApiError(400, f"stop must be a string or a list of at most {MAX_STOPS} strings", "stop")
    if any(not s for s in stops):
        raise ApiError(400, "stop strings must not be empty", "stop")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, "stream must be true or false", "stream")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    overrides = {"temperature": _number(body, "temperature", float, 0, 5),
                 "top_p": _number(body, "top_p", float, 0, 1),
                 "max_new_tokens": _number({"max_tokens": max_tokens}, "max_tokens", int, 1, 8192),
                 "seed": _number(body, "seed", int, 0, 2**32 - 1),
                 "repetition_penalty": _number(body, "repetition_penalty", float, 1, 3)}
    if overrides["top_p"] == 0:
        raise ApiError(400, "top_p must be > 0", "top_p")
    return ChatRequest(models[model], model, turns[-1][1], tuple(history),
                       {k: v for k, v in overrides.items() if v is not None}, stops, stream)


class FifoGate:
    """One request at a time, in arrival order; at most `max_waiting` waiting (else ApiError 503)."""

    def __init__(self, max_waiting: int):
        self.max_waiting = max_waiting
        self.cond = threading.Condition()
        self.next_ticket = 0
        self.serving = 0

    def __enter__(self):
        with self.cond:
            if self.next_ticket - self.serving > self.max_waiting:
                raise ApiError(503, f"the server is busy ({self.max_waiting} requests waiting); try again later",
                               kind="server_error", code="busy")
            ticket = self.next_ticket
            self.next_ticket += 1
            self.cond.wait_for(lambda: self.serving == ticket)
        return self

    def __exit__(self, *exc):
        with self.cond:
            self.serving += 1
            self.cond.notify_all()


class ChatServer:
    """Serves one Generator over HTTP (see the module docstring)."""

    def __init__(self, generator, host: str = "127.0.0.1", port: int = 8000, *, base_too: bool = False,
                 max_queue: int = 16, log: Callable[[str], None] = lambda message: None):
        self.gen, self.host, self.port, self.log = generator, host, port, log
        self.models = {generator.name: "adapter"}
        if base_too:
            base = generator.config.model.name
            self.models[base if base not in self.models else f"{base}@base"] = "base"
        self.gate = FifoGate(max_queue)
        self.created = int(time.time())
        self.httpd: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None
        self.served = 0
        self.closing = threading.Event()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def start(self) -> "ChatServer":
        server = self

        class Handler(_Handler):
            chat = server

        try:
            self.httpd = ThreadingHTTPServer((self.host, self.port), Handler)
        except OSError as exc:
            raise InputError(f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}; choose another "
                             "--port (0 = any free port)") from None
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                       name="humanlike-serve", daemon=True)
        self.thread.start()
        self.log(f"serving {', '.join(self.models)} at {self.url}")
        return self

    def stop(self) -> None:
        """Stop listening; a request being answered is stopped at its next token."""
        self.closing.set()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None
        if self.thread is not None:
            self.thread.join(timeout=5)
            self.thread = None

    @property
    def running(self) -> bool:
        return self.httpd is not None

    def model_list(self) -> dict[str, Any]:
        return {"object": "list", "data": [self.model_card(m) for m in self.models]}

    def model_card(self, model: str) -> dict[str, Any]:
        return {"id": model, "object": "model", "created": self.created, "owned_by": "humanlike-tui"}

    # ---- one completion ----

    def complete(self, req: ChatRequest, on_text: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Generate one answer (waiting for its turn). `on_text` gets the visible text as it grows.
        Returns {"text", "finish_reason", "prompt_tokens", "completion_tokens", "seconds"}."""
        settings = self.settings_for(req)
        stop = threading.Event()
        state = {"text": "", "shown": "", "hit": False, "prompt_tokens": 0}

        def emit(event) -> None:
            if isinstance(event, AnswerStarted):
                state["prompt_tokens"] = event.prompt_tokens
            elif isinstance(event, AnswerText) and not state["hit"]:
                state["text"] += event.text
                visible, hit = split_at_marker(state["text"], req.stop) if req.stop else (state["text"], False)
                if hit:
                    state["hit"] = True
                    stop.set()  # ends generation at the next token
                self._show(state, visible, on_text)
            if self.closing.is_set():
                stop.set()

        with self.gate:
            try:
                answer = self.gen.answer(req.side, req.prompt, req.history, settings, emit, stop)
            except InputError as exc:
                raise ApiError(400, str(exc)) from None
            except GenerationError as exc:
                raise ApiError(500, str(exc), kind="server_error") from None
        if state["hit"]:
            text, finish = state["shown"], "stop"
        else:
            text = split_at_marker(answer.text, req.stop, final=True)[0] if req.stop else answer.text
            self._show(state, text, on_text)
            finish = {"end": "stop", "length": "length"}.get(answer.finish, "stop")
        self.served += 1
        return {"text": text, "finish_reason": finish, "prompt_tokens": state["prompt_tokens"],
                "completion_tokens": answer.tokens, "seconds": answer.seconds}

    @staticmethod
    def _show(state: dict, visible: str, on_text) -> None:
        # Trimmed as the finished answer is (leading/trailing blanks held back until text follows them), so
        # the streamed pieces join to exactly the non-streamed answer.
        visible = visible.strip()
        if len(visible) > len(state["shown"]) and visible.startswith(state["shown"]):
            piece = visible[len(state["shown"]):]
            state["shown"] = visible
            if on_text is not None:
                on_text(piece)

    def settings_for(self, req: ChatRequest):
        try:
            return self.gen.settings(**req.overrides)
        except HumanlikeError as exc:
            raise ApiError(400, str(exc)) from None


class _Handler(BaseHTTPRequestHandler):
    chat: ChatServer
    server_version = "humanlike-tui"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        pass  # no access log on stderr (a TUI may own the terminal)

    # ---- routing ----

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._guard(self._get)

    def do_POST(self) -> None:  # noqa: N802
        self._guard(self._post)

    def do_OPTIONS(self) -> None:  # noqa: N802
        self._guard(lambda: self._send_json(204, None))

    def _guard(self, fn) -> None:
        try:
            fn()
        except ApiError as exc:
            self._send_json(exc.status, exc.body())
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as exc:  # noqa: BLE001 - a server answers every request
            self._send_json(500, ApiError(500, f"{type(exc).__name__}: {exc}", kind="server_error").body())

    def _path(self) -> str:
        return self.path.split("?", 1)[0].rstrip("/")

    def _get(self) -> None:
        path = self._path()
        if path in ("/v1/models", "/models"):
            return self._send_json(200, self.chat.model_list())
        for prefix in ("/v1/models/", "/models/"):
            if path.startswith(prefix):
                model = path[len(prefix):]
                if model not in self.chat.models:
                    raise ApiError(404, f"the model {model!r} does not exist here", "model", "model_not_found")
                return self._send_json(200, self.chat.model_card(model))
        if path in ("/v1/chat/completions", "/chat/completions"):
            raise ApiError(405, "use POST for /v1/chat/completions")
        if path in ("", "/", "/health"):
            return self._send_json(200, {"status": "ok", "models": list(self.chat.models)})
        raise ApiError(404, f"no endpoint {self.path}; this server has GET /v1/models and POST /v1/chat/completions",
                       code="not_found")

    def _post(self) -> None:
        if self._path() not in ("/v1/chat/completions", "/chat/completions"):
            raise ApiError(404, f"no endpoint POST {self.path}; use /v1/chat/completions", code="not_found")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise ApiError(400, "bad Content-Length") from None
        if length > MAX_BODY:
            self._discard_body(length)
            raise ApiError(413, f"the request body is over {MAX_BODY} bytes")
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ApiError(400, f"the body is not valid JSON ({exc})") from None
        req = parse_chat_request(body, self.chat.models)
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        if req.stream:
            return self._stream(req, completion_id)
        result = self.chat.complete(req)
        self._send_json(200, {
            "id": completion_id, "object": "chat.completion", "created": int(time.time()), "model": req.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": result["text"]},
                         "finish_reason": result["finish_reason"], "logprobs": None}],
            "usage": _usage(result)})

    def _stream(self, req: ChatRequest, completion_id: str) -> None:
        created = int(time.time())
        started = False

        def chunk(delta: dict, finish: str | None = None, **extra) -> None:
            nonlocal started
            if not started:  # headers only once the request is sure to be answered (errors stay JSON 4xx)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream; charset=utf-8")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                started = True
                chunk({"role": "assistant", "content": ""})
            data = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": req.model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}
            self.wfile.write(f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode("utf-8"))
            self.wfile.flush()

        self.chat.settings_for(req)  # a bad setting is a 400 before the stream starts
        try:
            result = self.chat.complete(req, on_text=lambda piece: chunk({"content": piece}))
        except ApiError as exc:
            if not started:
                raise
            data = exc.body()
            self.wfile.write(f"data: {json.dumps(data)}\n\n".encode("utf-8"))
            self.close_connection = True
            return
        chunk({}, result["finish_reason"], usage=_usage(result))
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True

    def _discard_body(self, length: int) -> None:
        """Read an oversized body away (up to DRAIN_LIMIT) before answering 413: answering while the client
        was still sending made it fail with a broken pipe instead of reading the 413. Past the limit the
        connection is closed without reading more."""
        self.close_connection = True
        left = min(length, DRAIN_LIMIT)
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 16))
            if not chunk:
                break
            left -= len(chunk)

    def _send_json(self, status: int, body: Any) -> None:
        data = b"" if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 503:
            self.send_header("Retry-After", "1")
        self.end_headers()
        self.wfile.write(data)


def _usage(result: dict[str, Any]) -> dict[str, int]:
    return {"prompt_tokens": result["prompt_tokens"], "completion_tokens": result["completion_tokens"],
            "total_tokens": result["prompt_tokens"] + result["completion_tokens"]}
