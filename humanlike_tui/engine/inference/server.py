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
                                 stop (a string or up to 4), seed, stream, stream_options.include_usage.
                                 Streaming answers are server-sent events (`data: {chunk}` ... `data: [DONE]`),
                                 as OpenAI sends them; usage comes in its own last chunk (`choices: []`) only
                                 when stream_options.include_usage asks for it, as OpenAI does.

The conversation is formatted exactly as the chat path formats it (the run's training template; earlier
user/assistant turns as history; the oldest dropped when the context is full). The client's system
messages are the persona; a request without one gets the run's data.system_prompt, as in training.
Unknown fields (frequency_penalty, user, ...) are ignored as OpenAI-compatible servers do; n > 1, tools
and non-text content are refused with 400. `repetition_penalty` (not in OpenAI's API) is accepted too.

Requests are served one at a time on the one loaded model, first come first served; at most
`max_queue` wait (then 503). Errors are OpenAI-shaped: {"error": {"message", "type", "param", "code"}},
400 for a bad request, 403 for a foreign Host or Origin, 404 for an unknown model or path, 405 for a
method other than GET/POST (OPTIONS answers CORS preflights), 413 for a body over 1 MB or more than
10,000 messages, 415 for a body that is not declared JSON.

What one request may cost is bounded: the body (1 MB, Content-Length or chunked), the messages (10,000;
the history is fitted to the model's context with a handful of tokenizations, not one per dropped turn),
max_tokens (8192), a silent connection (REQUEST_TIMEOUT). A request whose client has gone stops at the
next token (a watcher polls the socket), and stop() ends the one being answered at its next token.

Loopback (127.0.0.1) only by default: the server has no authentication, so binding another address is
the caller's explicit choice. On loopback it answers only requests whose Host is a loopback name (a web
page cannot reach it by DNS rebinding), refuses requests that carry an Origin (a browser's cross-origin
request) unless `cors` lists that origin, and reads only bodies declared `Content-Type: application/json`
(a page's form or text/plain POST is refused before anything runs).
"""

from __future__ import annotations

import errno
import ipaddress
import json
import select
import socket
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
# A conversation of 5,000 exchanges: far past any model's context (only the newest turns that fit are read),
# and it keeps the work of one request bounded whatever the client sends.
MAX_MESSAGES = 10_000
REQUEST_TIMEOUT = 30.0  # seconds a connection may stay silent while we wait for its request (half-open peers)
WATCH_INTERVAL = 0.1  # how often a request's socket is checked for a client that has gone
SEED_RANGE = (-(2**63), 2**63 - 1)  # OpenAI's seed is any 64-bit integer
ALLOWED_METHODS = "GET, POST, OPTIONS"


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


class ClientGone(Exception):
    """The client closed its connection before its answer was ready: nothing to send."""


@dataclass(frozen=True)
class ChatRequest:
    side: str  # adapter | base
    model: str
    prompt: str
    history: tuple[Turn, ...]
    overrides: dict[str, Any]
    stop: tuple[str, ...]
    stream: bool
    include_usage: bool = False  # stream_options.include_usage
    system: str | None = None  # the client's system message(s); None: the run's persona (data.system_prompt)


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The name in a Host header, without its port: 'localhost:8000' -> 'localhost', '[::1]:80' -> '::1'."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    name = header.rsplit(":", 1)[0] if header.count(":") == 1 else header
    return name.rstrip(".")


def _valid_text(text: str, where: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, f"{where} holds a lone UTF-16 surrogate (an escape like \\ud800 without its pair); "
                       "send valid Unicode", "messages") from None
    return text


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return _valid_text(content, f"{where}.content")
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ApiError(400, f"{where}: only text content is supported", "messages")
            parts.append(_valid_text(part["text"], f"{where}.content"))
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


def _turns(messages: list) -> list[tuple[str, str]]:
    """(role, text) with system messages left out and messages of one role in a row joined: linear in the
    messages (the pieces of a run are joined once, not re-copied per message)."""
    runs: list[tuple[str, list[str]]] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "developer", "user", "assistant"):
            raise ApiError(400, f"messages[{i}].role must be system, user or assistant", "messages")
        if m["role"] in ("system", "developer"):
            continue  # the persona: see _system_text
        text = _text(m.get("content"), f"messages[{i}]")
        if runs and runs[-1][0] == m["role"]:  # two in a row: one message
            runs[-1][1].append(text)
        else:
            runs.append((m["role"], [text]))
    return [(role, "\n\n".join(texts)) for role, texts in runs]


def parse_chat_request(body: Any, models: dict[str, str]) -> ChatRequest:
    """Check an OpenAI chat-completion body; raises ApiError (400/404/413) with the field at fault."""
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
    if len(messages) > MAX_MESSAGES:
        raise ApiError(413, f"messages has {len(messages):,} entries; this server reads at most {MAX_MESSAGES:,} "
                       "per request (only the newest turns that fit the model's context are used anyway): "
                       "send the recent part of the conversation", "messages", "too_many_messages")
    turns = _turns(messages)
    system = _system_text(messages)
    if not turns or turns[-1][0] != "user":
        raise ApiError(400, "the last message must be the user's", "messages")
    if not turns[-1][1].strip():
        raise ApiError(400, "the last user message is empty", "messages")
    if turns[0][0] == "assistant":
        turns.insert(0, ("user", ""))
    history = []
    for (_, user), (_, assistant) in zip(turns[0:-1:2], turns[1:-1:2]):
        history.append(Turn(user, base=assistant, adapter=assistant))
    n = body.get("n")
    if n is not None and n != 1:  # null is OpenAI's default, 1
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
    for s in stops:
        _valid_text(s, "stop")
    stream = body.get("stream")
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise ApiError(400, "stream must be true or false", "stream")
    include_usage = _include_usage(body.get("stream_options"), stream)
    # null means "not given" (OpenAI's SDKs send it): a null max_completion_tokens keeps max_tokens.
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    seed = _number(body, "seed", int, *SEED_RANGE)
    overrides = {"temperature": _number(body, "temperature", float, 0, 5),
                 "top_p": _number(body, "top_p", float, 0, 1),
                 "max_new_tokens": _number({"max_tokens": max_tokens}, "max_tokens", int, 1, 8192),
                 "seed": None if seed is None else seed % 2**32,  # torch takes 32 bits here; any int64 maps to one
                 "repetition_penalty": _number(body, "repetition_penalty", float, 1, 3)}
    if overrides["top_p"] == 0:
        raise ApiError(400, "top_p must be > 0", "top_p")
    return ChatRequest(models[model], model, turns[-1][1], tuple(history),
                       {k: v for k, v in overrides.items() if v is not None}, stops, stream, include_usage, system)


def _system_text(messages: list) -> str | None:
    """The client's system (or developer) messages joined, or None when it sent none (the run's persona then
    applies, as in training). Checked by _turns already."""
    texts = [_text(m.get("content"), f"messages[{i}]") for i, m in enumerate(messages)
             if m.get("role") in ("system", "developer")]
    return "\n\n".join(t for t in texts if t.strip()) if texts else None


def _include_usage(options: Any, stream: bool) -> bool:
    if options is None:
        return False
    if not isinstance(options, dict):
        raise ApiError(400, "stream_options must be an object like {\"include_usage\": true}", "stream_options")
    if not stream:
        raise ApiError(400, "stream_options is only allowed when stream is true", "stream_options")
    usage = options.get("include_usage")
    if usage is not None and not isinstance(usage, bool):
        raise ApiError(400, "stream_options.include_usage must be true or false", "stream_options")
    return bool(usage)


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


def open_listener(host: str, port: int) -> "_HttpServer":
    """Bind host:port now (before a model loads: a taken port is known in milliseconds, not after ~10 s).
    Raises InputError naming the option to change."""
    try:
        return _HttpServer((host, port), _Handler)
    except socket.gaierror as exc:
        raise InputError(f"cannot listen on {host}:{port}: {host!r} is not a known address ({exc.strerror}); "
                         "--host must be an address of this machine (127.0.0.1 for this machine only, 0.0.0.0 "
                         "for every network)") from None
    except OSError as exc:
        if exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
            raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; --host must be an address "
                             "of this machine (127.0.0.1 for this machine only, 0.0.0.0 for every network)") from None
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another "
                         "--port (0 = any free port)") from None


class ChatServer:
    """Serves one Generator over HTTP (see the module docstring)."""

    def __init__(self, generator, host: str = "127.0.0.1", port: int = 8000, *, base_too: bool = False,
                 max_queue: int = 16, log: Callable[[str], None] = lambda message: None,
                 cors: tuple[str, ...] | list[str] = (), request_timeout: float = REQUEST_TIMEOUT):
        self.gen, self.host, self.port, self.log = generator, host, port, log
        # A base model alone (Generator.open_base, the Chat screen's "base model alone") answers as the base.
        self.models = {generator.name: "adapter" if getattr(generator, "has_adapter", True) else "base"}
        if base_too:
            base = generator.config.model.name
            self.models[base if base not in self.models else f"{base}@base"] = "base"
        self.gate = FifoGate(max_queue)
        self.created = int(time.time())
        self.httpd: _HttpServer | None = None
        self.thread: threading.Thread | None = None
        self.served = 0
        self.closing = threading.Event()
        self.cors = tuple(cors)
        self.request_timeout = request_timeout
        self.active: set[threading.Event] = set()  # the stop flags of requests being answered or waiting
        self.active_lock = threading.Lock()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def start(self, listener: "_HttpServer | None" = None) -> "ChatServer":
        """Serve in a background thread, on `listener` (from open_listener) or on a socket bound now."""
        self.httpd = listener or open_listener(self.host, self.port)
        self.httpd.chat = self
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
        with self.active_lock:
            for flag in self.active:
                flag.set()
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

    def host_allowed(self, header: str | None) -> bool:
        """Bound to loopback: only loopback names in Host (DNS rebinding gives a page another name)."""
        if header is None or not is_loopback(self.host):
            return True  # no Host (HTTP/1.0 tools), or --host widened it on purpose
        name = host_name(header)
        return name == "localhost" or name.endswith(".localhost") or is_loopback(name)

    def origin_allowed(self, origin: str | None) -> bool:
        return origin is None or "*" in self.cors or origin in self.cors

    # ---- one completion ----

    def complete(self, req: ChatRequest, on_text: Callable[[str], None] | None = None,
                 stop: threading.Event | None = None) -> dict[str, Any]:
        """Generate one answer (waiting for its turn). `on_text` gets the visible text as it grows; `stop`
        (set when the client has gone) ends it at the next token and raises ClientGone.
        Returns {"text", "finish_reason", "prompt_tokens", "completion_tokens", "seconds"}."""
        settings = self.settings_for(req)
        stop = stop or threading.Event()
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

        with self._registered(stop), self.gate:
            if stop.is_set():  # the client left (or the server stops) while this request waited
                raise ClientGone()
            try:
                answer = self.gen.answer(req.side, req.prompt, req.history, settings, emit, stop, system=req.system)
            except InputError as exc:
                raise ApiError(400, str(exc)) from None
            except GenerationError as exc:
                raise ApiError(500, str(exc), kind="server_error") from None
        if answer.finish == "stopped" and not state["hit"]:
            raise ClientGone()
        if state["hit"]:
            text, finish = state["shown"], "stop"
        else:
            text = split_at_marker(answer.text, req.stop, final=True)[0] if req.stop else answer.text
            self._show(state, text, on_text)
            finish = {"end": "stop", "length": "length"}.get(answer.finish, "stop")
        self.served += 1
        return {"text": text, "finish_reason": finish, "prompt_tokens": state["prompt_tokens"],
                "completion_tokens": answer.tokens, "seconds": answer.seconds}

    def _registered(self, flag: threading.Event):
        server = self

        class _Registration:
            def __enter__(self):
                with server.active_lock:
                    server.active.add(flag)
                if server.closing.is_set():
                    flag.set()

            def __exit__(self, *exc):
                with server.active_lock:
                    server.active.discard(flag)

        return _Registration()

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


class _HttpServer(ThreadingHTTPServer):
    chat: ChatServer

    def handle_error(self, request, client_address) -> None:
        """A client that vanished mid-request is routine for a server: no traceback on the terminal."""
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
            return
        chat = getattr(self, "chat", None)
        if chat is not None:
            chat.log(f"request from {client_address[0]} failed: {type(exc).__name__}: {exc}")


class _ClientWatch:
    """Sets `flag` once the client has closed its connection (or the server stops), polling the socket
    every WATCH_INTERVAL while the request waits and generates, so a request nobody reads stops."""

    def __init__(self, sock: socket.socket, flag: threading.Event):
        self.sock, self.flag, self.done = sock, flag, threading.Event()
        self.thread = threading.Thread(target=self._watch, name="humanlike-serve-watch", daemon=True)

    def __enter__(self) -> "_ClientWatch":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()

    def _watch(self) -> None:
        while not self.done.wait(WATCH_INTERVAL):
            if client_gone(self.sock):
                self.flag.set()
                return


def client_gone(sock: socket.socket) -> bool:
    """True when the peer has closed (readable with nothing to read) or the socket broke."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK | getattr(socket, "MSG_DONTWAIT", 0)) == b""
    except (BlockingIOError, InterruptedError, socket.timeout):
        return False
    except (OSError, ValueError):
        return True


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer
    server_version = "humanlike-tui"
    error_content_type = "application/json"

    @property
    def chat(self) -> ChatServer:
        return self.server.chat

    def setup(self) -> None:
        self.timeout = self.server.chat.request_timeout  # StreamRequestHandler applies it to the socket
        super().setup()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        pass  # no access log on stderr (a TUI may own the terminal)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (a bad request line, a header too long) in OpenAI's JSON shape."""
        self.close_connection = True
        try:
            self._send_json(code, ApiError(code, message or self.responses.get(code, ("error",))[0]).body())
        except OSError:
            pass

    def __getattr__(self, name: str):
        # http.server answers a method without a do_X with an HTML 501; the documented answer is JSON 405.
        if name.startswith("do_"):
            return lambda: self._guard(self._method_not_allowed)
        raise AttributeError(name)

    # ---- routing ----

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._guard(self._get)

    def do_POST(self) -> None:  # noqa: N802
        self._guard(self._post)

    def do_OPTIONS(self) -> None:  # noqa: N802
        self._guard(self._options)

    def _guard(self, fn) -> None:
        try:
            self._check_host_and_origin()
            fn()
        except ApiError as exc:
            self._send_json(exc.status, exc.body())
        except (ClientGone, ConnectionError, TimeoutError):
            self.close_connection = True
        except RecursionError:
            self._send_json(400, ApiError(400, "the body is nested too deeply to read as JSON").body())
        except Exception as exc:  # noqa: BLE001 - a server answers every request
            self._send_json(500, ApiError(500, f"{type(exc).__name__}: {exc}", kind="server_error").body())

    def _check_host_and_origin(self) -> None:
        if not self.chat.host_allowed(self.headers.get("Host")):
            raise ApiError(403, f"Host {self.headers.get('Host')!r} is not this server's name: it listens on "
                           f"{self.chat.host} only and answers only loopback names (localhost, 127.0.0.1), so a web "
                           "page cannot reach it by DNS rebinding; use http://127.0.0.1:PORT, or start it with "
                           "--host to serve other names", code="forbidden_host")
        origin = self.headers.get("Origin")
        if not self.chat.origin_allowed(origin):
            raise ApiError(403, f"cross-origin request from {origin!r} refused: a web page may use this server only "
                           f"if it was started with --cors {origin}", code="forbidden_origin")

    def _method_not_allowed(self) -> None:
        raise ApiError(405, f"method {self.command} is not allowed; this server answers GET /v1/models and "
                       "POST /v1/chat/completions", code="method_not_allowed")

    def _options(self) -> None:
        """A CORS preflight (an allowed Origin, checked by _guard) or a plain OPTIONS: the methods."""
        self.send_response(204)
        self.send_header("Allow", ALLOWED_METHODS)
        if self.headers.get("Origin") is not None:
            self.send_header("Access-Control-Allow-Methods", ALLOWED_METHODS)
            self.send_header("Access-Control-Allow-Headers",
                             self.headers.get("Access-Control-Request-Headers") or "Authorization, Content-Type")
            self.send_header("Access-Control-Max-Age", "600")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def end_headers(self) -> None:
        origin = self.headers.get("Origin") if hasattr(self, "headers") and self.headers else None
        if origin is not None and self.chat.cors and self.chat.origin_allowed(origin):
            self.send_header("Access-Control-Allow-Origin", "*" if "*" in self.chat.cors else origin)
            self.send_header("Vary", "Origin")
        super().end_headers()

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
        self._check_content_type()
        raw = self._read_body()
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ApiError(400, f"the body is not valid JSON ({exc})") from None
        req = parse_chat_request(body, self.chat.models)
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        gone = threading.Event()
        with _ClientWatch(self.connection, gone):
            if req.stream:
                return self._stream(req, completion_id, gone)
            result = self.chat.complete(req, stop=gone)
        self._send_json(200, {
            "id": completion_id, "object": "chat.completion", "created": int(time.time()), "model": req.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": result["text"]},
                         "finish_reason": result["finish_reason"], "logprobs": None}],
            "usage": _usage(result)})

    def _check_content_type(self) -> None:
        kind = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if kind != "application/json":
            self.close_connection = True
            raise ApiError(415, f"Content-Type must be application/json, got {kind or 'none'!r} (with curl: "
                           "-H 'Content-Type: application/json')", code="unsupported_media_type")

    def _read_body(self) -> bytes:
        """The request body, by Content-Length or chunked, never more than MAX_BODY."""
        coding = self.headers.get("Transfer-Encoding")
        if coding is not None:
            if coding.strip().lower() != "chunked":
                self.close_connection = True
                raise ApiError(400, f"Transfer-Encoding {coding!r} is not supported; send chunked or a "
                               "Content-Length")
            return self._read_chunked()
        lengths = self.headers.get_all("Content-Length") or []
        if len(set(v.strip() for v in lengths)) > 1:
            self.close_connection = True
            raise ApiError(400, "more than one Content-Length")
        text = lengths[0].strip() if lengths else "0"
        if not text.isdigit() or not text.isascii():
            self.close_connection = True  # where this body ends is unknown: read nothing more
            raise ApiError(400, f"bad Content-Length {text!r}: it must be the body's size in bytes (0 or more)")
        length = int(text)
        if length > MAX_BODY:
            self._discard_body(length)
            raise ApiError(413, f"the request body is over {MAX_BODY} bytes")
        raw = self.rfile.read(length) if length else b""
        if len(raw) < length:
            raise ClientGone()
        return raw

    def _read_chunked(self) -> bytes:
        body = bytearray()
        while True:
            line = self.rfile.readline(1026)
            if not line:
                raise ClientGone()
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16) if size_text and all(c in b"0123456789abcdefABCDEF" for c in size_text) \
                    else -1
            except ValueError:
                size = -1
            if size < 0:
                self.close_connection = True
                raise ApiError(400, f"bad chunk size {size_text[:20]!r} in a chunked body")
            if size == 0:
                while self.rfile.readline(1026) not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                return bytes(body)
            if len(body) + size > MAX_BODY:
                self.close_connection = True
                raise ApiError(413, f"the request body is over {MAX_BODY} bytes")
            data = self.rfile.read(size)
            if len(data) < size:
                raise ClientGone()
            body += data
            self.rfile.readline(3)  # the CRLF after the chunk

    def _stream(self, req: ChatRequest, completion_id: str, gone: threading.Event) -> None:
        created = int(time.time())
        started = False

        def send(data: dict) -> None:
            self.wfile.write(f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode("utf-8"))
            self.wfile.flush()

        def chunk(delta: dict, finish: str | None = None) -> None:
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
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
            if req.include_usage:
                data["usage"] = None  # as OpenAI: null on every chunk but the last
            send(data)

        self.chat.settings_for(req)  # a bad setting is a 400 before the stream starts
        self.close_connection = True
        try:
            result = self.chat.complete(req, on_text=lambda piece: chunk({"content": piece}), stop=gone)
        except ApiError as exc:
            if not started:
                raise
            send(exc.body())
            return
        chunk({}, result["finish_reason"])
        if req.include_usage:
            send({"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": req.model,
                  "choices": [], "usage": _usage(result)})
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

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
        data = b"" if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8", "replace")
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 503:
            self.send_header("Retry-After", "1")
        if status == 405:
            self.send_header("Allow", ALLOWED_METHODS)
        self.end_headers()
        self.wfile.write(data)


def _usage(result: dict[str, Any]) -> dict[str, int]:
    return {"prompt_tokens": result["prompt_tokens"], "completion_tokens": result["completion_tokens"],
            "total_tokens": result["prompt_tokens"] + result["completion_tokens"]}
