"""Contract suites: what every provider of a capability family must do.

Subclass the suite of your family in your plugin's tests, name the plugin and the provider,
and fill the few hooks the suite asks for::

    from vendo_sdk.contracts import ToolContract
    import vendo_tool_weather

    class TestWeatherTool(ToolContract):
        plugin = vendo_tool_weather          # the module your entry point names
        plugin_name = "tool-weather"         # your entry point's name
        provider_name = "weather"            # the name you register
        sample_arguments = {"city": "Paris"}
        invalid_arguments = {"city": 42}

Every test goes through a real kernel: the plugin is registered by its hooks, exactly as in
production, and the provider is taken from the kernel's registry. Set ``plugin = None`` to
load the installed entry point ``plugin_name`` instead (what CI of a published plugin does).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Callable, ClassVar, Iterator, Mapping

import pytest


async def _resolve(value: Any) -> Any:
    import inspect

    return await value if inspect.isawaitable(value) else value


class ProviderContract:
    """Shared part of every family's suite: registration through the kernel."""

    family: ClassVar[str] = ""
    plugin: ClassVar[Any] = None
    plugin_name: ClassVar[str] = ""
    provider_name: ClassVar[str] = ""
    #: Your plugin's settings for the test kernel (its ``[plugin-name]`` table).
    plugin_settings: ClassVar[Mapping[str, Any]] = {}
    #: Kernel setting overrides for the test kernel.
    kernel_settings: ClassVar[Mapping[str, Any]] = {}

    @pytest.fixture
    def kernel(self, vendo_kernel: Any) -> Any:
        """A kernel holding only this plugin."""
        plugins: Any = [self.plugin_name] if self.plugin is None else {self.plugin_name: self.plugin}
        return vendo_kernel(plugins, plugin_settings={self.plugin_name: dict(self.plugin_settings)},
                            **dict(self.kernel_settings))

    @pytest.fixture
    def provider(self, kernel: Any) -> Any:
        """The provider under test, as the kernel's registry holds it."""
        return kernel.providers.get(self.family, self.provider_name)

    def test_plugin_loads(self, kernel: Any) -> None:
        info = kernel.plugin(self.plugin_name)
        assert info is not None, f"plugin {self.plugin_name!r} was not found"
        assert info.status == "ok", f"plugin {self.plugin_name!r} is {info.status}: {info.error}"

    def test_provider_is_registered_by_this_plugin(self, kernel: Any) -> None:
        registered = {r.name: r.plugin for r in kernel.providers.registered(self.family)}
        assert registered.get(self.provider_name) == self.plugin_name, (
            f"{self.family} provider {self.provider_name!r} not registered by {self.plugin_name!r}: {registered}"
        )

    def test_implements_the_family_protocol(self, provider: Any) -> None:
        from vendo.capabilities import FAMILIES

        protocol = FAMILIES[self.family].protocol
        assert isinstance(provider, protocol), f"provider does not implement {protocol.__name__}"


# -- tools --------------------------------------------------------------------------------


class ToolContract(ProviderContract):
    """Tools: JSON-schema parameters, JSON results, ``InvalidInput`` for bad arguments."""

    family = "tool"
    sample_arguments: ClassVar[dict[str, Any]] = {}
    #: Arguments the tool must refuse with ``vendo.InvalidInput`` (``None``: not tested).
    invalid_arguments: ClassVar[dict[str, Any] | None] = None

    def test_describes_itself(self, provider: Any) -> None:
        assert provider.name == self.provider_name
        assert isinstance(provider.description, str) and provider.description.strip()

    def test_parameters_are_a_json_schema_object(self, provider: Any) -> None:
        schema = provider.parameters
        assert schema.get("type") == "object", "parameters must be a JSON schema of type 'object'"
        assert isinstance(schema.get("properties", {}), dict)
        json.dumps(schema)
        missing = set(schema.get("required", [])) - set(self.sample_arguments)
        assert not missing, f"sample_arguments lack required parameters {sorted(missing)}"

    @pytest.mark.asyncio
    async def test_runs_and_returns_json(self, provider: Any) -> None:
        result = await _resolve(provider.run(dict(self.sample_arguments)))
        json.dumps(result)

    @pytest.mark.asyncio
    async def test_refuses_invalid_arguments(self, provider: Any) -> None:
        from vendo import InvalidInput

        if self.invalid_arguments is None:
            pytest.skip("invalid_arguments not given")
        with pytest.raises(InvalidInput):
            await _resolve(provider.run(dict(self.invalid_arguments)))


# -- auth -----------------------------------------------------------------------------------


class AuthenticatorContract(ProviderContract):
    """Authenticators: a principal for good credentials, ``None`` for other kinds,
    ``Unauthorized`` for bad ones. Requests are built with :func:`make_request`."""

    family = "auth"

    def valid_request(self) -> Any:
        """A request carrying good credentials of this authenticator's kind."""
        pytest.fail(f"{type(self).__name__} must define valid_request(): a request with good credentials")

    def invalid_request(self) -> Any:
        """A request carrying credentials of this kind that must be rejected."""
        pytest.fail(f"{type(self).__name__} must define invalid_request(): a request with rejected credentials")

    def foreign_request(self) -> Any:
        """A request without credentials of this kind (the chain must go on)."""
        return make_request()

    @pytest.mark.asyncio
    async def test_valid_credentials_give_a_principal(self, provider: Any) -> None:
        from vendo import Principal

        principal = await _resolve(provider.authenticate(self.valid_request()))
        assert isinstance(principal, Principal)
        assert principal.subject and principal.method
        assert isinstance(principal.scopes, frozenset)

    @pytest.mark.asyncio
    async def test_other_credentials_pass_to_the_next_authenticator(self, provider: Any) -> None:
        assert await _resolve(provider.authenticate(self.foreign_request())) is None

    @pytest.mark.asyncio
    async def test_bad_credentials_are_rejected(self, provider: Any) -> None:
        from vendo import Unauthorized

        with pytest.raises(Unauthorized):
            await _resolve(provider.authenticate(self.invalid_request()))


