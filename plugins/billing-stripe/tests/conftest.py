"""Fixtures of vendo-billing-stripe's tests: the real SDK against real loopback peers.

``localstripe`` runs once per test session in its own process (flushed before each test); a
test that needs it is skipped locally when it cannot start, and fails in CI (``CI`` set).
``stand_in`` is a fresh :class:`StripeStandIn` per test; ``receiver`` a webhook endpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from billing_stripe_support import API_KEY, WEBHOOK_SECRET, LocalStripe, StripeStandIn, WebhookReceiver, fail_or_skip
from vendo_billing_stripe import Settings
from vendo_billing_stripe.provider import StripeBillingProvider


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No VENDO_* variable, vendo.toml or .env of the developer's leaks into a test."""
    for name in list(os.environ):
        if name.startswith("VENDO_") and not name.startswith("VENDO_TEST_"):
            monkeypatch.delenv(name)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)


@pytest.fixture(scope="session")
def _localstripe_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStripe | str]:
    try:
        server = LocalStripe(tmp_path_factory.mktemp("localstripe"))
    except (OSError, RuntimeError) as exc:
        yield f"localstripe could not start: {exc}"
        return
    yield server
    server.close()


@pytest.fixture
def localstripe(_localstripe_process: LocalStripe | str) -> LocalStripe:
    """The session's localstripe, emptied."""
    if isinstance(_localstripe_process, str):
        fail_or_skip(_localstripe_process)
    assert isinstance(_localstripe_process, LocalStripe)
    _localstripe_process.flush()
    return _localstripe_process


@pytest.fixture
def stand_in() -> Iterator[StripeStandIn]:
    """A fresh loopback Stripe stand-in."""
    server = StripeStandIn()
    yield server
    server.close()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A loopback webhook endpoint."""
    server = WebhookReceiver()
    yield server
    server.close()


@pytest.fixture
def make_provider() -> Callable[..., StripeBillingProvider]:
    """``make_provider(api_base, **settings)``: a provider on that base URL (no retries, so a
    failure shows at once), with the tests' API key and webhook secret."""

    def factory(api_base: str, clock: Callable[[], Any] | None = None, **settings: Any) -> StripeBillingProvider:
        values: dict[str, Any] = {"api_key": API_KEY, "webhook_secret": WEBHOOK_SECRET, "api_base": api_base,
                                  "max_network_retries": 0, "timeout": 10}
        values.update(settings)
        return StripeBillingProvider(Settings(**values), clock=clock)

    return factory


@pytest.fixture
def stripe_sdk(localstripe: LocalStripe) -> Any:
    """A plain StripeClient on localstripe, for setting up what a test needs there."""
    import stripe

    return stripe.StripeClient(API_KEY, base_addresses={"api": localstripe.url}, max_network_retries=0,
                               http_client=stripe.HTTPXClient(timeout=10, allow_sync_methods=True))
