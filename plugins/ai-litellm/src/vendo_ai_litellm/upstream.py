"""A deterministic OpenAI-compatible HTTP server on loopback, for tests and benchmarks.

It answers ``POST /v1/chat/completions`` (JSON, or ``stream: true`` as server-sent events in
OpenAI's chunk format ending with ``data: [DONE]``, with ``stream_options.include_usage``),
``POST /v1/embeddings`` and ``GET /v1/models``, and records what it received (the
``Authorization`` header among it) so a test can tell which key reached the vendor.

The reply to a chat is ``"Echo: "`` followed by the words of the last user message, cut at
``max_tokens`` words; a token is a whitespace-separated word, on both sides. Tell it to
misbehave with :meth:`Upstream.set_mode`: ``"fail"`` (500), ``"timeout"`` (sleeps before
answering), ``"unauthorized"`` (401), ``"ignore_max_tokens"`` (replies with
``long_reply_words`` words whatever ``max_tokens`` says). With ``api_key`` set, requests
without that bearer key get 401, like a vendor rejecting a key::

    with Upstream(api_key="sk-operator") as upstream:
        upstream.base_url            # "http://127.0.0.1:<port>/v1"
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

CREATED = 1_700_000_000
EMBED_DIM = 8


@dataclass
class Received:
    """One request as the upstream saw it."""

    path: str
    authorization: str | None
    body: dict[str, Any]


@dataclass
class _State:
    mode: str = "ok"
    delay: float = 5.0
    long_reply_words: int = 200
    requests: list[Received] = field(default_factory=list)


def words(text: str) -> list[str]:
    """The tokens of ``text`` as this upstream counts them."""
    return text.split()


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """Prompt tokens: the words of every message's content (at least 1)."""
    return max(1, sum(len(words(str(m.get("content") or ""))) for m in messages))


def reply_for(messages: list[dict[str, Any]], max_tokens: int | None) -> list[str]:
    """The reply's tokens: ``Echo:`` and the last user message's words, cut at ``max_tokens``."""
    last = next((str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "user"), "")
    tokens = ["Echo:", *words(last)]
    return tokens[:max_tokens] if max_tokens else tokens


def vector_for(text: str) -> list[float]:
    """A deterministic unit-free vector derived from the text's SHA-256."""
    digest = hashlib.sha256(text.encode()).digest()
    return [round(b / 255.0 - 0.5, 6) for b in digest[:EMBED_DIM]]


def build_app(state: _State, api_key: str | None, models: list[str]) -> Any:
    """The ASGI app (FastAPI) of the upstream."""
    app = FastAPI()

    def _error(status: int, message: str, kind: str, code: str) -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": code}},
                            status_code=status)

    async def _gate(request: Request, body: dict[str, Any]) -> JSONResponse | None:
        if len(state.requests) >= 10_000:  # benchmarks send many: keep the newest
            del state.requests[:5_000]
        state.requests.append(Received(request.url.path, request.headers.get("authorization"), body))
        if state.mode == "fail":
            return _error(500, "upstream exploded", "server_error", "internal_error")
        if state.mode == "timeout":
            await asyncio.sleep(state.delay)
        supplied = request.headers.get("authorization", "")
        if state.mode == "unauthorized" or (api_key is not None and supplied != f"Bearer {api_key}"):
            return _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        return None

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": m, "object": "model", "created": CREATED, "owned_by": "loopback"}
                                           for m in models]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        refused = await _gate(request, body)
        if refused is not None:
            return refused
        messages = body.get("messages") or []
        limit = body.get("max_tokens") or body.get("max_completion_tokens")
        tokens = ["word"] * state.long_reply_words if state.mode == "ignore_max_tokens" else reply_for(messages, limit)
        usage = {"prompt_tokens": prompt_tokens(messages), "completion_tokens": len(tokens),
                 "total_tokens": prompt_tokens(messages) + len(tokens)}
        finish = "length" if limit and len(tokens) >= limit and state.mode != "ignore_max_tokens" else "stop"
        model = body.get("model", "unknown")
        if not body.get("stream"):
            return {"id": "chatcmpl-loopback", "object": "chat.completion", "created": CREATED, "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": " ".join(tokens)},
                                 "finish_reason": finish}], "usage": usage}
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        async def events() -> AsyncIterator[bytes]:
            def chunk(delta: dict[str, Any], finish_reason: str | None) -> bytes:
                data: dict[str, Any] = {"id": "chatcmpl-loopback", "object": "chat.completion.chunk",
                                        "created": CREATED, "model": model,
                                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}
                if include_usage:
                    data["usage"] = None
                return b"data: " + json.dumps(data).encode() + b"\n\n"

            yield chunk({"role": "assistant", "content": ""}, None)
            for index, token in enumerate(tokens):
                yield chunk({"content": token if index == 0 else " " + token}, None)
            yield chunk({}, finish)
            if include_usage:
                final = {"id": "chatcmpl-loopback", "object": "chat.completion.chunk", "created": CREATED,
                         "model": model, "choices": [], "usage": usage}
                yield b"data: " + json.dumps(final).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Any:
        body = await request.json()
        refused = await _gate(request, body)
        if refused is not None:
            return refused
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
        if body.get("encoding_format") == "base64":
            import base64
            import struct

            encode: Any = lambda v: base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode()  # noqa: E731
        else:
            encode = lambda v: v  # noqa: E731
        data = [{"object": "embedding", "index": i, "embedding": encode(vector_for(str(text)))}
                for i, text in enumerate(inputs)]
        used = sum(max(1, len(words(str(t)))) for t in inputs)
        return {"object": "list", "data": data, "model": body.get("model", "unknown"),
                "usage": {"prompt_tokens": used, "total_tokens": used}}

    return app


class LoopbackServer:
    """Any ASGI app served by uvicorn in a background thread on ``127.0.0.1`` and a free port."""

    def __init__(self, app: Any, *, lifespan: str = "off") -> None:
        self.app = app
        self.lifespan = lifespan
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LoopbackServer:
        """Start serving; return once the port accepts connections."""
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", lifespan=self.lifespan, timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the loopback server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class Upstream(LoopbackServer):
    """The deterministic OpenAI-compatible upstream on loopback (see the module docstring)."""

    def __init__(self, *, api_key: str | None = None, models: list[str] | None = None) -> None:
        self.api_key = api_key
        self.models = models or ["loopback-chat", "loopback-embed"]
        self._state = _State()
        super().__init__(build_app(self._state, self.api_key, self.models))

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``."""
        return f"{self.url}/v1"

    @property
    def requests(self) -> list[Received]:
        """What the upstream received, oldest first."""
        return self._state.requests

    def set_mode(self, mode: str, *, delay: float = 5.0, long_reply_words: int = 200) -> None:
        """``ok``, ``fail``, ``timeout``, ``unauthorized`` or ``ignore_max_tokens`` (see the module)."""
        if mode not in ("ok", "fail", "timeout", "unauthorized", "ignore_max_tokens"):
            raise ValueError(f"unknown mode {mode!r}")
        self._state.mode, self._state.delay, self._state.long_reply_words = mode, delay, long_reply_words


def main() -> None:
    """``python -m vendo_ai_litellm.upstream --port 8100``: serve in the foreground."""
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--api-key", default=None)
    args = parser.parse_args()
    uvicorn.run(build_app(_State(), args.api_key, ["loopback-chat", "loopback-embed"]), host="127.0.0.1",
                port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
