"""OpenAI-compatible routes: ``POST /v1/chat/completions``, ``POST /v1/embeddings``, ``GET /v1/models``.

Authenticated like every Vendo route (``Authorization: Bearer vk_live_...``: a workspace API
key pays from its workspace; a signed-in user pays from the workspace named by
``X-Vendo-Workspace``, else personally), rate limited, then gated and metered by :class:`vendo.ai.AI`.
The feature a call counts against is ``ai_chat`` / ``ai_embeddings``, or the integrator's
name given in the ``X-Vendo-Feature`` header (``semantic_search``...).

Errors on these routes use OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``
(plus ``upgrade_tier`` on a plan refusal), so OpenAI clients report them as they would
OpenAI's: quota 429 with Vendo's reason code as ``code``; plan 402; vendor failure or timeout
502 with nothing consumed; unknown model 404 ``model_not_found``; malformed request 422; the
vendor rejecting the provider key 401 ``provider_key_rejected`` naming the vendor.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import TYPE_CHECKING, Any, AsyncIterator, Literal, Union

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from vendo.ai.service import CHAT_FEATURE, EMBEDDINGS_FEATURE, AIRefused, Caller
from vendo.capabilities import ChatRequest
from vendo.errors import InvalidInput, Unauthorized, VendoError

if TYPE_CHECKING:  # pragma: no cover
    from vendo.kernel import Kernel

FEATURE_HEADER = "x-vendo-feature"
#: A signed-in user (not an API key) names the workspace that pays with this header.
WORKSPACE_HEADER = "x-vendo-workspace"
_FEATURE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
#: Request fields passed on to the vendor; anything else is ignored (never ``api_base``...).
FORWARDED = ("top_p", "stop", "presence_penalty", "frequency_penalty", "seed", "user", "response_format")
_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "payment_required",
          403: "permission_error", 404: "invalid_request_error", 409: "invalid_request_error",
          422: "invalid_request_error", 429: "insufficient_quota", 502: "api_error", 503: "api_error"}


class TextPart(BaseModel):
    """A text part of a message's content."""

    model_config = ConfigDict(extra="allow")
    type: Literal["text"]
    text: str


class Message(BaseModel):
    """One chat message (``content`` a string or text parts)."""

    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Union[str, list[TextPart], None] = None
    name: str | None = None

    def plain(self) -> dict[str, Any]:
        """The message with its content as one string."""
        content = self.content
        if isinstance(content, list):
            content = "".join(part.text for part in content)
        message: dict[str, Any] = {"role": self.role, "content": content or ""}
        if self.name:
            message["name"] = self.name
        return message


class StreamOptions(BaseModel):
    """``stream_options``."""

    include_usage: bool = False


class ChatBody(BaseModel):
    """The body of ``POST /v1/chat/completions`` (the fields Vendo acts on)."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(..., min_length=1, max_length=256)
    messages: list[Message] = Field(..., min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, gt=0)
    max_completion_tokens: int | None = Field(None, gt=0)
    temperature: float | None = Field(None, ge=0, le=2)
    n: int = Field(1, ge=1, le=1)


class EmbeddingBody(BaseModel):
    """The body of ``POST /v1/embeddings``."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(..., min_length=1, max_length=256)
    input: Union[str, list[str]]
    encoding_format: Literal["float", "base64"] = "float"


def openai_error(exc: VendoError, *, param: str | None = None) -> JSONResponse:
    """A Vendo error in OpenAI's error shape, with its status and headers."""
    status = exc.status_code
    kind = _TYPES.get(status, "api_error")
    code = exc.code
    if status == 429 and code == "RATE_LIMITED":
        kind = "requests"
    if status == 401 and code != "provider_key_rejected":
        code = "invalid_api_key" if code in ("invalid_api_key", "authentication_required", "unauthorized") else code
    if param is None and code in ("model_not_found", "wrong_model_kind"):
        param = "model"
    error: dict[str, Any] = {"message": exc.message, "type": kind, "param": param, "code": code}
    if isinstance(exc, AIRefused) and exc.decision.upgrade_tier:
        error["upgrade_tier"] = exc.decision.upgrade_tier
    return JSONResponse({"error": error}, status_code=status, headers=dict(getattr(exc, "headers", None) or {}))


