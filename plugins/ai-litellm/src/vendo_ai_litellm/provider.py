"""The ``litellm`` AI provider: Vendo's AIProvider protocol through litellm.

litellm is imported on first use (it takes about 3 s), with ``LITELLM_LOCAL_MODEL_COST_MAP``
set so it never downloads its price list. Credentials are passed on every call: the caller's
own key (BYOK) when the request carries one, else the operator's key from the settings.

Routes whose vendor speaks OpenAI's wire format (``openai/...`` models, or ``wire = "openai"``)
take the direct path of :mod:`vendo_ai_litellm.direct` (pooled aiohttp connections, no litellm
on the call); the others go through litellm. A fallback chain may mix both.
"""

from __future__ import annotations

import logging
import os
from typing import Any, AsyncIterator, Mapping

from vendo import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Embeddings,
    InvalidInput,
    ModelInfo,
    NotFound,
    Unauthorized,
    UpstreamError,
    Usage,
)

from vendo_ai_litellm.direct import DEFAULT_BASE, DirectClient, VendorHTTPError, chunks_of, map_status, vendor_model
from vendo_ai_litellm.settings import LiteLLMSettings, ModelRoute

_litellm: Any = None
_HOST_LOGGERS = ("httpx", "apscheduler.executors.default", "apscheduler.scheduler")


def litellm_module() -> Any:
    """litellm, imported once, offline (local price map), quiet.

    Importing litellm sets the host's ``httpx`` logger (and a few others) to WARNING; the
    levels the host had are put back so that loading a plugin never changes its logging.
    """
    global _litellm
    if _litellm is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        loggers = [logging.getLogger(name) for name in _HOST_LOGGERS]
        levels = [logger.level for logger in loggers]
        import litellm

        for logger, level in zip(loggers, levels):
            logger.setLevel(level)

        litellm.suppress_debug_info = True
        litellm.telemetry = False
        litellm.drop_params = True
        _litellm = litellm
    return _litellm


def _map_error(exc: Exception, route: ModelRoute) -> Exception:
    """A litellm (vendor) error as a Vendo error; the vendor's key is never part of it."""
    lib = litellm_module()
    vendor = route.vendor_name
    if isinstance(exc, lib.AuthenticationError) or getattr(exc, "status_code", None) in (401, 403):
        return Unauthorized(f"the {vendor} API rejected the provider key (check the key stored for {vendor})",
                            code="provider_key_rejected", details={"provider": vendor})
    if isinstance(exc, lib.NotFoundError):
        return NotFound(f"the {vendor} API does not know model '{route.id}'", code="model_not_found",
                        details={"model": route.id})
    if isinstance(exc, lib.Timeout):
        return UpstreamError(f"the {vendor} API did not answer in time", code="upstream_timeout",
                             details={"provider": vendor})
    if isinstance(exc, lib.BadRequestError) and not isinstance(exc, lib.ContextWindowExceededError):
        return InvalidInput(f"the {vendor} API refused the request as invalid", code="upstream_bad_request",
                            details={"provider": vendor})
    if isinstance(exc, lib.RateLimitError):
        return UpstreamError(f"the {vendor} API is rate limiting these calls", code="upstream_rate_limited",
                             details={"provider": vendor})
    return UpstreamError(f"the {vendor} API failed ({type(exc).__name__})", code="upstream_error",
                         details={"provider": vendor})


def _retryable(error: Exception) -> bool:
    return isinstance(error, UpstreamError)


