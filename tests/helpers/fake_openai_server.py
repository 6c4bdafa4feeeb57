"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests (stdlib only, one thread per request).

It implements ``POST /v1/chat/completions`` with and without ``stream: true`` (server-sent events in the
OpenAI chunk format) and ``GET /v1/models``. ``mode`` picks the behaviour of the next requests:

- ``"normal"``: answer with ``reply`` (default: a sentence citing [1]); ``reply`` may be a callable
  taking the request body and returning the text, so a test can answer from the prompt.
- ``"slow"``: sleep ``delay_s`` before answering (past the client's timeout).
- ``"stall"``: stream the first chunk, then sleep ``delay_s`` (a server that hangs mid-answer).
- ``"error"``: HTTP 500 with an OpenAI-style error body.
- ``"garbage"``: HTTP 200 with a body that is not JSON (or SSE lines that are not JSON).
- ``"empty"``: an answer with empty content.

Every request body is recorded in ``requests`` (parsed JSON) for assertions on the prompt.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_REPLY = "The answer is in the first passage [1]."

Reply = str | Callable[[dict[str, Any]], str]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


class FakeOpenAIServer:
    def __init__(self, mode: str = "normal", reply: Reply = DEFAULT_REPLY, delay_s: float = 5.0):
        self.mode = mode
        self.reply = reply
        self.delay_s = delay_s
        self.requests: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> FakeOpenAIServer:
        handler = _make_handler(self)
        self._httpd = _Server(("127.0.0.1", 0), handler)  # port 0: the OS picks a free one
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # wakes sleeping "slow" handlers
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # ---- behaviour ---------------------------------------------------------------------------------------
    def reply_for(self, body: dict[str, Any]) -> str:
        return self.reply(body) if callable(self.reply) else self.reply

    def sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    payload = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


def _pieces(text: str) -> list[str]:
    """Token-like pieces: words for English, a few characters at a time otherwise."""
    out: list[str] = []
    current = ""
    for ch in text:
        current += ch
        if ch.isspace() or len(current) >= 3:
            out.append(current)
            current = ""
    if current:
        out.append(current)
    return out


def _make_handler(server: FakeOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

        def _send_json(self, status: int, payload: Any) -> None:
            data = json.dumps(payload, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.rstrip("/") in ("/v1/models", "/models"):
                self._send_json(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
            else:
                self._send_json(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                self._send_json(404, {"error": {"message": "not found"}})
                return
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                self._send_json(400, {"error": {"message": "invalid JSON"}})
                return
            server.requests.append(body)
            mode = server.mode
            model = str(body.get("model", "fake-model"))
            stream = bool(body.get("stream"))
            if mode == "slow":
                server.sleep(server.delay_s)
            if mode == "error":
                self._send_json(500, {"error": {"message": "internal error", "type": "server_error"}})
                return
            if mode == "garbage":
                data = b"<html>this is not JSON {{{" if not stream else b"data: not json at all\n\n"
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream" if stream else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            text = "" if mode == "empty" else server.reply_for(body)
            if not stream:
                self._send_json(
                    200,
                    {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": model,
                        "choices": [
                            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                        ],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
                    },
                )
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            try:
                self.wfile.write(_chunk(model, {"role": "assistant", "content": ""}))
                self.wfile.flush()
                for i, piece in enumerate(_pieces(text)):
                    self.wfile.write(_chunk(model, {"content": piece}))
                    self.wfile.flush()
                    if mode == "stall" and i == 0:
                        server.sleep(server.delay_s)
                self.wfile.write(_chunk(model, {}, "stop"))
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout): nothing to do

    return Handler
