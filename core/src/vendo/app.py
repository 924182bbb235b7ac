"""The HTTP app: ``create_app()`` builds a FastAPI application around a kernel.

Every error is answered as ``{"error": {"code", "message", "details"}}`` (plus the
request id), including validation errors, 404 and 405. Each response carries an
``X-Request-ID``; Prometheus metrics are served at ``/metrics``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vendo._version import __version__
from vendo.config import Settings
from vendo.errors import CounterStoreUnavailable, VendoError
from vendo.kernel import Kernel

log = logging.getLogger("vendo.http")

#: Seconds between two runs of the usage journal (``kernel.entitlements.maintain``) in the server.
JOURNAL_INTERVAL = 5.0

REQUEST_ID_HEADER = "x-request-id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    402: "payment_required",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    410: "gone",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
}


def error_response(
    status: int, code: str, message: str, details: dict[str, Any] | None = None,
    request: Request | None = None, headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A JSON error in Vendo's one shape."""
    body: dict[str, Any] = {"error": {"code": code, "message": message, "details": details or {}}}
    request_id = getattr(request.state, "request_id", None) if request is not None else None
    if request_id:
        body["error"]["request_id"] = request_id
    return JSONResponse(body, status_code=status, headers=headers)


class _RequestContext:
    """Pure ASGI middleware: request id in and out, and request metrics by route template."""

    def __init__(self, app: ASGIApp, kernel: Kernel, templates: dict[int, str]) -> None:
        self.app = app
        self.kernel = kernel
        self.templates = templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = incoming if incoming and _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status_holder = [500]
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            template = self.templates.get(id(route)) or getattr(route, "path", None) or "<unmatched>"
            method = scope["method"]
            metrics = self.kernel.metrics
            metrics.http_requests.labels(method, template, str(status_holder[0])).inc()
            metrics.http_latency.labels(method, template).observe(time.perf_counter() - started)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(VendoError)
    async def vendo_error(request: Request, exc: VendoError) -> JSONResponse:
        headers = getattr(exc, "headers", None)
        return error_response(exc.status_code, exc.code, exc.message, exc.details, request, headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        detail = exc.detail
        if isinstance(detail, dict) and "code" in detail:
            return error_response(
                exc.status_code, str(detail["code"]), str(detail.get("message", "")),
                detail.get("details"), request, exc.headers,
            )
        if exc.status_code == 404 and detail == "Not Found":
            message = f"no route matches {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        else:
            message = str(detail)
        return error_response(exc.status_code, code, message, None, request, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "message": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        summary = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['message']}" for e in errors[:5])
        return error_response(422, "validation_error", f"invalid request: {summary}", {"errors": errors}, request)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal server error; the request id identifies it in the logs", None, request)


def _install_kernel_routes(app: FastAPI, kernel: Kernel) -> None:
    @app.get("/api/health", tags=["kernel"], summary="Database, migrations and plugin statuses")
    def health() -> JSONResponse:
        database: dict[str, Any] = {"ok": True}
        try:
            status = kernel.check_database()
            database["migrations"] = {"current": list(status.current), "heads": list(status.heads)}
        except VendoError as exc:
            database = {"ok": False, "error": exc.message}
        plugins = [
            {"name": p.name, "version": p.version, "status": p.status, "error": p.error} for p in kernel.plugins
        ]
        degraded = any(p["status"] in ("failed", "incompatible") for p in plugins)
        healthy = database["ok"]
        body = {
            "status": ("degraded" if degraded else "ok") if healthy else "unavailable",
            "version": __version__,
            "database": database,
            "plugins": plugins,
        }
        return JSONResponse(body, status_code=200 if healthy else 503)

    if kernel.settings.metrics:

        @app.get("/metrics", tags=["kernel"], summary="Prometheus metrics", include_in_schema=False)
        def metrics() -> Response:
            return Response(kernel.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


async def run_usage_journal(kernel: Kernel, stop: asyncio.Event, interval: float = JOURNAL_INTERVAL) -> None:
    """Until ``stop`` is set, every ``interval`` seconds: restore a counter store that lost its
    data from the ledger and apply the usage journalled while it was unreachable (in a worker
    thread). A failure is logged once until it changes; nothing here stops the server."""
    failing: str | None = None
    while not stop.is_set():
        try:
            applied = await asyncio.to_thread(kernel.entitlements.maintain)
            if failing is not None or applied:
                log.warning("usage journal: %d journalled usage record(s) applied", applied)
            failing = None
        except CounterStoreUnavailable as exc:
            if failing != exc.message:
                log.warning("counter store unavailable (%s): usage is journalled until it is back", exc.message)
            failing = exc.message
        except Exception as exc:
            if failing != repr(exc):
                log.exception("applying the usage journal failed")
            failing = repr(exc)
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except asyncio.TimeoutError:
            pass


async def run_usage_reports(kernel: Kernel, stop: asyncio.Event, interval: float) -> None:
    """Until ``stop`` is set, every ``interval`` seconds: push the usage billed by usage-based
    prices to the billing providers (:meth:`vendo.billing.service.Billing.report_usage`).
    Failures are kept for the next run and logged; nothing here stops the server."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
            return
        except asyncio.TimeoutError:
            pass
        try:
            await kernel.billing.report_usage()
        except VendoError as exc:  # no provider or no catalog: nothing to report by
            log.debug("usage reports skipped: %s", exc.message)
        except Exception:
            log.exception("reporting usage to the billing provider failed")


def _install_ai_gateway(app: FastAPI, kernel: Kernel, templates: dict[int, str]) -> None:
    """Mount the OpenAI-compatible ``/v1`` routes of :mod:`vendo.ai` when an AI provider is
    registered, unless a plugin already serves one of those paths (its routes win; logged)."""
    if not kernel.providers.registered("ai"):
        return
    from vendo.ai.openai_routes import build_router

    router = build_router(kernel)
    taken = {path for _plugin, other, prefix in kernel.routes for path in
             (prefix + getattr(route, "path", "") for route in other.routes)}
    clashes = sorted(taken & {getattr(route, "path", "") for route in router.routes})
    if clashes:
        log.warning("the OpenAI-compatible routes are not mounted: a plugin serves %s", ", ".join(clashes))
        return
    before = len(app.router.routes)
    app.include_router(router)
    # Matched first: requests are matched route by route in order, and these paths (checked
    # above) are served by nobody else, so gateway calls skip matching every other route.
    app.router.routes[:] = app.router.routes[before:] + app.router.routes[:before]
    templates.update({id(route): getattr(route, "path", "") for route in router.routes})


def create_app(kernel: Kernel | None = None, *, settings: Settings | None = None) -> FastAPI:
    """Build the HTTP app around ``kernel`` (a new one from ``settings`` by default).

    Plugins are loaded now, so their routers are mounted; the database check, the
    ``vendo_startup`` hooks, the outbox dispatcher and the usage journal
    (:func:`run_usage_journal`) run in the app's lifespan.
    """
    kernel = kernel if kernel is not None else Kernel(settings)
    kernel.load()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await kernel.start()
        stop = asyncio.Event()
        dispatcher = None
        if kernel.settings.outbox.dispatch_in_server:
            dispatcher = asyncio.create_task(kernel.outbox.run(stop), name="vendo-outbox")
        journal = asyncio.create_task(run_usage_journal(kernel, stop, JOURNAL_INTERVAL), name="vendo-usage-journal")
        reports = None
        if kernel.settings.billing.usage_report_interval > 0 and kernel.providers.registered("billing"):
            reports = asyncio.create_task(run_usage_reports(kernel, stop, kernel.settings.billing.usage_report_interval),
                                          name="vendo-usage-reports")
        try:
            yield
        finally:
            stop.set()
            if dispatcher is not None:
                await dispatcher
            await journal
            if reports is not None:
                await reports
            await kernel.stop()

    app = FastAPI(
        title="Vendo",
        version=__version__,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.kernel = kernel
    _install_error_handlers(app)
    _install_kernel_routes(app, kernel)
    # Route templates label metrics; included routers keep paths relative to their prefix.
    templates = {id(route): getattr(route, "path", "") for route in app.routes}
    for _plugin, router, prefix in kernel.routes:
        app.include_router(router, prefix=prefix)
        templates.update({id(route): prefix + getattr(route, "path", "") for route in router.routes})
    _install_ai_gateway(app, kernel, templates)
    app.add_middleware(_RequestContext, kernel=kernel, templates=templates)
    return app


def app_factory() -> FastAPI:
    """Entry point for ``uvicorn --factory vendo.app:app_factory`` (what ``vendo serve`` runs)."""
    from vendo.logs import configure_logging

    kernel = Kernel()
    configure_logging(kernel.settings.log_level)
    return create_app(kernel)
