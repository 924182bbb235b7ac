"""The peers of vendo-billing-stripe's tests: localstripe and a loopback Stripe stand-in.

* :class:`LocalStripe`: the ``localstripe`` server (PyPI, GPL-3.0) run as a separate process on
  127.0.0.1 by ``billing_stripe_localstripe_launcher.py``; it answers customers, products, legacy
  Plans, subscriptions, payment methods, invoices, and delivers real signed webhooks.
* :class:`StripeStandIn`: a small real HTTP server for what localstripe answers 404 to (Prices,
  Checkout Sessions, the Billing Portal, Billing Meters and meter events, Subscription
  Schedules, customer search, invoices of the subscriptions it holds). It checks what the real
  SDK sends (path, form-encoded parameters, ``Authorization``, ``Idempotency-Key``), replays
  idempotent requests as Stripe does, and answers Stripe-shaped JSON. What the customer does
  in Stripe's hosted pages (paying a Checkout Session) is :meth:`StripeStandIn.complete_checkout`,
  which returns the ``checkout.session.completed`` event Stripe would then deliver.
* :class:`WebhookReceiver`: a loopback HTTP endpoint recording the deliveries it gets.
"""

from __future__ import annotations

import copy
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl, urlsplit

import pytest

API_KEY = "sk_test_vendo_tests"
WEBHOOK_SECRET = "whsec_vendo_tests"
LAUNCHER = Path(__file__).with_name("billing_stripe_localstripe_launcher.py")


def unix_now() -> int:
    """Stripe's clock: Unix seconds."""
    return int(time.time())


def fail_or_skip(message: str) -> None:
    """Skip locally; fail in CI (``CI`` set), where localstripe runs are mandatory."""
    if os.environ.get("CI"):
        pytest.fail(message + " (localstripe runs are mandatory in CI)")
    pytest.skip(message)


# -- form decoding ---------------------------------------------------------------------------