def make_request(method: str = "GET", path: str = "/", headers: Mapping[str, str] | None = None) -> Any:
    """A Starlette request as an authenticator receives it in the app."""
    from starlette.requests import Request

    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    scope = {"type": "http", "method": method, "path": path, "headers": raw, "query_string": b""}
    return Request(scope)


# -- billing ------------------------------------------------------------------------------------


class BillingProviderContract(ProviderContract):
    """Billing providers: everything of the :class:`vendo.BillingProvider` protocol a caller relies on.

    Customers and checkouts are idempotent, a checkout carries the Vendo subject through the
    vendor to its webhook, the catalog syncs idempotently, subscriptions can be read, changed
    (plan, seats), cancelled at the end of the period and resumed, or cancelled now; invoices
    are listed, usage reports are idempotent, and webhooks are verified and normalized.

    The suite works for a local provider and for a real vendor's plugin whose tests point at a
    loopback stand-in (override the ``kernel`` fixture to pass the stand-in's URL in the
    plugin's settings). Hooks are plain methods, sync or async; when one needs a fixture (your
    stand-in server), take it in an ``autouse`` fixture of your subclass and keep it on
    ``self``: pytest makes one instance of the class per test.

    You must define :meth:`signed_webhook`, :meth:`checkout_completed_webhook` and
    :meth:`subscription_id`; :meth:`stale_webhook` and :meth:`usage_total` have defaults.
    """

    family = "billing"
    #: The plan checkouts and subscriptions of the suite are for.
    plan: ClassVar[str] = "pro"
    #: The plan :meth:`test_change_subscription_plan_and_seats` switches to (an upgrade).
    other_plan: ClassVar[str] = "team"
    #: The catalog version of the prices :meth:`catalog` pushes.
    catalog_version: ClassVar[int] = 1
    #: Currency of the suite's prices.
    currency: ClassVar[str] = "usd"
    #: The metered feature :meth:`test_usage_reports_are_idempotent` reports.
    metered_feature: ClassVar[str] = "api_calls"
    #: An id the provider has never issued (``get_subscription`` must raise ``NotFound``).
    unknown_subscription_id: ClassVar[str] = "sub_vendo_contract_unknown"
    #: Seconds of signature tolerance of your webhooks (used by the default :meth:`stale_webhook`).
    webhook_tolerance_seconds: ClassVar[int] = 300
    #: Whether a subscription from :meth:`subscription_id` has at least one invoice (its first
    #: period billed). Set ``False`` for providers that invoice only later (trials).
    subscriptions_are_invoiced: ClassVar[bool] = True

    # -- hooks a provider author fills --------------------------------------------------------

    def price_key(self, plan: str, interval: str = "month") -> str:
        """The lookup key of the suite's price for ``plan``:
        ``vendo:<plan>:v<catalog_version>:<interval>:<currency>``."""
        return f"vendo:{plan}:v{self.catalog_version}:{interval}:{self.currency}"

    def usage_price_key(self, plan: str, interval: str = "month") -> str:
        """The lookup key of the suite's usage-based price of ``plan`` (for :attr:`metered_feature`)."""
        return f"{self.price_key(plan, interval)}:usage:{self.metered_feature}"

    def catalog(self) -> list[Any]:
        """The prices the suite pushes with ``sync_catalog`` before it subscribes: monthly
        prices of :attr:`plan` (1,000, plus a usage-based price of half a minor unit per
        :attr:`metered_feature`) and :attr:`other_plan` (3,000 + 500 per seat). Override to add
        what your vendor needs."""
        from vendo import CatalogPrice

        return [
            CatalogPrice(lookup_key=self.price_key(self.plan), plan=self.plan, plan_name=self.plan.title(),
                         plan_version=self.catalog_version, interval="month", currency=self.currency,
                         unit_amount=1000),
            CatalogPrice(lookup_key=self.usage_price_key(self.plan), plan=self.plan, plan_name=self.plan.title(),
                         plan_version=self.catalog_version, interval="month", currency=self.currency,
                         unit_amount=1, unit_amount_decimal="0.5", metered_feature=self.metered_feature),
            CatalogPrice(lookup_key=self.price_key(self.other_plan), plan=self.other_plan,
                         plan_name=self.other_plan.title(), plan_version=self.catalog_version, interval="month",
                         currency=self.currency, unit_amount=3000, per_seat_amount=500),
        ]

    def signed_webhook(self, provider: Any) -> tuple[dict[str, str], bytes]:
        """Headers and body of a genuine, freshly signed webhook delivery the provider must
        accept and translate into at least one event (e.g. an invoice paid)."""
        pytest.fail(f"{type(self).__name__} must define signed_webhook(provider) -> (headers, body)")

    def checkout_completed_webhook(self, provider: Any, session: Any, request: Any) -> tuple[dict[str, str], bytes]:
        """Headers and body of the delivery the vendor sends once the checkout ``session``
        (opened for ``request``) is paid, signed as the vendor signs it.

        A local provider completes the session and signs its own event; a real vendor's plugin
        builds the vendor's event from what its stand-in recorded for the session (its
        metadata), so the test proves the subject and plan travel through the vendor.
        """
        pytest.fail(f"{type(self).__name__} must define checkout_completed_webhook(provider, session, request)"
                    " -> (headers, body): the vendor's delivery once the session is paid")

    def stale_webhook(self, provider: Any, clock: Any) -> tuple[dict[str, str], bytes]:
        """A delivery whose signature is genuine but too old. The default signs one with
        :meth:`signed_webhook` and moves the kernel's frozen ``clock`` past
        :attr:`webhook_tolerance_seconds`; override it if your provider does not verify
        timestamps against the kernel's clock (sign with an old timestamp instead)."""
        headers, body = self.signed_webhook(provider)
        clock.advance(seconds=self.webhook_tolerance_seconds + 60)
        return headers, body

    async def subscription_id(self, provider: Any) -> str:
        """A new running (``active``) subscription of :attr:`plan` at the provider, one per call.

        The suite has synced :meth:`catalog` before calling it. A local provider opens and
        completes a checkout; a vendor plugin creates a customer and a subscription to the
        price of ``price_key(plan)`` (through its stand-in or the vendor's test mode).
        """
        pytest.fail(f"{type(self).__name__} must define subscription_id(provider) -> str: a new running"
                    " subscription of the suite's plan")

    def usage_total(self, provider: Any, subscription_id: str, feature: str) -> int | None:
        """The quantity of ``feature`` the vendor (or stand-in) recorded for the subscription,
        or ``None`` when it cannot be read back (the suite then only checks that retries
        with the same key are accepted)."""
        return None

    # -- helpers -------------------------------------------------------------------------------

    async def _running_subscription(self, provider: Any) -> str:
        await provider.sync_catalog(self.catalog())
        subscription = await _resolve(self.subscription_id(provider))
        assert isinstance(subscription, str) and subscription, "subscription_id() must return an id"
        return subscription

    def _checkout_request(self, **changes: Any) -> Any:
        from vendo import CheckoutRequest

        base: dict[str, Any] = {
            "subject": "ws-contract-1", "plan": self.plan, "price_key": self.price_key(self.plan),
            "success_url": "https://app.test/ok", "cancel_url": "https://app.test/cancel",
            "customer_email": "ada@example.com", "idempotency_key": "chk-contract-1",
        }
        base.update(changes)
        return CheckoutRequest(**base)

    @staticmethod
    def _assert_normalized(events: list[Any]) -> None:
        from vendo import BILLING_EVENT_TYPES, SUBSCRIPTION_STATUSES, BillingEvent

        for event in events:
            assert isinstance(event, BillingEvent), f"parse_webhook must return BillingEvent objects, got {event!r}"
            assert event.id, "every event carries the provider's event id"
            assert event.type in BILLING_EVENT_TYPES, f"{event.type!r} is not one of {BILLING_EVENT_TYPES}"
            assert event.status is None or event.status in SUBSCRIPTION_STATUSES, (
                f"{event.status!r} is not one of {SUBSCRIPTION_STATUSES}")
            assert event.occurred_at.tzinfo is not None, "occurred_at must be timezone-aware"

    # -- customers and checkouts ---------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_customer_creation_is_idempotent(self, provider: Any) -> None:
        first = await provider.create_customer("ws-contract-1", "ada@example.com")
        again = await provider.create_customer("ws-contract-1", "ada@example.com")
        other = await provider.create_customer("ws-contract-2", "bob@example.com")
        assert isinstance(first, str) and first
        assert first == again, "the same subject must get the same customer"
        assert first != other, "two subjects must get two customers"

    @pytest.mark.asyncio
    async def test_checkout_opens_a_session_idempotently(self, provider: Any) -> None:
        await provider.sync_catalog(self.catalog())
        request = self._checkout_request()
        session = await provider.create_checkout(request)
        assert session.id and session.url.startswith(("http://", "https://"))
        assert (await provider.create_checkout(request)).id == session.id, "same idempotency key, same session"
        other = await provider.create_checkout(self._checkout_request(idempotency_key="chk-contract-2"))
        assert other.id != session.id, "another idempotency key opens another session"

    @pytest.mark.asyncio
    async def test_checkout_sells_the_usage_based_prices_beside_the_plan(self, provider: Any) -> None:
        prices = await provider.sync_catalog(self.catalog())
        assert prices.get(self.usage_price_key(self.plan)), "sync_catalog returns the usage-based price too"
        request = self._checkout_request(idempotency_key="chk-contract-usage",
                                         usage_price_keys=(self.usage_price_key(self.plan),))
        session = await provider.create_checkout(request)
        assert session.id and session.url, "a checkout with usage-based prices opens like any other"
        again = await provider.create_checkout(request)
        assert again.id == session.id, "the same idempotency key answers the same session"

    @pytest.mark.asyncio
    async def test_checkout_carries_the_subject_to_its_webhook(self, provider: Any) -> None:
        await provider.sync_catalog(self.catalog())
        request = self._checkout_request(subject="ws-contract-7", idempotency_key="chk-contract-7")
        session = await provider.create_checkout(request)
        headers, body = await _resolve(self.checkout_completed_webhook(provider, session, request))
        events = provider.parse_webhook(headers, body)
        self._assert_normalized(events)
        completed = [e for e in events if e.type == "checkout.completed"]
        assert completed, f"a paid checkout must produce a checkout.completed event, got {[e.type for e in events]}"
        event = completed[0]
        assert event.subject == request.subject, "the event must name the subject the checkout was opened for"
        assert event.plan == request.plan, "the event must name the plan (metadata vendo_plan)"
        assert event.checkout_id == session.id, "the event must name the checkout session"

    @pytest.mark.asyncio
    async def test_portal_opens_a_session(self, provider: Any) -> None:
        from vendo import PortalSession

        customer = await provider.create_customer("ws-contract-1", "ada@example.com")
        portal = await provider.create_portal(customer, "https://app.test/billing")
        assert isinstance(portal, PortalSession)
        assert portal.id and portal.url.startswith(("http://", "https://"))

    # -- catalog -------------------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_catalog_sync_is_idempotent(self, provider: Any) -> None:
        prices = self.catalog()
        first = await provider.sync_catalog(prices)
        assert set(first) == {p.lookup_key for p in prices}, "one vendor price per lookup key"
        assert all(isinstance(v, str) and v for v in first.values())
        assert len(set(first.values())) == len(prices), "distinct lookup keys, distinct vendor prices"
        assert await provider.sync_catalog(prices) == first, "a second sync finds the same prices"

    # -- subscriptions -------------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_unknown_subscription_is_not_found(self, provider: Any) -> None:
        from vendo import NotFound

        with pytest.raises(NotFound):
            await provider.get_subscription(self.unknown_subscription_id)

    @pytest.mark.asyncio
    async def test_running_subscription_is_read_back(self, provider: Any) -> None:
        from vendo import SubscriptionInfo

        subscription = await self._running_subscription(provider)
        info = await provider.get_subscription(subscription)
        assert isinstance(info, SubscriptionInfo)
        assert info.id == subscription and info.customer_id
        assert info.status == "active" and info.plan == self.plan
        assert not info.cancel_at_period_end
        assert info.current_period_end is None or info.current_period_end.tzinfo is not None

    @pytest.mark.asyncio
    async def test_change_subscription_plan_and_seats(self, provider: Any) -> None:
        from vendo import SubscriptionChange, SubscriptionInfo

        subscription = await self._running_subscription(provider)
        changed = await provider.change_subscription(SubscriptionChange(
            subscription_id=subscription, plan=self.other_plan, price_key=self.price_key(self.other_plan),
            idempotency_key=f"chg-plan-{subscription}"))
        assert isinstance(changed, SubscriptionInfo) and changed.plan == self.other_plan
        assert (await provider.get_subscription(subscription)).plan == self.other_plan
        await provider.change_subscription(SubscriptionChange(subscription_id=subscription, seats=3,
                                                              idempotency_key=f"chg-seats-{subscription}"))
        info = await provider.get_subscription(subscription)
        assert (info.plan, info.seats) == (self.other_plan, 3), "a seat change keeps the plan"
        assert info.status == "active"

    @pytest.mark.asyncio
    async def test_cancel_at_period_end_then_resume(self, provider: Any) -> None:
        subscription = await self._running_subscription(provider)
        await provider.cancel_subscription(subscription, at_period_end=True)
        info = await provider.get_subscription(subscription)
        assert info.cancel_at_period_end, "cancel at period end must set cancel_at_period_end"
        assert info.status == "active", "the paid period goes on until its end"
        resumed = await provider.resume_subscription(subscription)
        assert not resumed.cancel_at_period_end
        assert not (await provider.get_subscription(subscription)).cancel_at_period_end
        assert (await provider.get_subscription(subscription)).status == "active"

    @pytest.mark.asyncio
    async def test_cancel_now(self, provider: Any) -> None:
        subscription = await self._running_subscription(provider)
        await provider.cancel_subscription(subscription, at_period_end=False)
        assert (await provider.get_subscription(subscription)).status == "canceled"

    # -- invoices and usage --------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_invoices_are_listed(self, provider: Any) -> None:
        from vendo import Invoice

        subscription = await self._running_subscription(provider)
        customer = (await provider.get_subscription(subscription)).customer_id
        invoices = await provider.list_invoices(customer)
        assert isinstance(invoices, list)
        assert all(isinstance(invoice, Invoice) for invoice in invoices), "list_invoices returns Invoice objects"
        if self.subscriptions_are_invoiced:
            assert invoices, "a running subscription has been invoiced at least once"
        for invoice in invoices:
            assert invoice.id and invoice.customer_id == customer
            assert invoice.status in ("draft", "open", "paid", "void", "uncollectible")
            assert invoice.amount_due >= 0 and invoice.amount_paid >= 0 and invoice.currency
            assert invoice.created_at.tzinfo is not None
        dates = [invoice.created_at for invoice in invoices]
        assert dates == sorted(dates, reverse=True), "invoices come newest first"

    @pytest.mark.asyncio
    async def test_usage_reports_are_idempotent(self, provider: Any, kernel: Any) -> None:
        from vendo import UsageReport

        subscription = await self._running_subscription(provider)
        report = UsageReport(subscription_id=subscription, feature=self.metered_feature, quantity=7,
                             timestamp=kernel.now(), idempotency_key=f"usage-{subscription}-1")
        await provider.report_usage(report)
        await provider.report_usage(report)  # a retry
        await provider.report_usage(UsageReport(subscription_id=subscription, feature=self.metered_feature,
                                                quantity=5, timestamp=kernel.now(),
                                                idempotency_key=f"usage-{subscription}-2"))
        total = await _resolve(self.usage_total(provider, subscription, self.metered_feature))
        if total is not None:
            assert total == 12, "a report retried with the same key counts once"

    # -- webhooks ------------------------------------------------------------------------------

    def test_genuine_webhook_is_translated(self, provider: Any) -> None:
        headers, body = self.signed_webhook(provider)
        events = provider.parse_webhook(headers, body)
        assert isinstance(events, list) and events, "a genuine webhook must produce at least one event"
        self._assert_normalized(events)

    def test_tampered_webhook_is_rejected(self, provider: Any) -> None:
        from vendo import InvalidSignature

        headers, body = self.signed_webhook(provider)
        with pytest.raises(InvalidSignature):
            provider.parse_webhook(headers, body.replace(b"}", b" }", 1) if b"}" in body else body + b" ")

    def test_unsigned_webhook_is_rejected(self, provider: Any) -> None:
        from vendo import InvalidSignature

        _headers, body = self.signed_webhook(provider)
        with pytest.raises(InvalidSignature):
            provider.parse_webhook({}, body)

    def test_stale_webhook_is_rejected(self, provider: Any, vendo_clock: Any) -> None:
        from vendo import InvalidSignature

        headers, body = self.stale_webhook(provider, vendo_clock)
        with pytest.raises(InvalidSignature):
            provider.parse_webhook(headers, body)


