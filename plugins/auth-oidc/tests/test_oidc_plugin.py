"""The package: `vendo-sdk check`, entry-point discovery, settings, migrations, ``next`` rules."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from vendo import InvalidInput
from vendo_auth_oidc.redirects import check_next, with_fragment
from vendo_auth_oidc.settings import ProviderConfig, Settings

PACKAGE = Path(__file__).resolve().parents[1]


def _command(name: str) -> str:
    """A console script of this environment (next to the interpreter), else from PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    assert found, f"{name} is not installed in this environment"
    return found


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VENDO_") or k.startswith("VENDO_TEST_")}
    env.update(extra)
    return env


def test_vendo_sdk_check_passes() -> None:
    result = subprocess.run([_command("vendo-sdk"), "check", str(PACKAGE)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok: vendo-auth-oidc 0.1.0")


def test_discovered_through_its_entry_point_with_secrets_masked(tmp_path: Path) -> None:
    (tmp_path / "vendo.toml").write_text(
        f'data_dir = "{tmp_path / "data"}"\n'
        "[plugins]\nenabled = [\"auth-oidc\"]\n"
        "[auth-oidc.providers.google]\n"
        'issuer = "https://accounts.google.com"\nclient_id = "1234.apps.googleusercontent.com"\n'
    )
    env = _clean_env(VENDO_AUTH_OIDC__PROVIDERS__GOOGLE__CLIENT_SECRET="super-secret-value")
    listing = subprocess.run([_command("vendo"), "plugins", "list", "--json"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0, listing.stderr
    plugins = {p["name"]: p for p in json.loads(listing.stdout)}
    assert plugins["auth-oidc"]["status"] == "ok", plugins["auth-oidc"]
    assert plugins["auth-oidc"]["distribution"] == "vendo-auth-oidc"
    shown = subprocess.run([_command("vendo"), "config", "show", "--json"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    google = json.loads(shown.stdout)["plugin_settings"]["auth-oidc"]["providers"]["google"]
    assert google["client_id"] == "1234.apps.googleusercontent.com"
    assert google["client_secret"] != "super-secret-value" and "super-secret-value" not in shown.stdout


@pytest.mark.parametrize(("providers", "message"), [
    ({"Bad Name": {"issuer": "https://idp.example", "client_id": "x"}}, "provider name"),
    ({"kc": {"client_id": "x"}}, "needs issuer"),
    ({"gh": {"kind": "github", "issuer": "https://github.com", "client_id": "x"}}, "takes no issuer"),
    ({"kc": {"issuer": "https://idp.example", "client_id": "x", "scopes": ["email"]}}, 'include "openid"'),
    ({"kc": {"issuer": "https://idp.example", "client_id": "x", "extra_params": {"state": "x"}}}, "may not set"),
    ({"kc": {"issuer": "ftp://idp.example", "client_id": "x"}}, "http(s) URL"),
    ({"kc": {"issuer": "https://idp.example", "client_id": "x", "token_endpoint_auth_method": "client_secret_post"}},
     "needs a client_secret"),
    ({"kc": {"issuer": "https://idp.example", "client_id": "x", "client_sercet": "y"}}, "client_sercet"),
])
def test_invalid_settings_are_refused(providers: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings.model_validate({"providers": providers})


def test_settings_defaults() -> None:
    settings = Settings.model_validate({
        "redirect_base_url": "https://vendo.example.com/",
        "allowed_redirect_origins": ["HTTPS://App.Example.com:443"],
        "providers": {"google": {"issuer": "https://accounts.google.com/", "client_id": "x", "client_secret": "s"},
                      "github": {"kind": "github", "client_id": "y"}},
    })
    assert settings.redirect_base_url == "https://vendo.example.com"
    assert settings.allowed_redirect_origins == ["https://app.example.com"]
    google, github = settings.providers["google"], settings.providers["github"]
    assert google.scopes == ["openid", "email", "profile"]
    assert google.discovery_document_url == "https://accounts.google.com/.well-known/openid-configuration"
    assert github.scopes == ["read:user", "user:email"] and github.api_base_url == "https://api.github.com"
    assert google.client_secret.get_secret_value() == "s" and "'s'" not in repr(google)
    with pytest.raises(ValueError, match="origin"):
        Settings.model_validate({"allowed_redirect_origins": ["https://app.example.com/path"]})
    assert isinstance(ProviderConfig.model_validate({"issuer": "https://i.example", "client_id": "c"}), ProviderConfig)


ALLOWED = ["https://app.example.com", "http://127.0.0.1:8000"]


@pytest.mark.parametrize(("target", "expected"), [
    (None, None),
    ("", None),
    ("https://app.example.com/after", "https://app.example.com/after"),
    ("https://APP.example.com:443/x?y=1#old", "https://APP.example.com:443/x?y=1"),
    ("/dashboard", "http://127.0.0.1:8000/dashboard"),
])
def test_next_allowed(target: str | None, expected: str | None) -> None:
    assert check_next(target, base_url="http://127.0.0.1:8000", allowed_origins=ALLOWED) == expected


@pytest.mark.parametrize("target", [
    "https://evil.example/", "//evil.example/", "https://app.example.com.evil.example/",
    "https://user:pass@app.example.com/", "javascript:alert(1)", "data:text/html,x", "https://app.example.com:8443/",
    "https://app.example.com\\@evil.example/", "https://app.example.com/\nx", "http://[::1", "x" * 3000,
])
def test_next_refused(target: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_next(target, base_url="http://127.0.0.1:8000", allowed_origins=ALLOWED)
    assert caught.value.code == "invalid_redirect" and caught.value.status_code == 400


def test_tokens_go_in_the_fragment() -> None:
    url = with_fragment("https://app.example.com/cb?x=1", {"access_token": "a b", "expires_in": 900})
    assert url == "https://app.example.com/cb?x=1#access_token=a+b&expires_in=900"


def test_migrations_up_and_down(oidc_kernel: Any) -> None:
    from vendo.db import migrations

    kernel = oidc_kernel({})
    with kernel.engine.connect() as connection:
        assert {"auth_oidc_states", "auth_oidc_links"} <= set(sa.inspect(connection).get_table_names())
        assert migrations.status(kernel, connection).up_to_date
    migrations.downgrade(kernel, "auth-oidc@base")
    with kernel.engine.connect() as connection:
        tables = set(sa.inspect(connection).get_table_names())
    assert not {"auth_oidc_states", "auth_oidc_links"} & tables and "vendo_users" in tables
    migrations.upgrade(kernel)
    with kernel.engine.connect() as connection:
        assert migrations.status(kernel, connection).up_to_date


def test_a_state_is_claimed_once_even_concurrently(oidc_kernel: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from vendo_auth_oidc.flows import Flows

    kernel = oidc_kernel({})
    flows = Flows(kernel, ttl=600)
    flow = flows.new(bind_to_browser=True)
    flows.save("local", flow, None)

    def claim(_: int) -> str:
        try:
            pending = flows.claim("local", flow.state)
        except InvalidInput as exc:
            return exc.code
        assert pending.code_verifier == flow.code_verifier and pending.nonce == flow.nonce
        assert flows.same_browser(pending, flow.browser_secret) and not flows.same_browser(pending, "other")
        return "claimed"

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = sorted(pool.map(claim, range(8)))
    assert outcomes == ["claimed"] + ["invalid_state"] * 7