def _validation(exc: ValidationError) -> JSONResponse:
    first = exc.errors()[0]
    location = ".".join(str(part) for part in first["loc"])
    message = f"{location}: {first['msg']}" if location else first["msg"]
    error = InvalidInput(f"invalid request: {message}", code="invalid_request")
    return openai_error(error, param=str(first["loc"][0]) if first["loc"] else None)


async def _body(request: Request, model: type[BaseModel]) -> Any:
    try:
        data = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("the body is not valid JSON", code="invalid_json") from None
    if not isinstance(data, dict):
        raise InvalidInput("the body must be a JSON object", code="invalid_json")
    return model.model_validate(data)


async def _caller(kernel: Kernel, request: Request, response_headers: dict[str, str]) -> tuple[Caller, str | None]:
    """Who pays, and the feature header. An API key pays from its own workspace: the subject
    is known without reading anything, and its creator's membership and role are checked in
    the admission's own transaction (:attr:`Caller.verify_member`); the rate limit is counted
    on the event loop when nothing limits the caller (no database write), else in a worker
    thread. A signed-in user naming a workspace is checked here first (it may not be one of
    theirs), then rate limited."""
    from vendo.entitlements.endpoints import resolve_subject

    principal = await kernel.authenticate(request)
    if principal is None:
        raise Unauthorized("missing API key: send Authorization: Bearer vk_live_...", code="invalid_api_key")
    feature = request.headers.get(FEATURE_HEADER)
    if feature is not None and not _FEATURE.match(feature):
        raise InvalidInput(f"{FEATURE_HEADER} must be a feature name of the plan catalog", code="invalid_feature")
    key = principal.credential if principal.method == "api_key" else None
    requested = request.headers.get(WORKSPACE_HEADER)
    if key is not None and principal.workspace and requested in (None, principal.workspace):
        subject = principal.workspace
        if _unlimited(kernel, principal, subject):
            response_headers.update(kernel.rate_limits.enforce(principal, subject=subject).headers())
        else:
            result = await run_in_threadpool(kernel.rate_limits.enforce, principal, subject=subject)
            response_headers.update(result.headers())
        return Caller(subject=subject, member=principal.subject, workspace=subject, api_key_id=key,
                      verify_member=True), feature

    def admit() -> tuple[str, str | None]:
        subject, member = resolve_subject(kernel, principal, requested, consuming=True)
        result = kernel.rate_limits.enforce(principal, subject=subject)
        response_headers.update(result.headers())
        return subject, member

    subject, member = await run_in_threadpool(admit)
    workspace = subject if subject.startswith("ws_") else None
    return Caller(subject=subject, member=member, workspace=workspace, api_key_id=key), feature


def _unlimited(kernel: Kernel, principal: Any, subject: str) -> bool:
    """Whether nothing rate limits this caller, decided from the plan cache alone (so counting
    the request writes nothing and reads nothing); ``False`` when the cache has nothing fresh."""
    if kernel.entitlements.plan_state(subject) is None:
        return False
    try:
        policy = kernel.rate_limits.policy(principal, subject=subject)
    except VendoError:
        return False
    return policy.limits is None or not policy.limits.windows()


def _chunk(completion_id: str, created: int, model: str, delta: dict[str, Any], finish: str | None,
           include_usage: bool) -> bytes:
    data: dict[str, Any] = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                            "model": model, "system_fingerprint": None,
                            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
    if include_usage:
        data["usage"] = None
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def _usage(usage: Any) -> dict[str, int]:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens}