# -- licensing ------------------------------------------------------------------------------------


class LicenseBackendContract(ProviderContract):
    """License backends: issue, verify with machine-readable codes, revoke, activations."""

    family = "license"

    def _request(self, **changes: Any) -> Any:
        from vendo import LicenseRequest

        base = {"email": "ada@example.com", "tier": "pro", "features": ("er_diagram",)}
        base.update(changes)
        return LicenseRequest(**base)

    def test_issued_key_verifies(self, provider: Any) -> None:
        issued = provider.issue(self._request())
        result = provider.verify(issued.key)
        assert result.code == "valid" and result.valid
        assert result.license.email == "ada@example.com" and result.license.tier == "pro"
        assert "er_diagram" in result.license.features

    def test_altered_key_is_rejected(self, provider: Any) -> None:
        key = provider.issue(self._request()).key
        position = len(key) // 2
        altered = key[:position] + ("A" if key[position] != "A" else "B") + key[position + 1:]
        assert not provider.verify(altered).valid

    @pytest.mark.parametrize("garbage", ["", "not-a-key", "x" * 10_000, "\x00\xff"])
    def test_garbage_is_malformed_never_an_exception(self, provider: Any, garbage: str) -> None:
        assert provider.verify(garbage).code == "malformed_key"

    def test_expired_key(self, provider: Any, kernel: Any) -> None:
        past = kernel.now() - timedelta(days=1)
        issued = provider.issue(self._request(expires_at=past))
        assert provider.verify(issued.key).code == "expired"

    def test_revoked_key(self, provider: Any) -> None:
        issued = provider.issue(self._request())
        provider.revoke(issued.id)
        assert provider.verify(issued.key).code == "revoked"

    def test_machine_binding(self, provider: Any) -> None:
        issued = provider.issue(self._request(machine="machine-a"))
        assert provider.verify(issued.key, machine="machine-a").valid
        assert provider.verify(issued.key, machine="machine-b").code == "machine_mismatch"

    def test_activation_limit(self, provider: Any) -> None:
        issued = provider.issue(self._request(max_machines=2))
        assert provider.activate(issued.key, "m1").valid
        assert provider.activate(issued.key, "m2").valid
        assert provider.activate(issued.key, "m1").valid  # re-activating a machine is idempotent
        assert provider.activate(issued.key, "m3").code == "activation_limit"
        assert sorted(provider.activations(issued.key)) == ["m1", "m2"]
        provider.deactivate(issued.key, "m1")
        assert provider.activate(issued.key, "m3").valid
        assert sorted(provider.activations(issued.key)) == ["m2", "m3"]


