"""The HTTP app: plugin routers, one JSON error shape, request ids, health and metrics."""

from __future__ import annotations

import time

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from pydantic import BaseModel

from vendo import Conflict, create_app, hookimpl
from vendo.db import migrations


class Body(BaseModel):
    amount: int


class Shop:
    """A plugin with routes under /api/v1 and at the root, publishing events."""

    def __init__(self) -> None:
        self.events: list = []

    @hookimpl
    def vendo_register_routes(self, register, kernel):
        router = APIRouter(prefix="/shop")

        @router.post("/orders")
        def order(body: Body) -> dict:
            with kernel.session() as session:
                event = kernel.outbox.publish(session, "shop.order.created", {"amount": body.amount})
            return {"event": event.id}

        @router.get("/conflict")
        def conflict() -> dict:
            raise Conflict("order already paid", code="already_paid", details={"order": "o_1"})

        @router.get("/crash")
        def crash() -> dict:
            raise RuntimeError("secret internals")

        register(router)
        root = APIRouter()

        @root.get("/v1/models")
        def models() -> dict:
            return {"data": []}

        register(root, prefix="")

    @hookimpl
    def vendo_on_event(self, event):
        self.events.append(event)


@pytest.fixture
def app_for(make_kernel):
    def factory(plugins, **overrides):
        kernel = make_kernel(plugins, **overrides).load()
        kernel.prepare_storage()
        migrations.upgrade(kernel)
        return create_app(kernel)

    return factory


def test_plugin_routes_are_mounted(app_for) -> None:
    with TestClient(app_for({"shop": Shop()})) as client:
        assert client.get("/v1/models").json() == {"data": []}
        response = client.post("/api/v1/shop/orders", json={"amount": 3})
        assert response.status_code == 200
        paths = client.get("/openapi.json").json()["paths"]
        assert "/api/v1/shop/orders" in paths and "/v1/models" in paths and "/api/health" in paths


def test_events_published_by_a_route_are_delivered_by_the_server(app_for) -> None:
    shop = Shop()
    with TestClient(app_for({"shop": shop}, outbox={"poll_interval": 0.05})) as client:
        event_id = client.post("/api/v1/shop/orders", json={"amount": 7}).json()["event"]
        deadline = time.monotonic() + 10
        while not shop.events and time.monotonic() < deadline:
            time.sleep(0.02)
    assert [(e.id, e.type, e.payload) for e in shop.events] == [(event_id, "shop.order.created", {"amount": 7})]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("get", "/api/v1/nowhere", None, 404, "not_found"),
        ("delete", "/api/health", None, 405, "method_not_allowed"),
        ("post", "/api/v1/shop/orders", {"amount": "many"}, 422, "validation_error"),
        ("post", "/api/v1/shop/orders", None, 422, "validation_error"),
        ("get", "/api/v1/shop/conflict", None, 409, "already_paid"),
    ],
)
def test_every_error_has_one_json_shape(app_for, method, path, body, status, code) -> None:
    with TestClient(app_for({"shop": Shop()})) as client:
        response = getattr(client, method)(path, **({"json": body} if body is not None else {}))
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details", "request_id"}
    assert error["code"] == code and error["message"]
    assert error["request_id"] == response.headers["x-request-id"]


def test_validation_error_details_name_the_field(app_for) -> None:
    with TestClient(app_for({"shop": Shop()})) as client:
        error = client.post("/api/v1/shop/orders", json={"amount": "many"}).json()["error"]
    assert error["details"]["errors"][0]["loc"] == ["body", "amount"]
    assert "body.amount" in error["message"]


def test_vendo_errors_keep_their_details(app_for) -> None:
    with TestClient(app_for({"shop": Shop()})) as client:
        error = client.get("/api/v1/shop/conflict").json()["error"]
    assert error["message"] == "order already paid" and error["details"] == {"order": "o_1"}


def test_unhandled_error_is_500_without_internals(app_for) -> None:
    with TestClient(app_for({"shop": Shop()}), raise_server_exceptions=False) as client:
        response = client.get("/api/v1/shop/crash")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert "secret internals" not in response.text


def test_request_id_is_kept_when_valid_and_replaced_when_not(app_for) -> None:
    with TestClient(app_for({})) as client:
        assert client.get("/api/health", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
        replaced = client.get("/api/health", headers={"X-Request-ID": "bad id\twith spaces"}).headers["x-request-id"]
        assert replaced != "bad id\twith spaces" and len(replaced) == 32


def test_health_reports_database_and_plugins(app_for) -> None:
    with TestClient(app_for({"shop": Shop()})) as client:
        body = client.get("/api/health").json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] is True and body["database"]["migrations"]["current"] == ["vendo_0009"]
    assert {p["name"]: p["status"] for p in body["plugins"]} == {"core": "ok", "shop": "ok"}


def test_health_is_degraded_by_a_failed_plugin_and_unavailable_without_database(app_for) -> None:
    broken = type("Broken", (), {"vendo_register_routes": hookimpl(lambda self, register: 1 / 0)})()
    app = app_for({"broken": broken})
    with TestClient(app) as client:
        body = client.get("/api/health").json()
        assert body["status"] == "degraded"
        assert {p["name"]: p["status"] for p in body["plugins"]}["broken"] == "failed"
        migrations.downgrade(app.state.kernel, "base")
        response = client.get("/api/health")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert "run `vendo db upgrade`" in response.json()["database"]["error"]


def test_conflicting_routes_fail_the_second_plugin(app_for) -> None:
    app = app_for({"shop": Shop(), "copycat": Shop()})
    kernel = app.state.kernel
    assert kernel.plugin("copycat").status == "failed"
    assert "route POST /api/v1/shop/orders is already registered by plugin 'shop'" in kernel.plugin("copycat").error


def test_plugins_endpoint_lists_plugins_and_providers(app_for) -> None:
    with TestClient(app_for({"shop": Shop()})) as client:
        body = client.get("/api/v1/plugins").json()
    assert [p["name"] for p in body["plugins"]] == ["core", "shop"]
    assert body["plugins"][1]["hooks"] == ["vendo_on_event", "vendo_register_routes"]
    assert set(body["providers"]) == {"auth", "billing", "license", "ai", "knowledge", "vector_store", "tool", "counters", "notifier"}


def test_metrics_count_requests_by_route_template(app_for) -> None:
    with TestClient(app_for({"shop": Shop()})) as client:
        client.post("/api/v1/shop/orders", json={"amount": 1})
        client.get("/api/v1/nowhere/123")
        text = client.get("/metrics").text
    assert 'vendo_http_requests_total{method="POST",route="/api/v1/shop/orders",status="200"} 1.0' in text
    assert 'route="<unmatched>",status="404"' in text
    assert "vendo_hook_duration_seconds" in text


def test_metrics_can_be_turned_off(app_for) -> None:
    with TestClient(app_for({}, metrics=False)) as client:
        assert client.get("/metrics").status_code == 404
