"""Secrets in emails are never stored in clear: a license key (``secret_context``) is sealed in
the ``notification.requested`` row, absent from ``vendo outbox list`` and ``show``, and still
reaches the recipient through a real SMTP server on loopback (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import vendo_license_ed25519
from vendo import InvalidInput
from vendo.outbox import OutboxEvent

SECRET_KEY = "email-smtp-tests-master-secret-0123456789abcdef"  # conftest's master secret
KEY = "QDB1.eyJ0aWVyIjoicHJvIn0.SEALED-SIGNATURE-314"
CONTEXT = {"product": "QoreDB", "tier": "pro", "license_id": "lic_42", "expires_at": None}


def stored_payloads(kernel: Any) -> list[dict[str, Any]]:
    """The payloads of every ``notification.requested`` row, as the database holds them."""
    with kernel.session() as session:
        return [row.payload for row in session.scalars(
            select(OutboxEvent).where(OutboxEvent.type == "notification.requested"))]


def request(kernel: Any, key: str = "license:lic_42", **fields: Any) -> Any:
    values = {"to": "ada@example.com", "template": "license_key", "context": CONTEXT,
              "secret_context": {"key": KEY}, **fields}
    with kernel.session() as session:
        return kernel.notifications.request(session, idempotency_key=key, **values)


async def test_a_sealed_key_is_not_in_the_outbox_row_but_is_in_the_email(make_kernel, smtp_server) -> None:
    server = smtp_server()
    kernel = make_kernel(server.settings())
    event = request(kernel)
    [stored] = stored_payloads(kernel)
    assert KEY not in json.dumps(stored) and "SEALED-SIGNATURE" not in json.dumps(stored)
    assert stored["context"] == CONTEXT and isinstance(stored["sealed"], str)
    assert KEY not in json.dumps(event.payload), "subscribers receive the sealed payload too"
    assert KEY not in json.dumps(kernel.outbox.event(event.id)), "`vendo outbox show` prints the ciphertext"

    assert await kernel.outbox.drain() == 1
    [received] = server.messages
    text = received.message.get_body(("plain",)).get_content()
    html = received.message.get_body(("html",)).get_content()
    assert KEY in text and KEY in html and "lic_42" in text
    [stored] = stored_payloads(kernel)
    assert KEY not in json.dumps(stored), "nothing is written back in clear after the send"


async def test_sealed_under_another_master_secret_is_never_sent_without_its_secret(make_kernel, smtp_server,
                                                                                     clock) -> None:
    server = smtp_server()
    event = request(make_kernel(server.settings()))
    rotated = make_kernel(server.settings(), secret_key="another-master-secret-0123456789abcdef")
    assert await rotated.outbox.drain() == 1
    [delivery] = rotated.outbox.event(event.id)["deliveries"]
    assert delivery["status"] == "pending" and "cannot be decrypted" in delivery["last_error"]
    assert server.messages == [], "an email is never sent with a hole where its secret was"


def test_secret_and_clear_values_cannot_share_a_name(make_kernel) -> None:
    kernel = make_kernel()
    with pytest.raises(InvalidInput) as caught:
        request(kernel, context={**CONTEXT, "key": "clear"})
    assert caught.value.code == "invalid_notification" and "key" in caught.value.message
    with pytest.raises(InvalidInput) as caught:
        request(kernel, secret_context={"key": object()})
    assert caught.value.code == "invalid_notification"
    with kernel.session() as session, pytest.raises(InvalidInput) as caught:
        kernel.outbox.publish(session, "notification.requested", {
            "to": "ada@example.com", "template": "license_key", "context": {}, "idempotency_key": "k",
            "sealed": 42})
    assert caught.value.code == "invalid_notification"


def _vendo(*args: str, database_url: str, data_dir: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VENDO_") or k.startswith("VENDO_TEST_")}
    environment.update({"VENDO_PLUGINS__ENABLED": "email-smtp,license-ed25519", "VENDO_DATABASE_URL": database_url,
                        "VENDO_SECRET_KEY": SECRET_KEY, "VENDO_DATA_DIR": str(data_dir), **env})
    return subprocess.run([sys.executable, "-m", "vendo", *args], capture_output=True, text=True, cwd=data_dir,
                          env=environment, timeout=120)


def test_a_purchased_key_waiting_for_smtp_is_not_printed_by_the_outbox_commands(
        make_kernel, smtp_server, database_url, tmp_path) -> None:
    """The license plugin's key email, with no SMTP server configured: it waits in the outbox,
    `vendo outbox list` and `show` never print the key; once SMTP is set, `vendo outbox
    dispatch` sends it and the recipient gets the key."""
    kernel = make_kernel(plugins={vendo_license_ed25519.PLUGIN_NAME: vendo_license_ed25519})
    service = kernel.providers.get("license", "ed25519").service
    with kernel.session() as session:
        row, key = service.issue(session, email="ada@example.com", tier="pro", checkout_id="cs_sealed")
        service.send_key(session, row, f"license-issued:{row.id}")
    assert all(key not in json.dumps(p) for p in stored_payloads(kernel))

    data_dir = tmp_path / "data"
    listed = _vendo("outbox", "list", "--type", "notification.requested", database_url=database_url,
                    data_dir=data_dir)
    assert listed.returncode == 0, listed.stderr
    assert "license_key -> ada@example.com" in listed.stdout and key not in listed.stdout
    as_json = _vendo("outbox", "list", "--json", database_url=database_url, data_dir=data_dir)
    assert as_json.returncode == 0 and key not in as_json.stdout
    [event_id] = [json.loads(line)["event_id"] for line in as_json.stdout.splitlines()
                  if json.loads(line)["type"] == "notification.requested"]
    shown = _vendo("outbox", "show", event_id, database_url=database_url, data_dir=data_dir)
    assert shown.returncode == 0, shown.stderr
    assert row.id in shown.stdout and '"sealed"' in shown.stdout and key not in shown.stdout

    server = smtp_server()
    smtp = {f"VENDO_EMAIL_SMTP__{name.upper()}": str(value) for name, value in server.settings().items()}
    dispatched = _vendo("outbox", "dispatch", database_url=database_url, data_dir=data_dir, **smtp)
    assert dispatched.returncode == 0, dispatched.stderr
    assert key not in dispatched.stdout + dispatched.stderr, "the key is never logged"
    [received] = server.messages
    assert key in received.message.get_body(("plain",)).get_content()


async def test_keys_stored_in_clear_by_an_older_version_are_sealed_in_place(make_kernel, smtp_server) -> None:
    server = smtp_server()
    kernel = make_kernel(server.settings())
    with kernel.session() as session:  # what versions before secret_context wrote
        legacy = kernel.notify(session, to="ada@example.com", template="license_key",
                               context={**CONTEXT, "key": KEY}, idempotency_key="license:legacy")
        kernel.notify(session, to="bo@example.com", template="invitation", idempotency_key="invitation:1",
                      context={"workspace": "Acme", "inviter": "Ada", "accept_url": "https://x.test/a?token=t",
                               "key": "not-a-license-field"})
    request(kernel, key="license:new")  # already sealed
    assert sum(KEY in json.dumps(p) for p in stored_payloads(kernel)) == 1

    assert kernel.notifications.seal_stored(template="license_key", fields=("key",)) == 1
    assert kernel.notifications.seal_stored(template="license_key", fields=("key",)) == 0, "idempotent"
    payloads = stored_payloads(kernel)
    assert all(KEY not in json.dumps(p) for p in payloads)
    invitation = next(p for p in payloads if p["template"] == "invitation")
    assert invitation["context"]["key"] == "not-a-license-field", "other templates are left alone"

    assert await kernel.outbox.drain() == 3
    keyed = [m for m in server.messages if KEY in m.message.get_body(("plain",)).get_content()]
    assert len(keyed) == 2, "the legacy email still carries its key, now read from the sealed field"
    assert legacy.id in {m.message["X-Vendo-Notification"] for m in keyed}


def test_the_seal_outbox_command(make_kernel, database_url, tmp_path) -> None:
    kernel = make_kernel(plugins={vendo_license_ed25519.PLUGIN_NAME: vendo_license_ed25519})
    with kernel.session() as session:
        kernel.notify(session, to="ada@example.com", template="license_key", context={**CONTEXT, "key": KEY},
                      idempotency_key="license:legacy")
    data_dir = tmp_path / "data"
    sealed = _vendo("license", "seal-outbox", database_url=database_url, data_dir=data_dir)
    assert sealed.returncode == 0, sealed.stderr
    assert sealed.stdout.strip() == "1 license_key notification(s) sealed" and KEY not in sealed.stdout
    assert all(KEY not in json.dumps(p) for p in stored_payloads(kernel))
    again = _vendo("license", "seal-outbox", database_url=database_url, data_dir=data_dir)
    assert again.stdout.strip() == "0 license_key notification(s) sealed"
