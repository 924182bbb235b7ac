"""Issue 7, item 8: the open-core purchase flow end to end, over real processes and HTTP.

A real `vendo serve` (SQLite, the default local billing provider, vendo-license-ed25519,
vendo-email-smtp pointed at a real aiosmtpd server on loopback) sells QoreDB Pro
(`examples/catalogs/qoredb.toml`, whose Pro plan carries `[plans.pro.license]`):

sign up → checkout for Pro → Pay on the local checkout page → the signed webhook is ingested
→ the key is issued, emailed (parsed out of the message the SMTP server received) and shown
on Vendo's HTML confirmation page the checkout redirected to (its success URL a confirmation
ticket) and at `GET /api/v1/licenses/checkout/{checkout_id}` → activated in the example app
(`activate_from_key`) → a Pro feature works offline (server stopped, the app run as a
process) → `vendo billing-local refund` → the signed revocation list blocks the key in the app.

Replays: the checkout webhook delivered again (its stored raw body re-signed and POSTed to the
webhook route, as a vendor retries; and `vendo billing replay`) issues no second key and sends
no second email. Key recovery (`POST /api/v1/licenses/recover`) emails the same key again, once.
A partial refund leaves the key valid; refunding the rest revokes it.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import httpx
import pytest

from support import run_vendo, vendo_env

ROOT = Path(__file__).resolve().parents[1]
CATALOG = ROOT / "examples" / "catalogs" / "qoredb.toml"
APP = ROOT / "examples" / "open-core-desktop" / "qoredb_lite.py"
SECRET = "open-core-e2e-master-secret-0123456789abcdef"
BUYER = "ada@example.com"
KEY_PATTERN = re.compile(r"VENDO1-[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    """Poll ``condition`` until it answers something truthy (the outbox dispatches asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def key_emails(smtp: Any) -> list[Any]:
    """The messages the SMTP server received that carry a license key."""
    return [m for m in smtp.messages if KEY_PATTERN.search(m.message.get_body(("plain",)).get_content())]


def key_of(received: Any) -> str:
    """The license key in the plain-text part of an email (the HTML part carries the same)."""
    plain = received.message.get_body(("plain",)).get_content()
    [key] = set(KEY_PATTERN.findall(plain))
    html = received.message.get_body(("html",))
    assert html is None or key in html.get_content()
    return key


@pytest.fixture
def shop(tmp_path: Path, vendo_smtp_server: Callable[..., Any]) -> Any:
    """The environment of a QoreDB shop: database migrated, catalog loaded, a signing key, SMTP."""
    smtp = vendo_smtp_server()
    settings = smtp.settings()
    env = vendo_env(
        VENDO_SECRET_KEY=SECRET, VENDO_LOG_LEVEL="WARNING",
        VENDO_EMAIL_SMTP__HOST=settings["host"], VENDO_EMAIL_SMTP__PORT=str(settings["port"]),
        VENDO_EMAIL_SMTP__SECURITY=settings["security"], VENDO_EMAIL_SMTP__FROM_ADDRESS=settings["from_address"],
        VENDO_EMAIL_SMTP__TIMEOUT=str(settings["timeout"]))

    def vendo(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
        done = run_vendo(*args, env=env)
        if ok:
            assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done

    vendo("db", "upgrade")
    vendo("plans", "load", str(CATALOG))
    vendo("license", "keygen")
    keys = tmp_path / "public_keys.json"  # shipped with the app
    keys.write_text(vendo("license", "export-public-key").stdout)

    class Shop:
        def __init__(self) -> None:
            self.env, self.smtp, self.vendo, self.public_keys = env, smtp, vendo, keys
            self.database = Path.cwd() / ".vendo" / "vendo.db"  # the default data_dir in the working directory

        def webhook_rows(self, type: str) -> list[tuple[str, bytes, str]]:
            """(event id, raw body, status) of the stored billing webhooks of ``type``."""
            with sqlite3.connect(self.database) as db:
                return db.execute("SELECT event_id, body, status FROM vendo_billing_events WHERE type = ?",
                                  (type,)).fetchall()

        def outbox(self, type: str) -> list[dict[str, Any]]:
            """The outbox events of ``type`` with their deliveries (`vendo outbox list --json`)."""
            listed = vendo("outbox", "list", "--type", type, "--json").stdout
            return [json.loads(line) for line in listed.splitlines() if line.strip()]

    return Shop()


@pytest.fixture
def app(tmp_path: Path, shop: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The example app: imported (``activate_from_key``) and run as a process, same machine and data."""
    app_env = {"QOREDB_DATA_DIR": str(tmp_path / "app-data"), "QOREDB_PUBLIC_KEYS": str(shop.public_keys),
               "VENDO_LICENSE_MACHINE_ID": "ada-laptop"}
    for name, value in app_env.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("qoredb_lite_e2e", APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def run(*args: str) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VENDO_", "QOREDB_"))}
        return subprocess.run([sys.executable, str(APP), *args], env={**env, **app_env}, capture_output=True,
                              text=True, timeout=60)

    module.run = run
    return module


def buy_pro(server: Any, client: httpx.Client) -> tuple[str, str, str]:
    """Sign up with ``client`` (signed in afterwards), take a confirmation ticket for the
    checkout's success URL, and pay for Pro on the local checkout page, landing (as a browser
    would, without any credential) on Vendo's confirmation page: (workspace, checkout id,
    confirmation page URL)."""
    tokens = client.post("/api/v1/auth/register", json={"email": BUYER, "password": "correct horse battery staple"})
    assert tokens.status_code == 201, tokens.text
    client.headers["Authorization"] = f"Bearer {tokens.json()['access_token']}"
    workspace = client.get("/api/v1/me").json()["workspaces"][0]["id"]
    client.headers["X-Vendo-Workspace"] = workspace
    ticket = client.post("/api/v1/licenses/confirmations", json={"plan": "pro"})
    assert ticket.status_code == 201, ticket.text
    link = urlsplit(ticket.json()["url"])  # public_url is not set here: the server's own address
    success_url = f"{server.url}{link.path}?{link.query}"
    checkout = client.post("/api/v1/billing/checkout", json={"plan": "pro", "interval": "year",
                                                              "success_url": success_url, "cancel_url": server.url})
    assert checkout.status_code == 201, checkout.text
    checkout_id, url = checkout.json()["checkout_id"], checkout.json()["url"]
    page = httpx.get(url)
    assert page.status_code == 200 and "79.00 EUR per year" in page.text, page.text
    paid = httpx.post(url)  # the Pay button
    assert paid.status_code == 303 and paid.headers["location"] == success_url, paid.text
    landed = httpx.get(paid.headers["location"])  # the key, or "being issued" while the outbox catches up
    assert landed.status_code in (200, 202) and landed.headers["content-type"].startswith("text/html"), landed.text
    if landed.status_code == 202:
        assert "being issued" in landed.text and 'http-equiv="refresh"' in landed.text
    return workspace, checkout_id, success_url


def key_on_page(url: str) -> str | None:
    """The key Vendo's confirmation page at ``url`` shows, once it shows one."""
    page = httpx.get(url)
    if page.status_code != 200:
        return None
    [key] = set(KEY_PATTERN.findall(page.text))
    assert 'id="copy"' in page.text and page.headers["cache-control"] == "no-store"
    return key


def test_purchase_email_activation_offline_gating_refund_and_revocation(shop, app, serve) -> None:
    server = serve(shop.env)
    assert server.wait_ready().status_code == 200
    assert app.run("er-diagram").returncode == 3  # Core before the purchase

    with httpx.Client(base_url=server.url, timeout=15) as client:
        workspace, checkout_id, confirmation_url = buy_pro(server, client)
        state = client.get("/api/v1/billing/subscription").json()
        assert state["entitled_plan"] == "pro" and state["subscription"]["status"] == "active"
        subscription_id = state["subscription"]["id"]
        assert [status for _id, _body, status in shop.webhook_rows("checkout.completed")] == ["processed"]

        # The key: emailed by the outbox dispatcher of `vendo serve` through the SMTP server...
        [email] = wait_for(lambda: key_emails(shop.smtp), "the license_key email")
        assert email.rcpt_tos == [BUYER] and email.message["To"] == BUYER
        assert email.message["Subject"] == "Your qoredb license key (pro)"
        key = key_of(email)
        # ... and shown on the confirmation page the checkout redirected to: the same key.
        assert wait_for(lambda: key_on_page(confirmation_url), "the key on the confirmation page") == key
        guessed = httpx.get(f"{server.url}/api/v1/licenses/confirmation?checkout_id={checkout_id}")
        assert guessed.status_code == 400 and key not in guessed.text  # the checkout id alone shows nothing
        # ... and to the signed-in buyer over JSON (nobody else: 401 without a token).
        confirmation = client.get(f"/api/v1/licenses/checkout/{checkout_id}")
        assert confirmation.status_code == 200, confirmation.text
        shown = confirmation.json()
        assert shown["key"] == key and shown["tier"] == "pro" and shown["product"] == "qoredb"
        assert shown["subject"] == workspace and shown["max_machines"] == 3
        assert httpx.get(f"{server.url}/api/v1/licenses/checkout/{checkout_id}").status_code == 401
        license_id = shown["id"]
        assert f"License: {license_id}." in email.message.get_body(("plain",)).get_content()

    # Activated in the app with the emailed key; Pro features unlocked.
    status = app.activate_from_key(key, server.url)
    assert status.valid and status.tier == "pro"
    assert status.is_feature_enabled("er_diagram") and status.is_feature_enabled("visual_diff")
    assert not status.is_feature_enabled("multi_device_sync")  # a Team feature
    stored = (Path(os.environ["QOREDB_DATA_DIR"]) / "license.bin").read_bytes()
    assert key.encode() not in stored and key.split(".")[1].encode() not in stored  # encrypted at rest

    # Offline: the service is stopped, the app (a new process) still unlocks Pro.
    server.stop()
    offline = app.run("er-diagram")
    assert offline.returncode == 0 and "(Pro)" in offline.stdout, (offline.stdout, offline.stderr)
    assert app.run("status").stdout.startswith("Pro until ")

    # Refund (the operator's command: a signed refund.created webhook into kernel.billing.ingest).
    refund = shop.vendo("billing-local", "refund", checkout_id, "--reason", "requested by the buyer")
    assert " refunded: 79.00 EUR on invoice " in refund.stdout, refund.stdout
    assert f"(subscription {subscription_id}, workspace {workspace})" in refund.stdout, refund.stdout
    assert [status for _id, _body, status in shop.webhook_rows("refund.created")] == ["processed"]
    still = app.run("er-diagram")  # offline, the app cannot know yet
    assert still.returncode == 0 and "(Pro)" in still.stdout
    server = serve(shop.env)  # back online: its outbox dispatcher revokes the license
    assert server.wait_ready().status_code == 200

    def revoked() -> bool:
        answer = httpx.post(f"{server.url}/api/v1/licenses/validate", json={"key": key}).json()
        return answer["code"] == "revoked"

    wait_for(revoked, "the refund to revoke the license")
    assert httpx.get(f"{server.url}/api/v1/licenses/revocations").json()["revoked"] == [license_id]
    refunded = httpx.get(f"{server.url}{urlsplit(confirmation_url).path}?{urlsplit(confirmation_url).query}")
    assert refunded.status_code == 410 and key not in refunded.text  # a refunded purchase shows no key

    # The app, still Pro offline until it fetches the signed revocation list, is blocked after.
    refreshed = app.run("refresh", "--server", server.url)
    assert refreshed.returncode == 0 and "license revoked" in refreshed.stdout, (refreshed.stdout, refreshed.stderr)
    blocked = app.run("er-diagram")
    assert blocked.returncode == 3 and "license revoked" in blocked.stderr, (blocked.stdout, blocked.stderr)
    assert app.run("status").stdout.startswith("Core (free): license revoked")
    assert len(key_emails(shop.smtp)) == 1  # a refund sends no key


def test_replayed_checkout_webhook_issues_no_second_key_or_email_and_recovery_resends_it(shop, serve) -> None:
    server = serve(shop.env)
    assert server.wait_ready().status_code == 200
    with httpx.Client(base_url=server.url, timeout=15) as client:
        _workspace, checkout_id, _confirmation_url = buy_pro(server, client)
        wait_for(lambda: key_emails(shop.smtp), "the license_key email")
        [(event_id, body, status)] = shop.webhook_rows("checkout.completed")
        assert status == "processed"

        # The vendor retries: the stored raw body, signed again the way billing-local signs, POSTed
        # to the public webhook route.
        from vendo.secrets import Secrets

        secret = Secrets.from_settings(SECRET, Path.cwd()).derive("billing-local:webhooks")
        for _ in range(2):
            stamp = int(time.time())
            signature = hmac.new(secret, f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
            again = httpx.post(f"{server.url}/api/v1/billing/webhooks/local", content=body,
                               headers={"Vendo-Local-Signature": f"t={stamp},v1={signature}",
                                        "Content-Type": "application/json"})
            assert again.status_code == 200, again.text
            received = again.json()["received"]  # the body also carries the first invoice.paid
            assert event_id in [r["id"] for r in received] and {r["outcome"] for r in received} == {"duplicate"}
        forged = httpx.post(f"{server.url}/api/v1/billing/webhooks/local", content=body,
                            headers={"Vendo-Local-Signature": f"t={int(time.time())},v1={'0' * 64}"})
        assert forged.status_code == 400 and forged.json()["error"]["code"] == "invalid_signature"

        # The operator's replay of an event already applied is refused in one line.
        replay = shop.vendo("billing", "replay", event_id, ok=False)
        assert replay.returncode == 1 and replay.stderr.strip().startswith("error: "), replay.stderr
        assert "already processed" in replay.stderr

        # Everything the deliveries published has been dispatched: one checkout event, one key
        # email (delivered), one license.
        def key_notifications() -> list[dict[str, Any]] | None:
            rows = [row for row in shop.outbox("notification.requested")
                    if row["notification"]["template"] == "license_key"]
            done = rows and all(d["status"] == "delivered" for row in rows for d in row["deliveries"])
            return rows if done else None

        assert len(wait_for(key_notifications, "the key email delivered")) == 1
        assert len(shop.outbox("billing.checkout.completed")) == 1
        licenses = json.loads(shop.vendo("license", "list").stdout)
        assert [lic["checkout_id"] for lic in licenses] == [checkout_id]
        time.sleep(1)  # a second email, if any were published, would be sent well within this
        assert len(key_emails(shop.smtp)) == 1
        assert len(shop.webhook_rows("checkout.completed")) == 1


        # A lost key: recovery by email and payment reference emails the same key again
        # (kernel.notify), never in the answer, once per resend window however often it is asked.
        first = key_of(key_emails(shop.smtp)[0])
        for _ in range(2):
            recover = client.post("/api/v1/licenses/recover", json={"email": BUYER, "payment_reference": checkout_id})
            assert recover.status_code == 202 and first not in recover.text
        sent = wait_for(lambda: len(key_emails(shop.smtp)) >= 2 and key_emails(shop.smtp), "the recovery email")
        assert sent[1].rcpt_tos == [BUYER] and key_of(sent[1]) == first
        time.sleep(1)
        assert len(key_emails(shop.smtp)) == 2

        # A partial refund (a goodwill gesture) is recorded and the key keeps working; refunding
        # what is left makes it a full refund, which revokes the key.
        def refunds_applied() -> bool:
            rows = shop.outbox("billing.refund.created")
            return bool(rows) and all(d["status"] == "delivered" for row in rows for d in row["deliveries"])

        def code() -> str:
            return client.post("/api/v1/licenses/validate", json={"key": first}).json()["code"]

        partial = shop.vendo("billing-local", "refund", checkout_id, "--amount", "1000", "--reason", "goodwill")
        assert " refunded: 10.00 EUR on invoice " in partial.stdout, partial.stdout
        wait_for(refunds_applied, "the partial refund delivered to the license plugin")
        assert code() == "valid"
        rest = shop.vendo("billing-local", "refund", checkout_id)
        assert " refunded: 69.00 EUR on invoice " in rest.stdout, rest.stdout
        wait_for(lambda: code() == "revoked", "the full refund to revoke the license")