def build_router(kernel: Kernel) -> APIRouter:
    """The ``/v1`` routes (mounted without the ``/api/v1`` prefix)."""
    router = APIRouter(prefix="/v1", tags=["ai (OpenAI-compatible)"])

    @router.post("/chat/completions", summary="Chat completion (OpenAI-compatible; stream: true for SSE)")
    async def chat_completions(request: Request) -> Response:
        headers: dict[str, str] = {}
        try:
            caller, feature = await _caller(kernel, request, headers)
            try:
                body: ChatBody = await _body(request, ChatBody)
            except ValidationError as exc:
                return _validation(exc)
            extra = {name: body.model_extra[name] for name in FORWARDED if body.model_extra and name in body.model_extra}
            chat = ChatRequest(model=body.model, messages=tuple(m.plain() for m in body.messages),
                               temperature=body.temperature, max_tokens=body.max_completion_tokens or body.max_tokens,
                               extra=extra)
            if not body.stream:
                answer = await kernel.ai.chat(caller, chat, feature=feature or CHAT_FEATURE)
                return JSONResponse({
                    "id": answer.id if answer.id.startswith("chatcmpl") else f"chatcmpl-{answer.id}",
                    "object": "chat.completion", "created": int(time.time()), "model": body.model,
                    "system_fingerprint": None,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.content,
                                                         "refusal": None},
                                 "logprobs": None, "finish_reason": answer.finish_reason}],
                    "usage": _usage(answer.usage)}, headers=headers)
            chunks = await kernel.ai.stream(caller, chat, feature=feature or CHAT_FEATURE)
            try:  # the vendor's first answer decides the status: a refusal is still a plain error
                first = await chunks.__anext__()
            except StopAsyncIteration:
                first = None
        except VendoError as exc:
            return openai_error(exc)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(_events(first, chunks, body.model, include_usage), media_type="text/event-stream",
                                 headers={**headers, "Cache-Control": "no-cache"})

    @router.post("/embeddings", summary="Embeddings (OpenAI-compatible)")
    async def embeddings(request: Request) -> Response:
        headers: dict[str, str] = {}
        try:
            caller, feature = await _caller(kernel, request, headers)
            try:
                body: EmbeddingBody = await _body(request, EmbeddingBody)
            except ValidationError as exc:
                return _validation(exc)
            inputs = [body.input] if isinstance(body.input, str) else list(body.input)
            result = await kernel.ai.embed(caller, body.model, inputs, feature=feature or EMBEDDINGS_FEATURE)
        except VendoError as exc:
            return openai_error(exc)
        if body.encoding_format == "base64":
            import base64
            import struct

            vectors: list[Any] = [base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode() for v in result.vectors]
        else:
            vectors = [list(v) for v in result.vectors]
        return JSONResponse({"object": "list", "model": body.model,
                             "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
                             "usage": {"prompt_tokens": result.usage.prompt_tokens,
                                       "total_tokens": result.usage.total_tokens}}, headers=headers)

    @router.get("/models", summary="Models the caller's plan may use (OpenAI-compatible)")
    async def models(request: Request) -> Response:
        try:
            principal = await kernel.authenticate(request)
            if principal is None:
                raise Unauthorized("missing API key: send Authorization: Bearer vk_live_...", code="invalid_api_key")
            listed = await kernel.ai.models(principal)
        except VendoError as exc:
            return openai_error(exc)
        return JSONResponse({"object": "list", "data": [
            {"id": info.id, "object": "model", "created": 0, "owned_by": info.provider} for info in listed]})

    return router


async def _chain(first: Any, chunks: AsyncIterator[Any]) -> AsyncIterator[Any]:
    if first is not None:
        yield first
        async for chunk in chunks:
            yield chunk


async def _events(first: Any, chunks: AsyncIterator[Any], model: str, include_usage: bool) -> AsyncIterator[bytes]:
    """The SSE body: a role chunk, content chunks, the finish chunk, the usage chunk when
    asked, ``data: [DONE]``; a refusal or vendor failure mid-stream becomes a final error event."""
    completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    yield _chunk(completion_id, created, model, {"role": "assistant", "content": ""}, None, include_usage)
    try:
        async for chunk in _chain(first, chunks):
            if chunk.delta:
                yield _chunk(completion_id, created, model, {"content": chunk.delta}, None, include_usage)
            if chunk.finish_reason:
                yield _chunk(completion_id, created, model, {}, chunk.finish_reason, include_usage)
                if include_usage and chunk.usage is not None:
                    final = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                             "model": model, "system_fingerprint": None, "choices": [], "usage": _usage(chunk.usage)}
                    yield b"data: " + json.dumps(final, separators=(",", ":")).encode() + b"\n\n"
    except VendoError as exc:
        body = json.loads(openai_error(exc).body)
        yield b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()
    yield b"data: [DONE]\n\n"
