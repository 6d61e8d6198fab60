"""A/B for issue 25's question: would `serve` stream faster on uvicorn + starlette than on the standard
library's ThreadingHTTPServer? Same loaded model, same ChatServer.complete, same official openai client;
rounds alternate between the two servers so machine load falls on both alike.

    pip install --target /tmp/asgi-site uvicorn starlette   # not dependencies of humanlike-tui
    PYTHONPATH=/tmp/asgi-site .venv/bin/python tools/serve_asgi_ab.py RUN [--rounds 6] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import queue
import threading
import time


def asgi_app(chat):
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    from humanlike_tui.engine.inference.server import parse_chat_request

    async def completions(request):
        req = parse_chat_request(await request.json(), chat.models)
        pieces: queue.Queue = queue.Queue()

        def work():
            result = chat.complete(req, on_text=pieces.put)
            pieces.put(result)

        threading.Thread(target=work, daemon=True).start()

        def events():  # starlette runs a sync iterator in its thread pool
            cid, created = "chatcmpl-ab", int(time.time())
            while True:
                item = pieces.get()
                done = isinstance(item, dict)
                choice = {"index": 0, "delta": {} if done else {"content": item},
                          "finish_reason": item["finish_reason"] if done else None}
                data = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": req.model,
                        "choices": [choice]}
                yield f"data: {json.dumps(data)}\n\n"
                if done:
                    usage = {"prompt_tokens": item["prompt_tokens"], "completion_tokens": item["completion_tokens"],
                             "total_tokens": item["prompt_tokens"] + item["completion_tokens"]}
                    yield f"data: {json.dumps({**data, 'choices': [], 'usage': usage})}\n\ndata: [DONE]\n\n"
                    return

        if not req.stream:
            return JSONResponse({"error": "streaming only in this A/B"}, 400)
        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])


def start_uvicorn(chat, port: int = 8765):
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(asgi_app(chat), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}/v1"


def one_round(url: str, model: str, seed: int, max_tokens: int) -> tuple[int, float, float]:
    import openai

    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=300)
    t0 = time.perf_counter()
    first, tokens = None, 0
    for chunk in client.chat.completions.create(
            model=model, stream=True, temperature=0.7, seed=seed, max_tokens=max_tokens,
            stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "Tell me about your favourite place and why."}]):
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - t0
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
    return tokens, time.perf_counter() - t0, first or 0.0


def main() -> None:
    from humanlike_tui.engine.inference.generator import Generator
    from humanlike_tui.engine.inference.server import ChatServer

    p = argparse.ArgumentParser()
    p.add_argument("run")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--max-tokens", type=int, default=64)
    args = p.parse_args()
    gen = Generator.open(args.run)
    stdlib = ChatServer(gen, "127.0.0.1", 0).start()
    uv, uv_url = start_uvicorn(stdlib)
    totals = {"stdlib": [0, 0.0, []], "uvicorn": [0, 0.0, []]}
    for url in (stdlib.url, uv_url):  # warm up both
        one_round(url, gen.name, 0, 4)
    for i in range(args.rounds):
        for name, url in (("stdlib", stdlib.url), ("uvicorn", uv_url)) if i % 2 == 0 else (
                ("uvicorn", uv_url), ("stdlib", stdlib.url)):
            tokens, seconds, first = one_round(url, gen.name, i, args.max_tokens)
            totals[name][0] += tokens
            totals[name][1] += seconds
            totals[name][2].append(first)
    for name, (tokens, seconds, firsts) in totals.items():
        print(json.dumps({"server": name, "completion_tokens": tokens, "seconds": round(seconds, 2),
                          "tokens_per_s": round(tokens / seconds, 1),
                          "first_token_s_mean": round(sum(firsts) / len(firsts), 3)}))
    uv.should_exit = True
    stdlib.stop()
    gen.close()


if __name__ == "__main__":
    main()