class LiteLLMProvider:
    """Chat, streaming and embeddings through litellm for the models of the settings."""

    def __init__(self, settings: LiteLLMSettings) -> None:
        self.settings = settings
        self._routes = {route.id: route for route in settings.models}
        self.direct = DirectClient(keepalive_timeout=settings.keepalive_timeout)

    # -- models --------------------------------------------------------------------------

    def route(self, model: str) -> ModelRoute:
        """The configured route of a model id.

        :raises NotFound: ``model_not_found``.
        """
        route = self._routes.get(model)
        if route is None:
            raise NotFound(f"model '{model}' does not exist", code="model_not_found", details={"model": model})
        return route

    async def models(self) -> list[ModelInfo]:
        """Every configured model, with its vendor and prices (settings, else litellm's map)."""
        return [self._info(route) for route in self._routes.values()]

    def _info(self, route: ModelRoute) -> ModelInfo:
        prompt, completion = route.input_cost_per_token, route.output_cost_per_token
        if prompt is None or completion is None:
            known = litellm_module().model_cost.get(route.model) or {}
            prompt = prompt if prompt is not None else known.get("input_cost_per_token")
            completion = completion if completion is not None else known.get("output_cost_per_token")
        return ModelInfo(id=route.id, provider=route.vendor_name, kind=route.kind,
                         input_cost_per_token=prompt, output_cost_per_token=completion)

    # -- calls ---------------------------------------------------------------------------

    def _arguments(self, route: ModelRoute, api_key: str | None, timeout: float | None) -> dict[str, Any]:
        key = api_key if api_key is not None else (
            self.settings.api_key.get_secret_value() if self.settings.api_key else None)
        arguments: dict[str, Any] = {"model": route.model, "timeout": timeout or route.timeout or self.settings.timeout,
                                     "max_retries": self.settings.num_retries}
        base = route.api_base or self.settings.api_base
        if base:
            arguments["api_base"] = base
        if key is not None:
            arguments["api_key"] = key
        return arguments

    def _chain(self, model: str) -> list[ModelRoute]:
        route = self.route(model)
        return [route, *(self._routes[f] for f in route.fallbacks)]

    def _chat_arguments(self, route: ModelRoute, request: ChatRequest) -> dict[str, Any]:
        arguments = self._arguments(route, request.api_key, request.timeout)
        arguments["messages"] = [dict(m) for m in request.messages]
        if request.temperature is not None:
            arguments["temperature"] = request.temperature
        if request.max_tokens is not None:
            arguments["max_tokens"] = request.max_tokens
        for name, value in (request.extra or {}).items():
            arguments.setdefault(name, value)
        return arguments

    # -- the direct path (OpenAI's wire format) ---------------------------------------------

    def _key(self, api_key: str | None) -> str | None:
        if api_key is not None:
            return api_key
        return self.settings.api_key.get_secret_value() if self.settings.api_key else None

    def _base(self, route: ModelRoute) -> str:
        return route.api_base or self.settings.api_base or DEFAULT_BASE

    def _timeout(self, route: ModelRoute, timeout: float | None) -> float:
        return timeout or route.timeout or self.settings.timeout

    def _direct_body(self, route: ModelRoute, request: ChatRequest, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": vendor_model(route.model), "messages": [dict(m) for m in request.messages]}
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        for name, value in (request.extra or {}).items():
            body.setdefault(name, value)
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    async def _chat_direct(self, route: ModelRoute, request: ChatRequest) -> ChatResponse:
        try:
            return await self.direct.chat(self._base(route), self._direct_body(route, request, False),
                                          self._key(request.api_key), self._timeout(route, request.timeout),
                                          self.settings.num_retries, route.vendor_name, request.model)
        except VendorHTTPError as exc:
            raise map_status(exc.status, exc.body, route.vendor_name, route.id) from None

    # -- calls ---------------------------------------------------------------------------

    async def chat(self, request: ChatRequest) -> ChatResponse:
        """A complete answer; on a vendor failure (5xx, timeout) the route's fallbacks are tried in order."""
        error: Exception | None = None
        for route in self._chain(request.model):
            if route.direct:
                try:
                    return await self._chat_direct(route, request)
                except UpstreamError as exc:
                    error = exc
                    continue
            lib = litellm_module()
            try:
                response = await lib.acompletion(**self._chat_arguments(route, request))
            except Exception as exc:  # litellm raises its own exception family
                error = _map_error(exc, route)
                if _retryable(error):
                    continue
                raise error from None
            choice = response.choices[0]
            usage = getattr(response, "usage", None)
            return ChatResponse(id=response.id, model=request.model, content=choice.message.content or "",
                                finish_reason=choice.finish_reason or "stop",
                                usage=Usage(int(getattr(usage, "prompt_tokens", 0) or 0),
                                            int(getattr(usage, "completion_tokens", 0) or 0)))
        assert error is not None
        raise error

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Chunks as the vendor sends them; the last one carries ``finish_reason`` and ``usage``.
        Fallbacks apply until the first chunk; a failure after it is raised."""
        error: Exception | None = None
        for route in self._chain(request.model):
            if route.direct:
                try:
                    response = await self.direct.open_stream(
                        self._base(route), self._direct_body(route, request, True), self._key(request.api_key),
                        self._timeout(route, request.timeout), self.settings.num_retries, route.vendor_name)
                except VendorHTTPError as exc:
                    error = map_status(exc.status, exc.body, route.vendor_name, route.id)
                    if _retryable(error):
                        continue
                    raise error from None
                except UpstreamError as exc:
                    error = exc
                    continue
                async for chunk in self._direct_chunks(request.model, route, response):
                    yield chunk
                return
            lib = litellm_module()
            arguments = self._chat_arguments(route, request)
            arguments.update(stream=True, stream_options={"include_usage": True})
            try:
                response = await lib.acompletion(**arguments)
                iterator = response.__aiter__()
                first = await iterator.__anext__()
            except StopAsyncIteration:
                first, iterator = None, None
            except Exception as exc:
                error = _map_error(exc, route)
                if _retryable(error):
                    continue
                raise error from None
            async for chunk in self._chunks(request.model, route, first, iterator):
                yield chunk
            return
        assert error is not None
        raise error

    async def _direct_chunks(self, model: str, route: ModelRoute, response: Any) -> AsyncIterator[ChatChunk]:
        text: list[str] = []
        source = chunks_of(self.direct.events(response, route.vendor_name), model)
        try:
            async for chunk in source:
                if chunk.usage is None and chunk.finish_reason:  # the vendor did not report usage
                    chunk = ChatChunk(id=chunk.id, model=model, delta="", finish_reason=chunk.finish_reason,
                                      usage=Usage(0, self.count_text(route.id, "".join(text))))
                elif chunk.delta:
                    text.append(chunk.delta)
                yield chunk
        finally:
            await source.aclose()
            response.release()

    async def _chunks(self, model: str, route: ModelRoute, first: Any, iterator: Any) -> AsyncIterator[ChatChunk]:
        finish: str | None = None
        usage: Usage | None = None
        chunk_id = "chatcmpl-vendo"
        text: list[str] = []
        current = first
        while current is not None:
            chunk_id = getattr(current, "id", None) or chunk_id
            for choice in getattr(current, "choices", None) or ():
                delta = getattr(getattr(choice, "delta", None), "content", None)
                if delta:
                    text.append(delta)
                    yield ChatChunk(id=chunk_id, model=model, delta=delta)
                if getattr(choice, "finish_reason", None):
                    finish = choice.finish_reason
            reported = getattr(current, "usage", None)
            if reported is not None and getattr(reported, "completion_tokens", None) is not None:
                usage = Usage(int(reported.prompt_tokens or 0), int(reported.completion_tokens or 0))
            try:
                current = await iterator.__anext__() if iterator is not None else None
            except StopAsyncIteration:
                current = None
            except Exception as exc:
                raise _map_error(exc, route) from None
        if usage is None:  # the vendor did not report usage: count what it sent
            usage = Usage(0, self.count_text(route.id, "".join(text)))
        yield ChatChunk(id=chunk_id, model=model, delta="", finish_reason=finish or "stop", usage=usage)

    async def embed(self, model: str, inputs: list[str], *, api_key: str | None = None) -> Embeddings:
        """One vector per input (fallbacks on vendor failures, like chat)."""
        error: Exception | None = None
        for route in self._chain(model):
            if route.direct:
                body = {"model": vendor_model(route.model), "input": list(inputs), "encoding_format": "float"}
                try:
                    return await self.direct.embed(self._base(route), body, self._key(api_key),
                                                   self._timeout(route, None), self.settings.num_retries,
                                                   route.vendor_name, model)
                except VendorHTTPError as exc:
                    error = map_status(exc.status, exc.body, route.vendor_name, route.id)
                    if _retryable(error):
                        continue
                    raise error from None
                except UpstreamError as exc:
                    error = exc
                    continue
            lib = litellm_module()
            try:
                response = await lib.aembedding(input=list(inputs), encoding_format="float",
                                                 **self._arguments(route, api_key, None))
            except Exception as exc:
                error = _map_error(exc, route)
                if _retryable(error):
                    continue
                raise error from None
            items = sorted(response.data, key=lambda item: item["index"] if isinstance(item, Mapping) else item.index)
            vectors = tuple(tuple(float(v) for v in (item["embedding"] if isinstance(item, Mapping) else item.embedding))
                            for item in items)
            usage = getattr(response, "usage", None)
            return Embeddings(model=model, vectors=vectors,
                              usage=Usage(int(getattr(usage, "prompt_tokens", 0) or 0), 0))
        assert error is not None
        raise error

    # -- tokens and cost -------------------------------------------------------------------

    def count_tokens(self, model: str, messages: list[Mapping[str, Any]]) -> int:
        """Prompt tokens by litellm's tokenizer for the model (tiktoken's cl100k when unknown)."""
        route = self.route(model)
        return int(litellm_module().token_counter(model=route.model, messages=[dict(m) for m in messages]))

    def count_text(self, model: str, text: str) -> int:
        """Tokens of a plain text for the model."""
        route = self.route(model)
        return int(litellm_module().token_counter(model=route.model, text=text)) if text else 0

    def cost(self, model: str, usage: Usage) -> float:
        """US dollars: the settings' prices, else litellm's price map, else 0.0 (unknown, self-hosted)."""
        info = self._info(self.route(model))
        return float((info.input_cost_per_token or 0.0) * usage.prompt_tokens
                     + (info.output_cost_per_token or 0.0) * usage.completion_tokens)

