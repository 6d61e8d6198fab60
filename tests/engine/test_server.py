"""`humanlike-tui serve`: the official `openai` client against the tiny model on 127.0.0.1 (ephemeral port):
models, chat, streaming, stop strings, the base by name, bad requests, the queue."""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request

import pytest

from tiny_run import RUN_NAME, SHARED_CACHE, install_run

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from humanlike_tui.engine.inference.generator import Generator
    from humanlike_tui.engine.inference.server import ChatServer

    root = tmp_path_factory.mktemp("serve-home")
    (root / "data").mkdir()
    (root / "cache").symlink_to(SHARED_CACHE, target_is_directory=True)
    old = os.environ.get("HUMANLIKE_TUI_HOME")
    os.environ["HUMANLIKE_TUI_HOME"] = str(root)
    try:
        install_run(root)
        gen = Generator.open(RUN_NAME, device="cpu")
        srv = ChatServer(gen, "127.0.0.1", 0, base_too=True, max_queue=2).start()
        yield srv
        srv.stop()
        gen.close()
    finally:
        os.environ.pop("HUMANLIKE_TUI_HOME", None) if old is None else os.environ.__setitem__("HUMANLIKE_TUI_HOME", old)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=60)


def test_models_and_loopback(server, client):
    assert server.url.startswith("http://127.0.0.1:") and server.port > 0
    assert sorted(m.id for m in client.models.list()) == sorted([RUN_NAME, "builtin:tiny-phi"])
    assert client.models.retrieve(RUN_NAME).owned_by == "humanlike-tui"


def test_chat_matches_the_chat_path(server, client):
    messages = [{"role": "system", "content": "ignored"}, {"role": "user", "content": "How was your weekend?"}]
    out = client.chat.completions.create(model=RUN_NAME, messages=messages, temperature=0, max_tokens=12)
    choice = out.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason in ("stop", "length")
    assert out.usage.completion_tokens > 0 and out.usage.prompt_tokens > 0
    settings = server.gen.settings(temperature=0, max_new_tokens=12)
    assert choice.message.content == server.gen.answer("adapter", "How was your weekend?", (), settings).text
    base = client.chat.completions.create(model="builtin:tiny-phi", messages=messages[1:], temperature=0, max_tokens=12)
    assert base.choices[0].message.content == server.gen.answer("base", "How was your weekend?", (), settings).text


def test_stream_is_the_same_answer(client):
    kwargs = dict(model=RUN_NAME, messages=[{"role": "user", "content": "Any plans tonight?"},
                                            {"role": "assistant", "content": "Not yet, you?"},
                                            {"role": "user", "content": "Pizza and a film."}],
                  temperature=0.8, top_p=0.9, seed=3, max_tokens=16)
    whole = client.chat.completions.create(**kwargs).choices[0]
    pieces, finish = [], None
    for chunk in client.chat.completions.create(stream=True, **kwargs):
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
    assert "".join(pieces) == whole.message.content and finish == whole.finish_reason
    assert len([p for p in pieces if p]) > 1  # it really streamed, piece by piece


def test_stop_strings(client):
    kwargs = dict(model=RUN_NAME, messages=[{"role": "user", "content": "Tell me about your day."}],
                  temperature=0, max_tokens=24)
    full = client.chat.completions.create(**kwargs).choices[0].message.content
    assert len(full) > 4
    stop = full[2:4]  # a piece of what it says: the answer must end just before it
    cut = client.chat.completions.create(stop=[stop, "zzzz"], **kwargs).choices[0]
    assert cut.message.content == full[:full.index(stop)].strip() or cut.message.content == full[:full.index(stop)]
    assert cut.finish_reason == "stop"
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(stop=stop, stream=True,
                                                                                                  **kwargs) if c.choices)
    assert stop not in streamed and full.startswith(streamed)


@pytest.mark.parametrize("body, status, fragment", [
    ({"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}, 404, "does not exist"),
    ({"model": RUN_NAME, "messages": []}, 400, "messages"),
    ({"model": RUN_NAME, "messages": [{"role": "assistant", "content": "hi"}]}, 400, "last message"),
    ({"model": RUN_NAME, "messages": [{"role": "user", "content": "hi"}], "temperature": 9}, 400, "temperature"),
    ({"model": RUN_NAME, "messages": [{"role": "user", "content": "hi"}], "top_p": 0}, 400, "top_p"),
    ({"model": RUN_NAME, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, 400, "max_tokens"),
    ({"model": RUN_NAME, "messages": [{"role": "user", "content": "hi"}], "n": 2}, 400, "n must be 1"),
    ({"model": RUN_NAME, "messages": [{"role": "user", "content": "hi"}], "stop": ["a"] * 5}, 400, "stop"),
    ({"model": RUN_NAME, "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}, 400, "stream"),
])
def test_bad_requests_are_clear_4xx(client, body, status, fragment):
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(**body)
    assert err.value.status_code == status and fragment in err.value.message


def test_raw_http_errors(server):
    def call(path, data=None, method=None):
        req = urllib.request.Request(server.url.removesuffix("/v1") + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    status, body = call("/v1/chat/completions", b"{not json")
    assert status == 400 and "not valid JSON" in body["error"]["message"]
    assert call("/v1/nothing")[0] == 404 and call("/v1/chat/completions")[0] == 405
    assert call("/v1/chat/completions", b"x" * (2 << 20))[0] == 413


def test_requests_wait_their_turn(server, client):
    """Three clients at once on one model: all answered, one at a time (the gate admits 2 waiting)."""
    results, errors = [], []

    def ask(i):
        try:
            out = client.chat.completions.create(model=RUN_NAME, temperature=0, max_tokens=6,
                                                 messages=[{"role": "user", "content": f"Question {i}?"}])
            results.append(out.choices[0].message.content)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(results) == 3


def test_cli_serve_refuses_bad_port(home, capsys):
    from humanlike_tui import cli

    install_run(home)
    assert cli.main(["serve", "--adapter", RUN_NAME, "--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().err


def test_gate_turns_away_past_the_queue():
    from humanlike_tui.engine.inference.server import ApiError, FifoGate

    gate = FifoGate(max_waiting=0)
    with gate:  # one being served, none may wait
        with pytest.raises(ApiError) as err:
            gate.__enter__()
        assert err.value.status == 503 and err.value.code == "busy"
    with gate:  # free again
        pass


def test_cli_serve_answers_until_stopped(home, monkeypatch, capsys):
    """The command itself: loads the run, prints the address, serves, stops cleanly."""
    from humanlike_tui import cli
    from humanlike_tui.commands import serve

    install_run(home)
    ready, stop = threading.Event(), threading.Event()
    args = cli.build_parser().parse_args(["serve", "--adapter", RUN_NAME, "--port", "0"])
    worker = threading.Thread(target=lambda: serve.run(args, ready=ready, stop=stop))
    worker.start()
    try:
        assert ready.wait(120)
        url = capsys.readouterr().out.split("server at ", 1)[1].split()[0]
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=60)
        assert [m.id for m in client.models.list()] == [RUN_NAME]
    finally:
        stop.set()
        worker.join(30)
    assert not worker.is_alive()
