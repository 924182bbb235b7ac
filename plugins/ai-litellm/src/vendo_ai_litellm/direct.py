"""The direct path: routes whose vendor speaks OpenAI's wire format, without litellm.

litellm normalises a hundred vendors' APIs; for a vendor that already speaks OpenAI's
``/chat/completions`` and ``/embeddings`` (OpenAI itself, and the OpenAI-compatible servers:
vLLM, Ollama's ``/v1``, LM Studio, a gateway, a loopback test server), that work is pure
overhead: about 5 ms of CPU per call on these machines, against about 0.5 ms for one POST on a
pooled aiohttp connection. Routes on that wire format go straight to the vendor here; every
other route keeps going through litellm. Both paths raise the same Vendo errors, so the
kernel's gating and metering cannot tell them apart.

One :class:`aiohttp.ClientSession` per event loop keeps connections alive between calls. An
idle pooled connection is dropped after ``keepalive_timeout`` seconds (default 4, below the
5 s most servers keep one), so a request is not written to a connection the vendor is closing.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from typing import Any, AsyncIterator, Mapping

from vendo import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Embeddings,
    InvalidInput,
    NotFound,
    Unauthorized,
    UpstreamError,
    Usage,
)

#: litellm model prefixes whose vendor speaks OpenAI's wire format as it is.
OPENAI_WIRE_PREFIXES = ("openai",)
DEFAULT_BASE = "https://api.openai.com/v1"

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_loads = json.loads


class VendorHTTPError(Exception):
    """The vendor answered with an error status (before any chunk of an answer)."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body


def vendor_model(model: str) -> str:
    """The model name the vendor knows: litellm's string without its ``openai/`` prefix."""
    prefix, _sep, rest = model.partition("/")
    return rest if _sep and prefix in OPENAI_WIRE_PREFIXES else model


def map_status(status: int, body: bytes, vendor: str, model_id: str) -> Exception:
    """A vendor's error status as a Vendo error; the vendor's key is never part of it."""
    if status in (401, 403):
        return Unauthorized(f"the {vendor} API rejected the provider key (check the key stored for {vendor})",
                            code="provider_key_rejected", details={"provider": vendor})
    if status == 404:
        return NotFound(f"the {vendor} API does not know model '{model_id}'", code="model_not_found",
                        details={"model": model_id})
    if status == 429:
        return UpstreamError(f"the {vendor} API is rate limiting these calls", code="upstream_rate_limited",
                             details={"provider": vendor})
    if status in (400, 422) and b"context_length" not in body:
        return InvalidInput(f"the {vendor} API refused the request as invalid", code="upstream_bad_request",
                            details={"provider": vendor})
    return UpstreamError(f"the {vendor} API failed (HTTP {status})", code="upstream_error",
                         details={"provider": vendor})


def map_transport(exc: BaseException, vendor: str) -> Exception:
    """A timeout or connection failure as a Vendo error."""
    if isinstance(exc, asyncio.TimeoutError):
        return UpstreamError(f"the {vendor} API did not answer in time", code="upstream_timeout",
                             details={"provider": vendor})
    return UpstreamError(f"the {vendor} API could not be reached ({type(exc).__name__})", code="upstream_error",
                         details={"provider": vendor})


def _retryable_status(status: int) -> bool:
    return status == 429 or status >= 500