class OfflineLicenseBackendContract(LicenseBackendContract):
    """License backends whose proofs apps check offline (:class:`vendo.OfflineLicenseBackend`):
    public keys by key id, machine-bound license files, a signed revocation list, get/list.

    Fill :meth:`verify_file` and :meth:`verify_revocations` with your format's offline
    verifier (what an app embeds), so the suite checks what apps will check.
    """

    def verify_file(self, public_keys: dict[str, str], text: str, key: str, machine: str) -> str:
        """Verify ``text`` offline for ``key`` on ``machine``; return the verification code."""
        pytest.fail(f"{type(self).__name__} must define verify_file(public_keys, text, key, machine) -> code")

    def revoked_ids(self, public_keys: dict[str, str], text: str) -> set[str]:
        """Verify a revocation list offline and return the revoked license ids (raise if it does not verify)."""
        pytest.fail(f"{type(self).__name__} must define revoked_ids(public_keys, text) -> set[str]")

    def test_implements_the_offline_protocol(self, provider: Any) -> None:
        from vendo import OfflineLicenseBackend

        assert isinstance(provider, OfflineLicenseBackend)

    def test_get_and_list(self, provider: Any) -> None:
        issued = provider.issue(self._request(email="grace@example.com"))
        assert provider.get(issued.id).email == "grace@example.com"
        assert [item.id for item in provider.list(email="grace@example.com")] == [issued.id]

    def test_license_file_verifies_offline_for_its_machine_only(self, provider: Any) -> None:
        issued = provider.issue(self._request())
        assert provider.activate(issued.key, "machine-a").valid
        text = provider.checkout_file(issued.key, "machine-a")
        keys = provider.public_keys()
        assert self.verify_file(keys, text, issued.key, "machine-a") == "valid"
        assert self.verify_file(keys, text, issued.key, "machine-b") == "machine_mismatch"

    def test_license_file_needs_an_activation(self, provider: Any) -> None:
        from vendo import Conflict

        issued = provider.issue(self._request())
        with pytest.raises(Conflict):
            provider.checkout_file(issued.key, "machine-never-activated")

    def test_revocation_list_names_revoked_licenses(self, provider: Any) -> None:
        kept, revoked = provider.issue(self._request()), provider.issue(self._request())
        provider.revoke(revoked.id)
        ids = self.revoked_ids(provider.public_keys(), provider.revocation_list())
        assert revoked.id in ids and kept.id not in ids


