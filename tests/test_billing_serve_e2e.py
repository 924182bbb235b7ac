"""The README's keyless selling flow on a real `vendo serve` (the default local billing
provider): sign up, checkout, the hosted page's Pay button, the subscription and its
entitlements; and `vendo billing` commands in a real process."""

from __future__ import annotations

from pathlib import Path

import httpx

from support import run_vendo, vendo_env

CATALOG = Path(__file__).resolve().parents[1] / "examples" / "catalogs" / "memento.toml"


def test_fresh_serve_sells_without_any_key(serve) -> None:
    env = vendo_env()
    assert run_vendo("db", "upgrade", env=env).returncode == 0
    assert run_vendo("plans", "load", str(CATALOG), env=env).returncode == 0
    doctor = run_vendo("plugins", "doctor", env=env)
    assert "ok   providers billing: local*" in doctor.stdout, doctor.stdout
    server = serve(env)
    assert server.wait_ready().status_code == 200
    with httpx.Client(base_url=server.url, timeout=10) as client:
        tokens = client.post("/api/v1/auth/register", json={"email": "maker@example.com",
                                                            "password": "correct horse battery staple"})
        assert tokens.status_code == 201, tokens.text
        auth = {"Authorization": f"Bearer {tokens.json()['access_token']}"}
        workspace = client.get("/api/v1/me", headers=auth).json()["workspaces"][0]["id"]
        auth["X-Vendo-Workspace"] = workspace
        checkout = client.post("/api/v1/billing/checkout", headers=auth,
                               json={"plan": "pro", "success_url": f"{server.url}/docs", "cancel_url": server.url})
        assert checkout.status_code == 201, checkout.text
        url = checkout.json()["url"]
        assert url.startswith(f"{server.url}/api/v1/billing/local/checkout/")  # the served port, not the default
        page = httpx.get(url)
        assert "Subscribe to Pro" in page.text and "9.90 EUR per month" in page.text
        paid = httpx.post(url)
        assert paid.status_code == 303 and paid.headers["location"] == f"{server.url}/docs"
        state = client.get("/api/v1/billing/subscription", headers=auth).json()
        assert state["subscription"]["status"] == "active" and state["entitled_plan"] == "pro"
        assert client.get(f"/api/v1/entitlements?subject={workspace}", headers=auth).json()["plan"] == "pro"

    events = run_vendo("billing", "events", env=env)
    assert "checkout.completed  processed (applied)" in events.stdout, events.stdout
    assigned = run_vendo("billing", "assign", "ws_other", "enterprise", "--seats", "6", env=env)
    assert assigned.stdout.strip() == "ws_other is on enterprise (active, 6 seat(s))", assigned.stderr
    refused = run_vendo("billing", "assign", "ws_other", "enterprise", "--seats", "2", env=env)
    assert refused.returncode == 1 and refused.stderr.strip() == "error: plan 'enterprise' needs at least 5 seats"
    synced = run_vendo("billing", "sync-catalog", env=env)
    assert synced.returncode == 0 and "vendo:pro:v1:month:eur -> lprice_" in synced.stdout
    renewed = run_vendo("billing-local", "renew", env=env)
    assert renewed.stdout.strip() == "0 subscriptions processed"
