"""The package as a whole: `vendo-sdk check` passes, the entry point loads the plugin, the SDK
is imported only when the provider first talks to Stripe, and when the provider is registered."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
import vendo_billing_stripe
from vendo import ProviderNotConfigured

PACKAGE = Path(__file__).resolve().parents[1]
PLUGIN = "billing-stripe"


def test_vendo_sdk_check_passes() -> None:
    executable = Path(sys.executable).with_name("vendo-sdk")
    command = [str(executable)] if executable.exists() else [sys.executable, "-m", "vendo_sdk.cli"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("VENDO_") or k.startswith("VENDO_TEST_")}
    done = subprocess.run([*command, "check", str(PACKAGE)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.stdout.startswith("ok: vendo-billing-stripe 0.1.0:"), done.stdout


def test_the_entry_point_names_the_plugin() -> None:
    (point,) = [p for p in entry_points(group="vendo.plugins") if p.name == PLUGIN]
    assert point.load() is vendo_billing_stripe and vendo_billing_stripe.vendo_api == ">=1.0,<2"


def test_the_sdk_is_imported_only_on_first_use() -> None:
    code = ("import sys, vendo, vendo_billing_stripe, vendo_billing_stripe.provider, vendo_billing_stripe.webhooks\n"
            "assert 'stripe' not in sys.modules, 'stripe imported at module import'\n"
            "from vendo_billing_stripe import Settings\n"
            "from vendo_billing_stripe.provider import StripeBillingProvider\n"
            "p = StripeBillingProvider(Settings(api_key='sk_test_x'))\n"
            "assert 'stripe' not in sys.modules\n"
            "p.client\n"
            "assert 'stripe' in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def _kernel(vendo_kernel: Any, providers: dict[str, str] | None = None, **settings: Any) -> Any:
    return vendo_kernel({PLUGIN: vendo_billing_stripe}, providers=providers or {},
                        plugin_settings={PLUGIN: settings})


def test_registered_when_chosen_or_given_a_key(vendo_kernel: Any) -> None:
    assert _kernel(vendo_kernel).providers.registered("billing") == []
    keyed = _kernel(vendo_kernel, api_key="sk_test_x")
    assert [r.name for r in keyed.providers.registered("billing")] == ["stripe"]
    assert keyed.providers.get("billing").settings.webhook_tolerance == 300
    chosen = _kernel(vendo_kernel, {"billing": "stripe"})
    assert [r.name for r in chosen.providers.registered("billing")] == ["stripe"]


async def test_chosen_without_a_key_says_what_to_set(vendo_kernel: Any) -> None:
    provider = _kernel(vendo_kernel, {"billing": "stripe"}).providers.get("billing", "stripe")
    with pytest.raises(ProviderNotConfigured) as caught:
        await provider.create_customer("ws-1")
    assert "api_key" in caught.value.message
    with pytest.raises(ProviderNotConfigured) as caught:
        provider.parse_webhook({"Stripe-Signature": "t=1,v1=00"}, b"{}")
    assert "webhook_secret" in caught.value.message


def test_secrets_are_never_shown(vendo_kernel: Any) -> None:
    settings = _kernel(vendo_kernel, api_key="sk_test_secret_value", webhook_secret="whsec_secret_value").plugin_settings(
        PLUGIN)
    shown = repr(settings) + str(settings.model_dump())
    assert "sk_test_secret_value" not in shown and "whsec_secret_value" not in shown


def test_settings_come_from_the_environment(vendo_kernel: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VENDO_BILLING_STRIPE__API_KEY", "sk_test_from_env")
    monkeypatch.setenv("VENDO_BILLING_STRIPE__WEBHOOK_TOLERANCE", "120")
    kernel = vendo_kernel({PLUGIN: vendo_billing_stripe})
    settings = kernel.plugin_settings(PLUGIN)
    assert settings.api_key.get_secret_value() == "sk_test_from_env" and settings.webhook_tolerance == 120
    assert [r.name for r in kernel.providers.registered("billing")] == ["stripe"]