# -- AI ------------------------------------------------------------------------------------------


class AIProviderContract(ProviderContract):
    """AI providers: models, chat, streaming, embeddings, tokens and cost."""

    family = "ai"
    chat_model: ClassVar[str] = ""
    embedding_model: ClassVar[str | None] = None
    #: Same input, same output (local or mocked models): streaming must equal chat exactly.
    deterministic: ClassVar[bool] = False

    def _request(self, **changes: Any) -> Any:
        from vendo import ChatRequest

        base = {"model": self.chat_model, "messages": ({"role": "user", "content": "Say hello to Ada."},),
                "temperature": 0.0}
        base.update(changes)
        return ChatRequest(**base)

    @pytest.mark.asyncio
    async def test_models_are_listed(self, provider: Any) -> None:
        ids = {m.id for m in await provider.models()}
        assert self.chat_model in ids
        if self.embedding_model:
            assert self.embedding_model in ids

    @pytest.mark.asyncio
    async def test_chat(self, provider: Any) -> None:
        response = await provider.chat(self._request())
        assert response.content and response.finish_reason
        assert response.usage.prompt_tokens > 0 and response.usage.completion_tokens > 0

    @pytest.mark.asyncio
    async def test_stream(self, provider: Any) -> None:
        chunks = [chunk async for chunk in provider.stream(self._request())]
        assert chunks, "a stream yields at least one chunk"
        assert chunks[-1].finish_reason, "the last chunk carries finish_reason"
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
        text = "".join(c.delta for c in chunks)
        assert text
        if self.deterministic:
            assert text == (await provider.chat(self._request())).content

    @pytest.mark.asyncio
    async def test_unknown_model(self, provider: Any) -> None:
        from vendo import NotFound

        with pytest.raises(NotFound) as info:
            await provider.chat(self._request(model="no-such-model-xyz"))
        assert info.value.code == "model_not_found"

    @pytest.mark.asyncio
    async def test_embeddings(self, provider: Any) -> None:
        if not self.embedding_model:
            pytest.skip("embedding_model not given")
        result = await provider.embed(self.embedding_model, ["first text", "second text"])
        assert len(result.vectors) == 2
        assert len(result.vectors[0]) == len(result.vectors[1]) > 0
        assert result.vectors[0] != result.vectors[1]

    def test_tokens_and_cost(self, provider: Any) -> None:
        from vendo import Usage

        messages = [{"role": "user", "content": "Say hello to Ada."}]
        tokens = provider.count_tokens(self.chat_model, messages)
        assert isinstance(tokens, int) and tokens > 0
        assert provider.count_tokens(self.chat_model, messages * 2) > tokens
        cost = provider.cost(self.chat_model, Usage(prompt_tokens=1000, completion_tokens=1000))
        assert isinstance(cost, float) and cost >= 0.0