def unflatten(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding (``items[0][price]=p``, ``expand[]=x``) back into nested values."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = [key.split("[", 1)[0], *re.findall(r"\[([^\]]*)\]", key)]
        node: Any = root
        for index, part in enumerate(parts):
            if part == "":  # "a[]=v": append
                node.setdefault("__list__", []).append(value)
                break
            if index == len(parts) - 1:
                node[part] = value
            else:
                node = node.setdefault(part, {})
    return _lists(root)


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    if set(node) == {"__list__"}:
        return [_lists(v) for v in node["__list__"]]
    if node and all(k.isdigit() for k in node):
        return [_lists(node[k]) for k in sorted(node, key=int)]
    return {k: _lists(v) for k, v in node.items()}


# -- the stand-in -----------------------------------------------------------------------------


@dataclass
class Recorded:
    """One request the stand-in received."""

    method: str
    path: str
    params: dict[str, Any]
    headers: dict[str, str]


class StandInError(Exception):
    """A Stripe-shaped error answer."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"type": type, "message": message, **({"code": code} if code else {}),
                               **({"param": param} if param else {})}}


def _missing(kind: str, id: str) -> StandInError:
    return StandInError(404, f"No such {kind}: '{id}'", code="resource_missing", param="id")


def _require(params: dict[str, Any], *names: str) -> None:
    for name in names:
        if params.get(name) in (None, ""):
            raise StandInError(400, f"Missing required param: {name}.", code="parameter_missing", param=name)


@dataclass
class StripeStandIn:
    """A loopback HTTP server answering a part of Stripe's API as Stripe does (see module doc)."""

    api_key: str = API_KEY
    requests: list[Recorded] = field(default_factory=list)
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    meter_events: dict[str, dict[str, Any]] = field(default_factory=dict)
    replies: dict[str, tuple[str, int, bytes]] = field(default_factory=dict)
    #: Hook to make the next requests fail: returns (status, body) or None.
    fault: Callable[[Recorded], tuple[int, dict[str, Any]] | None] | None = None
    #: Hook to lose answers: a request it returns ``True`` for is executed, then the connection
    #: is closed without an answer (an answer lost on the way back; the SDK retries).
    lose_answer: Callable[[Recorded], bool] | None = None
    #: Stripe's Search API is eventually consistent ("under normal conditions, within a
    #: minute"): with ``search_lag`` set, customers created through the API are never found by
    #: search (the worst case of that lag); seeded customers (:meth:`add_customer`) always are.
    search_lag: bool = False
    #: The parameters each Checkout Session was created with (line items, subscription data):
    #: what Stripe keeps of a session beyond its object, used when it is paid.
    checkout_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Customers created through the API while ``search_lag`` was set.
    unindexed: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as Stripe's API: the SDK pools connections

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _serve(self) -> None:
                stand_in._handle(self)

            do_GET = do_POST = do_DELETE = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()

    # plumbing

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        split = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        pairs = parse_qsl(split.query, keep_blank_values=True) + parse_qsl(raw.decode(), keep_blank_values=True)
        record = Recorded(handler.command, split.path, unflatten(pairs), {k.lower(): v for k, v in handler.headers.items()})
        with self.lock:
            self.requests.append(record)
            status, body = self._answer(record, raw)
            lost = self.lose_answer is not None and self.lose_answer(record)
        if lost:
            handler.close_connection = True
            return
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.send_header("Request-Id", "req_" + secrets.token_hex(6))
        if isinstance(body, bytes):  # only replays answer stored bytes
            handler.send_header("Idempotent-Replayed", "true")
        handler.end_headers()
        handler.wfile.write(payload)

    def _answer(self, record: Recorded, raw: bytes) -> tuple[int, Any]:
        if record.headers.get("authorization") != f"Bearer {self.api_key}":
            return 401, {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}}
        if self.fault is not None:
            failed = self.fault(record)
            if failed is not None:
                return failed
        key = record.headers.get("idempotency-key")
        if record.method == "POST":
            if not key:
                return 400, {"error": {"type": "invalid_request_error",
                                       "message": "stand-in: every POST of vendo-billing-stripe carries an "
                                                  "Idempotency-Key"}}
            if key in self.replies:
                signature, status, body = self.replies[key]
                if signature != f"{record.path}?{raw.decode()}":
                    return 400, {"error": {"type": "idempotency_error", "message": "Keys for idempotent requests "
                                           "can only be used with the same parameters they were first used with."}}
                return status, body
        try:  # handlers get a copy: the record keeps what was sent
            status, body = 200, self._route(Recorded(record.method, record.path, copy.deepcopy(record.params),
                                                     record.headers))
        except StandInError as exc:
            status, body = exc.status, exc.body
        # Stripe saves a key's result only once "an API endpoint started executing": a request
        # refused by validation (the stand-in's 4xx answers all are) may be retried with the key.
        if record.method == "POST" and key and status < 400:
            self.replies[key] = (f"{record.path}?{raw.decode()}", status, json.dumps(body).encode())
        return status, body

    def _new(self, prefix: str, kind: str, **fields: Any) -> dict[str, Any]:
        obj = {"id": fields.pop("id", None) or f"{prefix}_{secrets.token_hex(8)}", "object": kind,
               "created": unix_now(), "livemode": False, **fields}
        self.objects[obj["id"]] = obj
        return obj

    def _get(self, kind: str, id: str) -> dict[str, Any]:
        obj = self.objects.get(id)
        if obj is None or obj["object"] != kind:
            raise _missing(kind, id)
        return obj

    def _of(self, kind: str) -> list[dict[str, Any]]:
        return sorted((o for o in self.objects.values() if o["object"] == kind), key=lambda o: o["created"],
                      reverse=True)

    @staticmethod
    def _list(url: str, data: list[dict[str, Any]], limit: Any = 10) -> dict[str, Any]:
        count = int(limit or 10)
        return {"object": "list", "url": url, "has_more": len(data) > count, "data": data[:count]}

    def _route(self, r: Recorded) -> Any:
        routes: list[tuple[str, str, Callable[..., Any]]] = [
            ("GET", r"/v1/customers/search", self._customer_search),
            ("POST", r"/v1/customers", self._customer_create),
            ("GET", r"/v1/customers/(?P<id>[^/]+)", lambda p, id: self._get("customer", id)),
            ("GET", r"/v1/products/(?P<id>[^/]+)", lambda p, id: self._get("product", id)),
            ("POST", r"/v1/products", self._product_create),
            ("GET", r"/v1/prices", self._price_list),
            ("POST", r"/v1/prices", self._price_create),
            ("GET", r"/v1/billing/meters", self._meter_list),
            ("POST", r"/v1/billing/meters", self._meter_create),
            ("POST", r"/v1/billing/meter_events", self._meter_event),
            ("POST", r"/v1/checkout/sessions", self._checkout_create),
            ("POST", r"/v1/billing_portal/sessions", self._portal_create),
            ("GET", r"/v1/subscriptions/(?P<id>[^/]+)", lambda p, id: self._get("subscription", id)),
            ("POST", r"/v1/subscriptions/(?P<id>[^/]+)", self._subscription_update),
            ("DELETE", r"/v1/subscriptions/(?P<id>[^/]+)", self._subscription_cancel),
            ("POST", r"/v1/subscription_schedules", self._schedule_create),
            ("GET", r"/v1/subscription_schedules/(?P<id>[^/]+)", lambda p, id: self._get("subscription_schedule", id)),
            ("GET", r"/v1/invoices", self._invoice_list),
            ("GET", r"/v1/invoices/(?P<id>[^/]+)", lambda p, id: self._get("invoice", id)),
            ("POST", r"/v1/subscription_schedules/(?P<id>[^/]+)/release", self._schedule_release),
            ("POST", r"/v1/subscription_schedules/(?P<id>[^/]+)", self._schedule_update),
        ]
        for method, pattern, handler in routes:
            match = re.fullmatch(pattern, r.path)
            if method == r.method and match:
                return handler(r.params, **match.groupdict())
        raise StandInError(404, f"Unrecognized request URL ({r.method}: {r.path}).")

    # customers

    def _customer_search(self, p: dict[str, Any]) -> Any:
        match = re.fullmatch(r"metadata\['(\w+)'\]:'((?:[^'\\]|\\.)*)'", p.get("query", ""))
        if not match:
            raise StandInError(400, "stand-in understands only metadata['key']:'value' queries", param="query")
        key, value = match.group(1), re.sub(r"\\(.)", r"\1", match.group(2))
        hits = [c for c in self._of("customer") if c["metadata"].get(key) == value and c["id"] not in self.unindexed]
        return {"object": "search_result", "url": "/v1/customers/search", "has_more": False, "data": hits[:int(
            p.get("limit", 10))], "next_page": None}

    def _customer_create(self, p: dict[str, Any]) -> Any:
        customer = self._new("cus", "customer", email=p.get("email"), metadata=p.get("metadata", {}))
        if self.search_lag:
            self.unindexed.add(customer["id"])
        return customer

    def add_customer(self, subject: str, email: str | None = None) -> dict[str, Any]:
        """Seed a customer (what an earlier checkout would have created)."""
        return self._new("cus", "customer", email=email, metadata={"vendo_subject": subject})

    # products, prices, meters

    def _product_create(self, p: dict[str, Any]) -> Any:
        _require(p, "name")
        if p.get("id") in self.objects:
            raise StandInError(400, "Product already exists.", code="resource_already_exists", param="id")
        return self._new("prod", "product", id=p.get("id"), name=p["name"], active=True,
                         metadata=p.get("metadata", {}))

    def _price_list(self, p: dict[str, Any]) -> Any:
        prices = self._of("price")
        if "lookup_keys" in p:
            keys = p["lookup_keys"]
            if len(keys) > 10:
                raise StandInError(400, "lookup_keys: at most 10", param="lookup_keys")
            prices = [x for x in prices if x["lookup_key"] in keys]
        if "product" in p:
            self._get("product", p["product"])  # "No such product" for an unknown one
        if p.get("active") is not None:
            prices = [x for x in prices if str(x["active"]).lower() == p["active"]]
        for name in ("product", "currency", "type"):
            if name in p:
                prices = [x for x in prices if x[name] == p[name]]
        if "recurring" in p:
            prices = [x for x in prices if x["recurring"]["interval"] == p["recurring"]["interval"]]
        return self._list("/v1/prices", prices, p.get("limit"))

    def _price_create(self, p: dict[str, Any]) -> Any:
        _require(p, "currency", "product")
        self._get("product", p["product"])
        if not p.get("recurring", {}).get("interval") in ("day", "week", "month", "year"):
            raise StandInError(400, "recurring[interval] is required here", param="recurring[interval]")
        recurring = {"interval": p["recurring"]["interval"], "interval_count": 1,
                     "usage_type": p["recurring"].get("usage_type", "licensed"), "meter": p["recurring"].get("meter")}
        if recurring["usage_type"] == "metered":
            self._get("billing.meter", recurring["meter"])
        tiered = p.get("billing_scheme") == "tiered"
        if tiered:
            if p.get("tiers_mode") not in ("graduated", "volume") or not p.get("tiers"):
                raise StandInError(400, "tiered prices need tiers_mode and tiers", param="tiers")
            tiers = [{"up_to": None if t["up_to"] == "inf" else int(t["up_to"]),
                      "flat_amount": int(t.get("flat_amount", 0)),
                      "unit_amount": int(t["unit_amount"]) if "unit_amount" in t else None,
                      "unit_amount_decimal": t.get("unit_amount_decimal", t.get("unit_amount", "0"))}
                     for t in p["tiers"]]
            if any("unit_amount" in t and "unit_amount_decimal" in t for t in p["tiers"]):
                raise StandInError(400, "You may only specify one of these parameters: unit_amount, "
                                        "unit_amount_decimal.", param="tiers")
        elif p.get("unit_amount") is None and p.get("unit_amount_decimal") is None:
            raise StandInError(400, "Missing required param: unit_amount.", param="unit_amount")
        elif p.get("unit_amount") is not None and p.get("unit_amount_decimal") is not None:
            raise StandInError(400, "You may only specify one of these parameters: unit_amount, unit_amount_decimal.")
        key = p.get("lookup_key")
        if key and any(x["lookup_key"] == key for x in self._of("price")):
            raise StandInError(400, f"A price (`{key}`) already uses that lookup key.", param="lookup_key")
        return self._new("price", "price", active=True, currency=p["currency"], product=p["product"],
                         lookup_key=key, nickname=p.get("nickname"), metadata=p.get("metadata", {}),
                         recurring=recurring, type="recurring",
                         billing_scheme="tiered" if tiered else "per_unit",
                         tiers_mode=p.get("tiers_mode"), tiers=tiers if tiered else None,
                         unit_amount=None if tiered or p.get("unit_amount") is None else int(p["unit_amount"]),
                         unit_amount_decimal=None if tiered else str(p.get("unit_amount_decimal") or p["unit_amount"]))

    def _meter_list(self, p: dict[str, Any]) -> Any:
        return self._list("/v1/billing/meters", self._of("billing.meter"), p.get("limit"))

    def _meter_create(self, p: dict[str, Any]) -> Any:
        _require(p, "display_name", "event_name")
        if p.get("default_aggregation", {}).get("formula") not in ("sum", "count", "last"):
            raise StandInError(400, "default_aggregation[formula] is required", param="default_aggregation")
        return self._new("mtr", "billing.meter", display_name=p["display_name"], event_name=p["event_name"],
                         status="active", default_aggregation=p["default_aggregation"],
                         customer_mapping=p.get("customer_mapping"), value_settings=p.get("value_settings"))

    def _meter_event(self, p: dict[str, Any]) -> Any:
        _require(p, "event_name", "payload")
        payload = p["payload"]
        if not payload.get("stripe_customer_id") or not str(payload.get("value", "")).lstrip("-").isdigit():
            raise StandInError(400, "payload needs stripe_customer_id and a numeric value", param="payload")
        timestamp = int(p.get("timestamp") or unix_now())
        if not unix_now() - 35 * 86400 <= timestamp <= unix_now() + 300:
            raise StandInError(400, "Meter event timestamps must be within the past 35 calendar days or up to "
                                    "5 minutes in the future.", param="timestamp")
        identifier = p.get("identifier") or secrets.token_hex(8)
        if identifier in self.meter_events:
            raise StandInError(400, f"An event with identifier {identifier} already exists.",
                               code="duplicate_meter_event", param="identifier")
        event = {"object": "billing.meter_event", "event_name": p["event_name"], "identifier": identifier,
                 "payload": payload, "timestamp": timestamp, "created": unix_now(),
                 "livemode": False}
        self.meter_events[identifier] = event
        return event

    # checkout and portal

    def _checkout_create(self, p: dict[str, Any]) -> Any:
        _require(p, "mode", "success_url")
        if p["mode"] not in ("payment", "setup", "subscription"):
            raise StandInError(400, "Invalid mode", param="mode")
        if p.get("customer") and p.get("customer_email"):
            raise StandInError(400, "You may only specify one of these parameters: customer, customer_email.")
        items = p.get("line_items") or []
        if not items:
            raise StandInError(400, "line_items is required in subscription mode", param="line_items")
        for item in items:
            price = self._get("price", item.get("price", ""))
            if p["mode"] == "subscription" and price["type"] != "recurring":
                raise StandInError(400, "subscription mode needs recurring prices", param="line_items")
            if price["recurring"]["usage_type"] == "metered" and "quantity" in item:
                raise StandInError(400, "Quantity should not be specified where usage_type is `metered`. Remove "
                                        "quantity from `line_items[0]`.", param="line_items")
            if price["recurring"]["usage_type"] != "metered" and "quantity" not in item:
                raise StandInError(400, "Quantity is required. Add `quantity` to `line_items[0]`", param="line_items")
        if p.get("customer"):
            self._get("customer", p["customer"])
        session_id = "cs_test_" + secrets.token_hex(16)
        self.checkout_params[session_id] = p
        return self._new("cs", "checkout.session", id=session_id, mode=p["mode"], status="open",
                         url=f"https://checkout.stripe.com/c/pay/{session_id}", customer=p.get("customer"),
                         customer_email=p.get("customer_email"), client_reference_id=p.get("client_reference_id"),
                         metadata=p.get("metadata", {}), success_url=p["success_url"],
                         cancel_url=p.get("cancel_url"), subscription=None, payment_status="unpaid")

    def complete_checkout(self, session_id: str, email: str = "buyer@example.com") -> dict[str, Any]:
        """The buyer pays the open Checkout Session ``session_id`` in Stripe's hosted page: as
        Stripe does, make its customer (unless the session named one), the subscription of its
        line items carrying ``subscription_data`` (metadata, trial), the first invoice, mark the
        session complete, and return the ``checkout.session.completed`` event Stripe delivers."""
        with self.lock:
            session = self._get("checkout.session", session_id)
            if session["status"] != "open":
                raise AssertionError(f"checkout session {session_id} is {session['status']}, not open")
            params = self.checkout_params[session_id]
            customer = session["customer"] or self._new(
                "cus", "customer", email=session["customer_email"] or email, metadata={})["id"]
            data = params.get("subscription_data") or {}
            trial_days = int(data.get("trial_period_days") or 0)
            line, *usage = params["line_items"]  # the plan's price, then its usage-based prices
            subscription = self._subscription(customer, line["price"], int(line.get("quantity") or 1),
                                              status="trialing" if trial_days else "active",
                                              metadata=data.get("metadata") or {}, trial_days=trial_days,
                                              usage_prices=[u["price"] for u in usage])
            invoice = self.objects[subscription["latest_invoice"]]
            session.update(status="complete", payment_status="paid" if invoice["amount_due"] else "no_payment_required",
                           customer=customer, subscription=subscription["id"], amount_total=invoice["amount_due"],
                           amount_subtotal=invoice["amount_due"], currency=subscription["currency"],
                           customer_details={"email": session["customer_email"] or email})
            return self.event("checkout.session.completed", session)

    def event(self, type: str, obj: dict[str, Any], previous: dict[str, Any] | None = None) -> dict[str, Any]:
        """A Stripe event about ``obj`` (a snapshot of it), as Stripe delivers it to an endpoint."""
        data: dict[str, Any] = {"object": copy.deepcopy(obj)}
        if previous is not None:
            data["previous_attributes"] = previous
        return {"id": "evt_" + secrets.token_hex(12), "object": "event", "api_version": "2026-10-28.endive",
                "created": unix_now(), "livemode": False, "pending_webhooks": 1, "type": type, "data": data,
                "request": {"id": None, "idempotency_key": None}}

    def _portal_create(self, p: dict[str, Any]) -> Any:
        _require(p, "customer")
        self._get("customer", p["customer"])
        session_id = "bps_" + secrets.token_hex(12)
        return self._new("bps", "billing_portal.session", id=session_id, customer=p["customer"],
                         return_url=p.get("return_url"), url=f"https://billing.stripe.com/p/session/test_{session_id}")

    # subscriptions and schedules

    def add_subscription(self, customer: str, price_id: str, quantity: int = 1, *, status: str = "active",
                         metadata: dict[str, str] | None = None) -> dict[str, Any]:
        """Seed a subscription on a price (what a completed checkout leaves at Stripe), with its
        first invoice."""
        with self.lock:
            return self._subscription(customer, price_id, quantity, status=status, metadata=metadata or {})

    def _subscription(self, customer: str, price_id: str, quantity: int, *, status: str,
                      metadata: dict[str, str], trial_days: int = 0,
                      usage_prices: list[str] | None = None) -> dict[str, Any]:
        start = unix_now()
        days = {"day": 1, "week": 7, "month": 30, "year": 365}
        price = self._get("price", price_id)
        end = start + (trial_days or days[price["recurring"]["interval"]]) * 86400
        items = [{"id": "si_" + secrets.token_hex(8), "object": "subscription_item", "price": price,
                  "quantity": quantity, "current_period_start": start, "current_period_end": end}]
        for usage in usage_prices or []:  # metered items have no quantity
            items.append({"id": "si_" + secrets.token_hex(8), "object": "subscription_item",
                          "price": self._get("price", usage), "current_period_start": start,
                          "current_period_end": end})
        subscription = self._new("sub", "subscription", customer=customer, status=status, metadata=dict(metadata),
                                 cancel_at_period_end=False, cancel_at=None, canceled_at=None, schedule=None,
                                 currency=price["currency"], trial_end=end if trial_days else None,
                                 items={"object": "list", "data": items, "has_more": False})
        amount = 0 if trial_days else self.amount(price, quantity)
        invoice = self._new("in", "invoice", customer=customer, status="paid", currency=price["currency"],
                            amount_due=amount, amount_paid=amount, amount_remaining=0,
                            billing_reason="subscription_create", hosted_invoice_url=None, invoice_pdf=None,
                            parent={"type": "subscription_details", "quote_details": None, "subscription_details": {
                                "subscription": subscription["id"], "metadata": dict(metadata)}},
                            lines={"object": "list", "has_more": False, "data": [{
                                "id": "il_" + secrets.token_hex(8), "object": "line_item", "amount": amount,
                                "currency": price["currency"], "quantity": quantity,
                                "period": {"start": start, "end": end},
                                "pricing": {"type": "price_details", "price_details": {
                                    "price": price["id"], "product": price["product"]}}}]})
        invoice["hosted_invoice_url"] = f"https://invoice.stripe.com/i/{invoice['id']}"
        subscription["latest_invoice"] = invoice["id"]
        return subscription

    @staticmethod
    def amount(price: dict[str, Any], quantity: int) -> int:
        """What ``quantity`` of a licensed ``price`` costs for one period (graduated tiers
        summed tier by tier, as Stripe bills them)."""
        if price["recurring"]["usage_type"] == "metered":
            return 0  # billed in arrears from the meter
        if price["billing_scheme"] == "per_unit":
            return int(price["unit_amount"]) * quantity
        if price["tiers_mode"] == "volume":
            tier = next(t for t in price["tiers"] if t["up_to"] is None or quantity <= t["up_to"])
            return tier["flat_amount"] + (tier["unit_amount"] or 0) * quantity
        total, below = 0, 0
        for tier in price["tiers"]:
            if quantity <= below:
                break
            top = quantity if tier["up_to"] is None else min(quantity, tier["up_to"])
            total += tier["flat_amount"] + (tier["unit_amount"] or 0) * (top - below)
            below = top
        return total

    def _invoice_list(self, p: dict[str, Any]) -> Any:
        invoices = self._of("invoice")
        if "customer" in p:
            invoices = [i for i in invoices if i["customer"] == p["customer"]]
        if "subscription" in p:
            invoices = [i for i in invoices if i["parent"]["subscription_details"]["subscription"] == p["subscription"]]
        if "status" in p:
            invoices = [i for i in invoices if i["status"] == p["status"]]
        limit = int(p.get("limit") or 10)
        if not 1 <= limit <= 100:
            raise StandInError(400, "limit must be between 1 and 100", param="limit")
        return self._list("/v1/invoices", invoices, limit)

    def _subscription_update(self, p: dict[str, Any], id: str) -> Any:
        sub = self._get("subscription", id)
        if sub["status"] == "canceled":
            raise StandInError(400, "A canceled subscription can only update its cancellation_details and metadata.")
        if sub["schedule"] and ("items" in p or "cancel_at_period_end" in p):
            raise StandInError(400, "The subscription is managed by the subscription schedule "
                                    f"`{sub['schedule']}`, and updating any cancelation behavior directly is not "
                                    "allowed. Please update the schedule instead.")
        for change in p.get("items", []):
            if "id" not in change:  # a new item
                price = self._get("price", change.get("price", ""))
                if any(i["price"]["id"] == price["id"] for i in sub["items"]["data"]):
                    raise StandInError(400, "Cannot add multiple subscription items with the same price",
                                       param="items")
                first = sub["items"]["data"][0]
                item = {"id": "si_" + secrets.token_hex(8), "object": "subscription_item", "price": price,
                        "current_period_start": first["current_period_start"],
                        "current_period_end": first["current_period_end"]}
                if price["recurring"]["usage_type"] != "metered":
                    item["quantity"] = int(change.get("quantity") or 1)
                elif "quantity" in change:
                    raise StandInError(400, "Quantity should not be specified where usage_type is `metered`.",
                                       param="items")
                sub["items"]["data"].append(item)
                continue
            item = next((i for i in sub["items"]["data"] if i["id"] == change.get("id")), None)
            if item is None:
                raise StandInError(400, "items[0][id] must name an item of the subscription", param="items")
            if change.get("deleted") == "true":
                sub["items"]["data"].remove(item)
                continue
            if "price" in change:
                item["price"] = self._get("price", change["price"])
            if "quantity" in change:
                item["quantity"] = int(change["quantity"])
        if "items" in p and p.get("proration_behavior") not in ("create_prorations", "always_invoice", "none"):
            raise StandInError(400, "proration_behavior is expected with item changes here", param="proration_behavior")
        if "cancel_at_period_end" in p:  # Stripe shows the planned end in cancel_at too
            was = sub["cancel_at_period_end"]
            sub["cancel_at_period_end"] = p["cancel_at_period_end"] == "true"
            if sub["cancel_at_period_end"]:
                sub["cancel_at"] = sub["items"]["data"][0]["current_period_end"]
            elif was:  # a cancellation on a chosen date stays until cancel_at is unset
                sub["cancel_at"] = None
        if "cancel_at" in p:  # "" unsets it
            sub["cancel_at"] = int(p["cancel_at"]) if p["cancel_at"] else None
            sub["cancel_at_period_end"] = False
        sub["metadata"].update(p.get("metadata", {}))
        return sub

    def _subscription_cancel(self, p: dict[str, Any], id: str) -> Any:
        sub = self._get("subscription", id)
        if sub["status"] == "canceled":  # Stripe: a canceled subscription is as good as deleted
            raise _missing("subscription", id)
        sub.update(status="canceled", canceled_at=unix_now(), schedule=None)
        return sub

    def _schedule_create(self, p: dict[str, Any]) -> Any:
        _require(p, "from_subscription")
        sub = self._get("subscription", p["from_subscription"])
        if sub["schedule"]:
            raise StandInError(400, "You cannot migrate a subscription that is already attached to a schedule")
        item = sub["items"]["data"][0]
        phase = {"start_date": item["current_period_start"], "end_date": item["current_period_end"],
                 "items": [{"price": item["price"]["id"], "quantity": item["quantity"]}], "metadata": {}}
        schedule = self._new("sub_sched", "subscription_schedule", subscription=sub["id"], status="active",
                             end_behavior="release", phases=[phase],
                             current_phase={"start_date": phase["start_date"], "end_date": phase["end_date"]})
        sub["schedule"] = schedule["id"]
        return schedule

    def _schedule_update(self, p: dict[str, Any], id: str) -> Any:
        schedule = self._get("subscription_schedule", id)
        phases = p.get("phases") or []
        if not phases:
            raise StandInError(400, "phases is required here", param="phases")
        if str(phases[0].get("start_date")) != str(schedule["current_phase"]["start_date"]):
            raise StandInError(400, "You can not modify the start date of the current phase.", param="phases")
        for phase in phases:
            for item in phase.get("items", []):
                self._get("price", item.get("price", ""))
        previous_end = None
        for phase in phases:
            phase.setdefault("start_date", previous_end)
            previous_end = phase.get("end_date")
        schedule.update(phases=phases, end_behavior=p.get("end_behavior", schedule["end_behavior"]),
                        proration_behavior=p.get("proration_behavior"))
        return schedule

    def _schedule_release(self, p: dict[str, Any], id: str) -> Any:
        schedule = self._get("subscription_schedule", id)
        schedule.update(status="released", released_subscription=schedule["subscription"], subscription=None)
        self._get("subscription", schedule["released_subscription"])["schedule"] = None
        return schedule

    def of(self, kind: str) -> list[dict[str, Any]]:
        """The objects of ``kind`` (``"customer"``, ``"billing.meter"``...) it holds, newest first."""
        with self.lock:
            return self._of(kind)

    def calls(self, method: str, path: str) -> list[Recorded]:
        """The requests received for ``method path``."""
        return [r for r in self.requests if r.method == method and r.path == path]


