"""`humanlike-tui serve`: a local OpenAI-compatible server for a trained adapter.

    humanlike-tui serve --adapter RUN [--port 8000] [--base-too] [--host 127.0.0.1] [--cors ORIGIN]

Loads the run's base as chat does (quantized as trained) with the adapter on it, and serves
GET /v1/models and POST /v1/chat/completions (streaming or not) until Ctrl+C. Model ids: the run name
(the adapter) and, with --base-too, the base model's name (the same weights with the adapter off).
Any OpenAI client works:

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
    client.chat.completions.create(model="RUN", messages=[{"role": "user", "content": "Hi!"}])

Loopback only unless --host names another address (there is no authentication: anyone who can reach
the port can use the model); on loopback it answers only loopback Host names and no web page unless
--cors names the page's origin. The port is taken before the model loads, so a busy port is known at
once. --port 0 picks a free port. Exit codes: 0 stopped with Ctrl+C, 2 unknown run, port in use or an
address that is not this machine's, 1 the model failed to load.
"""

from __future__ import annotations

import argparse
import sys
import threading

from humanlike_tui.cli import add_trust_argument, consent_to_remote_code


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--adapter", required=True, metavar="NAME",
                        help="a run name (see: humanlike-tui adapters list) or a run's adapter folder")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0 = any free port)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1, this machine only; the server has no "
                             "authentication)")
    parser.add_argument("--base-too", action="store_true",
                        help="also serve the base model (adapter off) under the base model's name")
    parser.add_argument("--cors", action="append", default=[], metavar="ORIGIN",
                        help="let web pages from ORIGIN (e.g. http://localhost:3000; * for any) call the server "
                             "from a browser; repeat for more. Off by default: browsers' cross-origin requests "
                             "are refused")
    parser.add_argument("--max-queue", type=int, default=16, metavar="N",
                        help="requests that may wait for the model (more get 503)")
    add_trust_argument(parser)


def run(args: argparse.Namespace, ready: threading.Event | None = None, stop: threading.Event | None = None) -> int:
    from humanlike_tui.engine.inference.generator import Generator, resolve_adapter
    from humanlike_tui.engine.inference.server import ChatServer, is_loopback, open_listener
    from humanlike_tui.errors import InputError

    if not 0 <= args.port <= 65535:
        raise InputError(f"--port must be 0-65535, got {args.port}")
    if args.max_queue < 0:
        raise InputError(f"--max-queue must be >= 0, got {args.max_queue}")
    if not is_loopback(args.host):
        print(f"warning: listening on {args.host}: anyone who can reach this port can use the model (no "
              "authentication)", file=sys.stderr)

    def log(message: str) -> None:
        print(message, file=sys.stderr)

    consent_to_remote_code(args, resolve_adapter(args.adapter).config)  # before the model loads
    listener = open_listener(args.host, args.port)  # a taken port is known now, not after the load
    try:
        gen = Generator.open(args.adapter, log=log)
    except BaseException:
        listener.server_close()
        raise
    server = ChatServer(gen, args.host, args.port, base_too=args.base_too, max_queue=args.max_queue, log=log,
                        cors=args.cors)
    try:
        server.start(listener)
        print(f"OpenAI-compatible server at {server.url}  models: {', '.join(server.models)}  (Ctrl+C stops)",
              flush=True)
        if ready is not None:
            ready.set()
        if stop is not None:
            stop.wait()
        else:
            _wait_forever()
    except KeyboardInterrupt:
        server.stop()  # the answer being written stops at its next token
        _end_process(gen)
    finally:
        server.stop()
        gen.close()
    return 0


def _end_process(gen) -> None:
    """Ctrl+C: end at once. Letting go of the model first (gen.close's full garbage collection, then the
    interpreter's own at exit) took 2-14 s with a model loaded; the process is ending, the OS takes it all."""
    import os

    if gen.lock.acquire(timeout=5):  # the answer being written has stopped
        gen.lock.release()
    print("stopped", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _wait_forever() -> None:
    import time

    while True:
        time.sleep(3600)