# -- knowledge ------------------------------------------------------------------------------------


class KnowledgeConnectorContract(ProviderContract):
    """Knowledge connectors: documents with stable unique ids, ``InvalidInput`` for bad sources."""

    family = "knowledge"

    def source(self, tmp_path: Any) -> dict[str, Any]:
        """A source holding at least one document (may create files under ``tmp_path``)."""
        pytest.fail(f"{type(self).__name__} must define source(tmp_path): a source with at least one document")

    def invalid_source(self, tmp_path: Any) -> dict[str, Any]:
        """A source description this connector must refuse."""
        return {}

    @pytest.mark.asyncio
    async def test_fetches_documents_with_stable_ids(self, provider: Any, tmp_path: Any) -> None:
        source = self.source(tmp_path)
        first = [doc async for doc in provider.fetch(source)]
        second = [doc async for doc in provider.fetch(source)]
        assert first, "the source must yield documents"
        ids = [doc.id for doc in first]
        assert len(set(ids)) == len(ids), "document ids must be unique"
        assert ids == [doc.id for doc in second], "document ids must be stable across fetches"
        for doc in first:
            assert doc.title and doc.text.strip()

    @pytest.mark.asyncio
    async def test_invalid_source_is_refused(self, provider: Any, tmp_path: Any) -> None:
        from vendo import InvalidInput

        with pytest.raises(InvalidInput):
            [doc async for doc in provider.fetch(self.invalid_source(tmp_path))]


class VectorStoreContract(ProviderContract):
    """Vector stores: nearest first, upserts replace, namespaces never mix, deletes."""

    family = "vector_store"

    @pytest.mark.asyncio
    async def test_nearest_first(self, provider: Any) -> None:
        await provider.upsert("ns", [("a", [1.0, 0.0, 0.0], {"t": "a"}), ("b", [0.0, 1.0, 0.0], {"t": "b"}),
                                     ("c", [0.7, 0.7, 0.0], {"t": "c"})])
        matches = await provider.query("ns", [1.0, 0.1, 0.0], top_k=2)
        assert [m.id for m in matches] == ["a", "c"]
        assert matches[0].score >= matches[1].score and matches[0].metadata == {"t": "a"}

    @pytest.mark.asyncio
    async def test_upsert_replaces_and_delete_removes(self, provider: Any) -> None:
        await provider.upsert("ns", [("a", [1.0, 0.0], {"v": 1})])
        await provider.upsert("ns", [("a", [0.0, 1.0], {"v": 2})])
        matches = await provider.query("ns", [0.0, 1.0], top_k=5)
        assert [(m.id, m.metadata["v"]) for m in matches] == [("a", 2)]
        await provider.delete("ns", ["a", "never-existed"])
        assert await provider.query("ns", [0.0, 1.0], top_k=5) == []

    @pytest.mark.asyncio
    async def test_namespaces_are_isolated(self, provider: Any) -> None:
        await provider.upsert("tenant-a", [("x", [1.0, 0.0], {})])
        await provider.upsert("tenant-b", [("y", [1.0, 0.0], {})])
        assert [m.id for m in await provider.query("tenant-a", [1.0, 0.0])] == ["x"]
        assert [m.id for m in await provider.query("tenant-b", [1.0, 0.0])] == ["y"]


# -- counters ---------------------------------------------------------------------------------------