# -- localstripe ------------------------------------------------------------------------------


class LocalStripe:
    """localstripe in its own process, on a free loopback port, its state in ``state_dir``."""

    def __init__(self, state_dir: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(LAUNCHER), "--state-dir", str(state_dir)], cwd=state_dir,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self._first_line(timeout=20)
        if not line.strip().isdigit():
            self.close()
            raise RuntimeError(f"localstripe did not start (said {line!r})")
        self.url = f"http://127.0.0.1:{int(line)}"
        self._wait_ready()

    def _first_line(self, timeout: float) -> str:
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(self.process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout)
        return box[0] if box else ""

    def _wait_ready(self) -> None:
        import httpx

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.get(self.url + "/v1/customers", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.close()
        raise RuntimeError("localstripe did not answer within 20 s")

    def flush(self) -> None:
        """Empty its store (``DELETE /_config/data``)."""
        import httpx

        httpx.delete(self.url + "/_config/data", timeout=5).raise_for_status()

    def register_webhook(self, name: str, url: str, secret: str, events: list[str] | None = None) -> None:
        """``POST /_config/webhooks/{name}``: deliver (signed with ``secret``) to ``url``."""
        import httpx

        data: dict[str, Any] = {"url": url, "secret": secret}
        if events:
            data["events[]"] = list(events)
        httpx.post(f"{self.url}/_config/webhooks/{name}", data=data, timeout=5).raise_for_status()

    def close(self) -> None:
        """Stop the process."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process.stdout:
            self.process.stdout.close()


# -- webhook receiver -------------------------------------------------------------------------


@dataclass
class Delivery:
    """One webhook delivery: its headers and raw body."""

    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


class WebhookReceiver:
    """A loopback HTTP endpoint answering 200 to every POST and recording it."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.arrived:
                    receiver.deliveries.append(Delivery(dict(self.headers.items()), body))
                    receiver.arrived.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/stripe"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, event_type: str, object_id: str, timeout: float = 15) -> Delivery:
        """The delivery of ``event_type`` about ``object_id`` (waiting for it to arrive)."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while True:
                for delivery in self.deliveries:
                    event = delivery.event
                    if event["type"] == event_type and event["data"]["object"].get("id") == object_id:
                        return delivery
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [d.event["type"] for d in self.deliveries]
                    raise AssertionError(f"no {event_type} for {object_id} within {timeout} s (got {seen})")
                self.arrived.wait(left)

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