class DirectClient:
    """Chat, streaming and embeddings over OpenAI's wire format on pooled aiohttp connections."""

    def __init__(self, *, keepalive_timeout: float = 4.0, limit: int = 100) -> None:
        self.keepalive_timeout = keepalive_timeout
        self.limit = limit
        self._sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()

    def open(self) -> Any:
        """The running loop's session (created on first use, or here at start-up)."""
        return self._session()

    def _session(self) -> Any:
        import aiohttp

        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(limit=self.limit, keepalive_timeout=self.keepalive_timeout,
                                             ttl_dns_cache=300)
            session = aiohttp.ClientSession(connector=connector, auto_decompress=True, trust_env=False,
                                            skip_auto_headers=("User-Agent",))
            self._sessions[loop] = session
        return session

    async def aclose(self) -> None:
        """Close the connections of the running loop's session (the plugin's shutdown)."""
        loop = asyncio.get_running_loop()
        session = self._sessions.pop(loop, None)
        if session is not None:
            await session.close()

    @staticmethod
    def _headers(api_key: str | None) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        return headers

    async def _post(self, url: str, body: Mapping[str, Any], api_key: str | None, timeout: float,
                    retries: int, vendor: str) -> Any:
        """POST and read a JSON answer; connection failures and 429/5xx are retried ``retries`` times."""
        import aiohttp

        data = _dumps(body).encode()
        headers = self._headers(api_key)
        for attempt in range(retries + 1):
            try:
                async with self._session().post(url, data=data, headers=headers,
                                                timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                    payload = await response.read()
                    if response.status >= 400:
                        raise VendorHTTPError(response.status, payload)
                    return _loads(payload)
            except VendorHTTPError as exc:
                if attempt < retries and _retryable_status(exc.status):
                    continue
                raise
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                if attempt < retries:
                    continue
                raise map_transport(exc, vendor) from None
            except ValueError:  # not JSON
                raise UpstreamError(f"the {vendor} API sent an answer that is not JSON", code="upstream_error",
                                    details={"provider": vendor}) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def chat(self, base: str, body: dict[str, Any], api_key: str | None, timeout: float, retries: int,
                   vendor: str, model: str) -> ChatResponse:
        """``POST {base}/chat/completions``; ``body`` is the OpenAI request (``stream`` false)."""
        data = await self._post(f"{base.rstrip('/')}/chat/completions", body, api_key, timeout, retries, vendor)
        try:
            choice = data["choices"][0]
            usage = data.get("usage") or {}
            return ChatResponse(id=str(data.get("id") or "chatcmpl-vendo"), model=model,
                                content=(choice.get("message") or {}).get("content") or "",
                                finish_reason=choice.get("finish_reason") or "stop",
                                usage=Usage(int(usage.get("prompt_tokens") or 0),
                                            int(usage.get("completion_tokens") or 0)))
        except (KeyError, IndexError, TypeError, AttributeError, ValueError):
            raise UpstreamError(f"the {vendor} API sent an answer that is not a chat completion",
                                code="upstream_error", details={"provider": vendor}) from None

    async def embed(self, base: str, body: dict[str, Any], api_key: str | None, timeout: float, retries: int,
                    vendor: str, model: str) -> Embeddings:
        """``POST {base}/embeddings`` (floats)."""
        data = await self._post(f"{base.rstrip('/')}/embeddings", body, api_key, timeout, retries, vendor)
        try:
            items = sorted(data["data"], key=lambda item: item["index"])
            vectors = tuple(tuple(float(v) for v in item["embedding"]) for item in items)
            usage = data.get("usage") or {}
            return Embeddings(model=model, vectors=vectors, usage=Usage(int(usage.get("prompt_tokens") or 0), 0))
        except (KeyError, TypeError, ValueError):
            raise UpstreamError(f"the {vendor} API sent an answer that is not a list of embeddings",
                                code="upstream_error", details={"provider": vendor}) from None

    async def open_stream(self, base: str, body: dict[str, Any], api_key: str | None, timeout: float,
                          retries: int, vendor: str) -> Any:
        """Send a streaming request and return the response once its status is known (2xx);
        read it with :meth:`events`. Errors before the first byte are raised here (and retried
        like :meth:`_post`), so a caller can still fall back to another route."""
        import aiohttp

        data = _dumps(body).encode()
        headers = self._headers(api_key)
        headers["Accept"] = "text/event-stream"
        for attempt in range(retries + 1):
            try:
                response = await self._session().post(
                    f"{base.rstrip('/')}/chat/completions", data=data, headers=headers,
                    timeout=aiohttp.ClientTimeout(total=None, connect=timeout, sock_read=timeout))
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                if attempt < retries:
                    continue
                raise map_transport(exc, vendor) from None
            if response.status < 400:
                return response
            try:
                payload = await response.read()
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                payload = b""
            finally:
                response.release()
            if attempt < retries and _retryable_status(response.status):
                continue
            raise VendorHTTPError(response.status, payload)
        raise AssertionError("unreachable")  # pragma: no cover

    async def events(self, response: Any, vendor: str) -> AsyncIterator[dict[str, Any]]:
        """The JSON objects of an SSE answer until ``data: [DONE]`` (or the end of the body)."""
        import aiohttp

        try:
            async for raw in response.content:
                line = raw.strip()
                if not line.startswith(b"data:"):
                    continue  # comments, event names, blank separators
                data = line[5:].strip()
                if data == b"[DONE]":
                    return
                try:
                    event = _loads(data)
                except ValueError:
                    raise UpstreamError(f"the {vendor} API sent a stream event that is not JSON",
                                        code="upstream_error", details={"provider": vendor}) from None
                if isinstance(event, dict) and "error" in event and not event.get("choices"):
                    raise UpstreamError(f"the {vendor} API failed during the answer", code="upstream_error",
                                        details={"provider": vendor})
                yield event
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise map_transport(exc, vendor) from None
        finally:
            response.release()


def chunks_of(events: AsyncIterator[dict[str, Any]], model: str) -> AsyncIterator[ChatChunk]:
    """ChatChunks from OpenAI stream events: one per content delta, then a last one with
    ``finish_reason`` and ``usage`` (``None`` when the vendor reported none)."""

    async def generate() -> AsyncIterator[ChatChunk]:
        finish: str | None = None
        usage: Usage | None = None
        chunk_id = "chatcmpl-vendo"
        async for event in events:
            chunk_id = event.get("id") or chunk_id
            for choice in event.get("choices") or ():
                delta = (choice.get("delta") or {}).get("content")
                if delta:
                    yield ChatChunk(id=chunk_id, model=model, delta=delta)
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
            reported = event.get("usage")
            if reported and reported.get("completion_tokens") is not None:
                usage = Usage(int(reported.get("prompt_tokens") or 0), int(reported["completion_tokens"] or 0))
        yield ChatChunk(id=chunk_id, model=model, delta="", finish_reason=finish or "stop", usage=usage)

    return generate()