class CounterStoreContract(ProviderContract):
    """Counter stores: atomic all-or-nothing ``try_add`` that never exceeds a limit, even
    under concurrent threads; unconditional ``add``; ``read`` (0 for unknown keys);
    ``overwrite``; and moves of a transaction that does not commit are undone.

    Each test runs its store calls in transactions built like the entitlement service's:
    a kernel session whose ``info[COMPENSATIONS]`` collects the undo actions a store outside
    the database registers with :func:`vendo.on_rollback`, run newest first when the
    transaction fails. Keys are unique per test, so a store whose data outlives a test is fine.
    """

    family = "counters"
    #: Threads of the concurrency tests (each move in a transaction of its own).
    threads: ClassVar[int] = 6

    def initialise(self, provider: Any, kernel: Any) -> None:
        """Make a fresh store count. The default calls ``overwrite`` with no values, which the
        protocol says makes a store that lost its data (or never had any) count again."""
        with self.transaction(kernel) as session:
            provider.overwrite(session, {})

    @pytest.fixture
    def store(self, provider: Any, kernel: Any) -> Any:
        """The provider, initialised (see :meth:`initialise`)."""
        self.initialise(provider, kernel)
        return provider

    @pytest.fixture
    def keys(self) -> Callable[[str], str]:
        """``keys("chat")``: a monthly counter key of a subject unique to this test."""
        import uuid
        from datetime import datetime, timezone

        from vendo.capabilities import counter_key

        subject = f"usr_{uuid.uuid4().hex[:12]}"
        start = datetime(2026, 1, 1, tzinfo=timezone.utc)
        return lambda feature: counter_key(subject, feature, "month", start)

    @staticmethod
    @contextmanager
    def transaction(kernel: Any) -> Iterator[Any]:
        """A kernel session in a transaction; when it fails, the undo actions the store
        registered run newest first (what the entitlement service does)."""
        from vendo.capabilities import COMPENSATIONS

        undo: list[Callable[[], None]] = []
        try:
            with kernel.session() as session:
                session.info[COMPENSATIONS] = undo
                yield session
        except BaseException:
            for action in reversed(undo):
                action()
            raise

    def _read(self, store: Any, kernel: Any, keys: list[str]) -> list[int]:
        with self.transaction(kernel) as session:
            return store.read(session, keys)

    def test_try_add_stays_within_the_limit(self, store: Any, kernel: Any, keys: Any) -> None:
        from vendo import Bucket

        chat = keys("chat")
        with self.transaction(kernel) as session:
            assert store.try_add(session, [Bucket(chat, 5)], 3) == [3]
            assert store.try_add(session, [Bucket(chat, 5)], 3) is None, "3 + 3 would exceed 5"
            assert store.try_add(session, [Bucket(chat, 5)], 2) == [5], "reaching the limit exactly is allowed"
            assert store.try_add(session, [Bucket(chat, 5)], 1) is None
            assert store.try_add(session, [Bucket(chat, None)], 10) == [15], "no limit: unlimited"
        assert self._read(store, kernel, [chat]) == [15]

    def test_try_add_over_the_limit_on_a_new_key_creates_nothing(self, store: Any, kernel: Any, keys: Any) -> None:
        from vendo import Bucket

        with self.transaction(kernel) as session:
            assert store.try_add(session, [Bucket(keys("chat"), 2)], 3) is None
        assert self._read(store, kernel, [keys("chat")]) == [0]

    def test_try_add_moves_every_bucket_or_none(self, store: Any, kernel: Any, keys: Any) -> None:
        from vendo import Bucket

        pool, member = keys("pool"), keys("member")
        with self.transaction(kernel) as session:
            assert store.try_add(session, [Bucket(pool, 10), Bucket(member, 4)], 3) == [3, 3]
            assert store.try_add(session, [Bucket(pool, 10), Bucket(member, 4)], 2) is None, "the member cap refuses"
            assert store.read(session, [pool, member]) == [3, 3], "a refusal moves no bucket"
            assert store.try_add(session, [Bucket(member, None), Bucket(pool, 4)], 2) is None, "order does not matter"
            assert store.read(session, [pool, member]) == [3, 3]
            assert store.try_add(session, [Bucket(pool, 10), Bucket(member, 4)], 1) == [4, 4]
        assert self._read(store, kernel, [pool, member]) == [4, 4]

    def test_add_ignores_limits_and_may_be_negative(self, store: Any, kernel: Any, keys: Any) -> None:
        from vendo import Bucket

        chat, other = keys("chat"), keys("other")
        with self.transaction(kernel) as session:
            assert store.add(session, [Bucket(chat, 1), Bucket(other, None)], 5) == [5, 5]
            assert store.add(session, [Bucket(chat, 1)], -7) == [-2]
        assert self._read(store, kernel, [chat, other]) == [-2, 5]

    def test_read_gives_zero_for_unknown_keys(self, store: Any, kernel: Any, keys: Any) -> None:
        from vendo import Bucket

        with self.transaction(kernel) as session:
            store.add(session, [Bucket(keys("chat"), None)], 4)
            assert store.read(session, [keys("unknown"), keys("chat")]) == [0, 4]
            assert store.read(session, []) == []

    def test_overwrite_sets_values(self, store: Any, kernel: Any, keys: Any) -> None:
        from vendo import Bucket

        chat, notes, zero = keys("chat"), keys("notes"), keys("zero")
        with self.transaction(kernel) as session:
            store.add(session, [Bucket(chat, None), Bucket(zero, None)], 40)
        with self.transaction(kernel) as session:
            store.overwrite(session, {chat: 9, notes: 3, zero: 0})
        assert self._read(store, kernel, [chat, notes, zero]) == [9, 3, 0]
        with self.transaction(kernel) as session:
            assert store.try_add(session, [Bucket(chat, 10)], 1) == [10], "limits apply to the overwritten value"
            assert store.try_add(session, [Bucket(chat, 10)], 1) is None

    def test_moves_of_a_failed_transaction_are_undone(self, store: Any, kernel: Any, keys: Any) -> None:
        from vendo import Bucket

        chat, member = keys("chat"), keys("member")
        with self.transaction(kernel) as session:
            store.add(session, [Bucket(chat, None), Bucket(member, None)], 2)

        class Abort(Exception):
            pass

        with pytest.raises(Abort):
            with self.transaction(kernel) as session:
                assert store.try_add(session, [Bucket(chat, 10), Bucket(member, 10)], 3) == [5, 5]
                assert store.add(session, [Bucket(chat, None)], -1) == [4]
                raise Abort
        assert self._read(store, kernel, [chat, member]) == [2, 2], "a rolled-back transaction keeps no move"

    def _race(self, kernel: Any, attempts: int, move: Callable[[Any, int], Any]) -> list[Any]:
        """Run ``attempts`` moves over :attr:`threads` threads, each move in a transaction
        of its own; return their results (``move(session, attempt)``)."""
        import threading

        results: list[Any] = []
        errors: list[BaseException] = []
        lock = threading.Lock()
        start = threading.Barrier(self.threads)
        todo = list(range(attempts))

        def worker() -> None:
            start.wait()
            while True:
                with lock:
                    if not todo:
                        return
                    attempt = todo.pop()
                try:
                    with self.transaction(kernel) as session:
                        result = move(session, attempt)
                except BaseException as exc:  # reported by the test, not lost in a thread
                    errors.append(exc)
                    return
                with lock:
                    results.append(result)

        workers = [threading.Thread(target=worker) for _ in range(self.threads)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join(timeout=120)
        assert not errors, f"a concurrent move failed: {errors[0]!r}"
        assert len(results) == attempts, "a worker did not finish"
        return results

    def test_concurrent_try_add_never_exceeds_the_limit(self, store: Any, kernel: Any, keys: Any) -> None:
        from vendo import Bucket

        chat = keys("chat")
        results = self._race(kernel, 60, lambda session, _: store.try_add(session, [Bucket(chat, 25)], 1))
        granted = sorted(r[0] for r in results if r is not None)
        assert granted == list(range(1, 26)), "exactly the limit is granted, each value once"
        assert self._read(store, kernel, [chat]) == [25]

    def test_concurrent_pooled_moves_respect_every_bucket(self, store: Any, kernel: Any, keys: Any) -> None:
        from vendo import Bucket

        pool = keys("pool")
        members = [keys(f"member{i}") for i in range(4)]

        def move(session: Any, attempt: int) -> Any:
            return store.try_add(session, [Bucket(pool, 10), Bucket(members[attempt % 4], 4)], 1)

        results = self._race(kernel, 48, move)
        assert sum(r is not None for r in results) == 10, "the pool's limit is reached, never passed"
        values = self._read(store, kernel, [pool, *members])
        assert values[0] == 10 and sum(values[1:]) == 10 and max(values[1:]) <= 4

# -- notifiers --------------------------------------------------------------------------------

#: The email templates of the ``notification.requested`` contract, with a context each.
EMAIL_TEMPLATES: dict[str, dict[str, Any]] = {
    "license_key": {"product": "QoreDB", "tier": "pro", "key": "CONTRACT-KEY-7F3A", "license_id": "lic_contract",
                    "expires_at": None},
    "invitation": {"workspace": "Acme", "inviter": "Ada", "accept_url": "https://app.example.com/i?token=vinv_c"},
    "password_reset": {"reset_url": "https://app.example.com/reset?token=vpr_c", "expires_minutes": 60},
    "payment_failed": {"workspace": "Acme", "plan": "pro", "grace_until": "2030-02-01", "portal_url": None},
}


class NotifierContract(ProviderContract):
    """Notifiers: serve their channel, send every contract template, refuse what they cannot
    render with ``InvalidInput``, and receive ``kernel.notify`` requests through the outbox.

    Define :meth:`delivered` (what reached the far end so far, e.g. the messages a test SMTP
    server received) and, for the ``email`` channel, :meth:`identity` (the Message-ID).
    """

    family = "notifier"
    channel: ClassVar[str] = "email"
    recipient: ClassVar[str] = "ada@example.com"
    #: ``{template: context}`` the notifier must send (default: the email contract's).
    templates: ClassVar[Mapping[str, Mapping[str, Any]]] = EMAIL_TEMPLATES

    def delivered(self) -> list[Any]:
        """Everything delivered so far, oldest first."""
        pytest.fail(f"{type(self).__name__} must define delivered(): what reached the far end so far")

    def identity(self, item: Any) -> str:
        """The identity of a delivered item that a retry must keep (an email's Message-ID)."""
        pytest.fail(f"{type(self).__name__} must define identity(item), e.g. the Message-ID header")

    def _notification(self, template: str, context: Mapping[str, Any], key: str, attempt: int = 1) -> Any:
        from vendo import Notification

        return Notification(id=f"evt-{key}", channel=self.channel, to=self.recipient, template=template,
                            context=dict(context), idempotency_key=key, attempt=attempt)

    def test_serves_its_channel(self, provider: Any) -> None:
        assert provider.channel == self.channel

    @pytest.mark.asyncio
    async def test_sends_every_contract_template(self, provider: Any) -> None:
        before = len(self.delivered())
        for template, context in self.templates.items():
            await provider.send(self._notification(template, context, f"contract:{template}"))
        assert len(self.delivered()) - before == len(self.templates)

    @pytest.mark.asyncio
    async def test_a_repeated_send_keeps_its_identity(self, provider: Any) -> None:
        template, context = next(iter(self.templates.items()))
        await provider.send(self._notification(template, context, "contract:same"))
        await provider.send(self._notification(template, context, "contract:same", attempt=2))
        await provider.send(self._notification(template, context, "contract:other"))
        first, again, other = (self.identity(item) for item in self.delivered()[-3:])
        assert first == again != other

    @pytest.mark.asyncio
    async def test_unknown_template_and_missing_values_are_invalid_input(self, provider: Any) -> None:
        from vendo import InvalidInput

        before = len(self.delivered())
        with pytest.raises(InvalidInput):
            await provider.send(self._notification("no_such_template_anywhere", {}, "contract:unknown"))
        template = next(iter(self.templates))
        with pytest.raises(InvalidInput):
            await provider.send(self._notification(template, {}, "contract:empty"))
        assert len(self.delivered()) == before

    @pytest.mark.asyncio
    async def test_receives_kernel_notify_through_the_outbox(self, kernel: Any) -> None:
        template, context = next(iter(self.templates.items()))
        before = len(self.delivered())
        with kernel.session() as session:
            event = kernel.notify(session, to=self.recipient, template=template, context=dict(context),
                                  idempotency_key="contract:outbox", channel=self.channel)
        await kernel.outbox.drain()
        assert kernel.outbox.event(event.id)["status"] == "delivered"
        assert len(self.delivered()) == before + 1


SUITES: dict[str, type[ProviderContract]] = {
    "tool": ToolContract,
    "auth": AuthenticatorContract,
    "billing": BillingProviderContract,
    "license": LicenseBackendContract,
    "ai": AIProviderContract,
    "knowledge": KnowledgeConnectorContract,
    "vector_store": VectorStoreContract,
    "counters": CounterStoreContract,

    "notifier": NotifierContract,
}
