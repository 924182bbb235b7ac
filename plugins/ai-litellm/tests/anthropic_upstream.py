"""A loopback server speaking Anthropic's Messages API (``POST /v1/messages``, JSON or SSE),
for the tests of vendo-ai-litellm's litellm path to a non-OpenAI vendor. It answers a fixed
reply deterministically, checks ``x-api-key`` and ``anthropic-version`` as Anthropic does, and
records what it received."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REPLY = ["Hello", " from", " the", " Anthropic", " loopback."]
INPUT_TOKENS = 11


@dataclass
class AnthropicUpstream:
    """``AnthropicUpstream(api_key=...)``: requests without that ``x-api-key`` get Anthropic's 401."""

    api_key: str
    received: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                upstream._handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def _json(handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("content-type", "application/json")
        handler.send_header("content-length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        raw = handler.rfile.read(int(handler.headers.get("content-length") or 0))
        body = json.loads(raw or b"{}")
        headers = {k.lower(): v for k, v in handler.headers.items()}
        self.received.append({"path": handler.path, "headers": headers, "body": body})
        if handler.path != "/v1/messages":
            return self._json(handler, 404, {"type": "error", "error": {"type": "not_found_error",
                                                                          "message": "Not found"}})
        if headers.get("x-api-key") != self.api_key:
            return self._json(handler, 401, {"type": "error", "error": {
                "type": "authentication_error", "message": "invalid x-api-key"}})
        if not headers.get("anthropic-version") or not body.get("max_tokens") or not body.get("messages"):
            return self._json(handler, 400, {"type": "error", "error": {
                "type": "invalid_request_error", "message": "anthropic-version, max_tokens and messages are required"}})
        words = REPLY[:max(1, int(body["max_tokens"]))]
        if not body.get("stream"):
            return self._json(handler, 200, {
                "id": "msg_loopback", "type": "message", "role": "assistant", "model": body["model"],
                "content": [{"type": "text", "text": "".join(words)}], "stop_reason": "end_turn",
                "stop_sequence": None, "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": len(words)}})
        handler.send_response(200)
        handler.send_header("content-type", "text/event-stream")
        handler.send_header("connection", "close")
        handler.end_headers()

        def event(kind: str, data: dict[str, Any]) -> None:
            handler.wfile.write(f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode())
            handler.wfile.flush()

        event("message_start", {"message": {"id": "msg_loopback", "type": "message", "role": "assistant",
                                            "model": body["model"], "content": [], "stop_reason": None,
                                            "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": 1}}})
        event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
        for word in words:
            event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": word}})
        event("content_block_stop", {"index": 0})
        event("message_delta", {"delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                "usage": {"output_tokens": len(words)}})
        event("message_stop", {})
        handler.close_connection = True
