"""`vendo outbox list`, `show` and `seal`, run as an operator runs them (real process, SQLite
file): events are listed even when nobody received them, a notification that no notifier
could send can be read with its secrets sealed (ciphertext, never the key), and secrets an
older version stored in clear are sealed in place."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

PUBLISH = textwrap.dedent("""
    import logging, sys
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    from vendo.kernel import Kernel
    kernel = Kernel().load()
    with kernel.session() as session:
        event = kernel.notify(session, to="ada@example.com", template="license_key", idempotency_key="license:lic_9",
                              context={"product": "QoreDB", "tier": "pro", "license_id": "lic_9",
                                       "expires_at": None},
                              secret_context={"key": "QDB-PRO-SECRET-9"})
        kernel.outbox.publish(session, "order.paid", {"order": 1})
    import asyncio
    asyncio.run(kernel.outbox.drain())
    print(event.id)
""")


def run(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VENDO_") or k.startswith("VENDO_TEST_")}
    env["VENDO_PLUGINS__AUTOLOAD"] = "false"
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=120)


def test_operator_sees_waiting_emails_and_their_content() -> None:
    assert run("-m", "vendo", "db", "upgrade").returncode == 0
    published = run("-c", PUBLISH)
    assert published.returncode == 0, published.stderr
    event_id = published.stdout.strip()
    assert "QDB-PRO-SECRET-9" not in published.stderr, "a notification's content is never logged"

    listed = run("-m", "vendo", "outbox", "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[2:] == ["order.paid", "unrouted"]
    assert lines[1].split()[1:] == [event_id, "notification.requested", "pending", "[email", "license_key", "->",
                                    "ada@example.com]"]
    assert lines[2].split() == ["->", "notify:email", "pending", "(0", "attempt(s))", "no", "notifier", "registered",
                                "for", "channel", "'email'"]
    assert "QDB-PRO-SECRET-9" not in listed.stdout, "payloads are shown one at a time, by `show`"

    only = run("-m", "vendo", "outbox", "list", "--type", "order.paid", "--json")
    assert [json.loads(line)["type"] for line in only.stdout.splitlines()] == ["order.paid"]
    unrouted = run("-m", "vendo", "outbox", "list", "--status", "unrouted")
    assert "order.paid" in unrouted.stdout and event_id not in unrouted.stdout
    assert run("-m", "vendo", "outbox", "list", "--status", "dead").stdout.strip() == "no events"

    shown = run("-m", "vendo", "outbox", "show", event_id)
    assert shown.returncode == 0, shown.stderr
    assert '"license_id": "lic_9"' in shown.stdout and '"sealed": "' in shown.stdout
    assert "QDB-PRO-SECRET-9" not in shown.stdout, "kernel.notify's secret_context is sealed, shown as ciphertext"
    assert "notify:email  pending (0 attempt(s))  no notifier registered for channel 'email'" in shown.stdout
    as_json = json.loads(run("-m", "vendo", "outbox", "show", event_id, "--json").stdout)
    assert "key" not in as_json["payload"]["context"] and "QDB-PRO-SECRET-9" not in json.dumps(as_json)
    help_text = run("-m", "vendo", "outbox", "show", "--help").stdout
    assert "sealed" in help_text and "secrets included" not in help_text

    doctor = run("-m", "vendo", "plugins", "doctor")
    assert doctor.returncode == 0, doctor.stdout
    assert ("warn notifications: 1 email notification(s) waiting in the outbox, no notifier registered for "
            "channel 'email'") in doctor.stdout

    missing = run("-m", "vendo", "outbox", "show", "nope")
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert [line for line in missing.stderr.splitlines() if line.startswith("error: ")] == [
        "error: no outbox event with id nope"]


LEGACY = textwrap.dedent("""
    import json
    from vendo.kernel import Kernel
    kernel = Kernel().load()
    legacy = {  # what versions before secret_context wrote: secrets in the clear context
        "invitation": {"workspace": "Acme", "inviter": "Ada",
                       "accept_url": "https://app.test/invitations/accept?token=vinv_LEGACY-INVITE"},
        "password_reset": {"reset_url": "https://app.test/reset-password?token=vpr_LEGACY-RESET",
                           "expires_minutes": 60},
        "email_verification": {"verify_url": "https://app.test/verify-email?token=vev_LEGACY-VERIFY",
                               "expires_minutes": 2880},
        "license_key": {"product": "QoreDB", "tier": "pro", "key": "QDB-LEGACY-KEY", "license_id": "lic_1",
                        "expires_at": None},
        "magic_link": {"login_url": "https://app.test/magic?code=LEGACY-MAGIC"},
        "payment_failed": {"workspace": "Acme", "plan": "pro", "grace_until": "2030-02-01",
                           "portal_url": "https://billing.test/portal"},
    }
    with kernel.session() as session:
        for template, context in legacy.items():
            kernel.notify(session, to="eve@example.com", template=template, context=context,
                          idempotency_key=f"legacy:{template}")
    print(json.dumps([e["event_id"] for e in kernel.outbox.events(type="notification.requested")]))
""")

OPEN = textwrap.dedent("""
    import json, sys
    from sqlalchemy import select
    from vendo.kernel import Kernel
    from vendo.outbox import OutboxEvent
    kernel = Kernel().load()
    with kernel.session() as session:
        rows = session.scalars(select(OutboxEvent).where(OutboxEvent.type == "notification.requested")).all()
        print(json.dumps({row.payload["template"]: {"stored": row.payload,
                                                     "opened": kernel.notifications.context_of(row.payload)}
                          for row in rows}))
""")

SECRETS = ["vinv_LEGACY-INVITE", "vpr_LEGACY-RESET", "vev_LEGACY-VERIFY", "QDB-LEGACY-KEY"]


def test_seal_seals_the_secrets_older_versions_stored_in_clear() -> None:
    assert run("-m", "vendo", "db", "upgrade").returncode == 0
    published = run("-c", LEGACY)
    assert published.returncode == 0, published.stderr
    before = json.loads(run("-c", OPEN).stdout)

    sealed = run("-m", "vendo", "outbox", "seal")
    assert sealed.returncode == 0, sealed.stderr
    assert sealed.stdout.splitlines() == [
        "1 license_key notification(s) sealed (key)", "1 invitation notification(s) sealed (accept_url)",
        "1 password_reset notification(s) sealed (reset_url)",
        "1 email_verification notification(s) sealed (verify_url)"]
    assert not any(secret in sealed.stdout + sealed.stderr for secret in SECRETS)
    after = json.loads(run("-c", OPEN).stdout)
    stored = json.dumps({template: mail["stored"] for template, mail in after.items()})
    assert not any(secret in stored for secret in SECRETS), "no known secret left in clear"
    assert after["invitation"]["stored"]["context"] == {"workspace": "Acme", "inviter": "Ada"}
    assert after["password_reset"]["stored"]["context"] == {"expires_minutes": 60}
    for template, mail in before.items():  # the notifier still gets exactly the same values
        assert after[template]["opened"] == mail["opened"], template
    assert after["payment_failed"]["stored"] == before["payment_failed"]["stored"], "no secret: untouched"
    assert "LEGACY-MAGIC" in stored, "a template the kernel does not know is sealed only when named"

    again = run("-m", "vendo", "outbox", "seal")
    assert [line.split()[0] for line in again.stdout.splitlines()] == ["0"] * 4, "idempotent"
    named = run("-m", "vendo", "outbox", "seal", "--template", "magic_link", "--field", "login_url")
    assert named.stdout.strip() == "1 magic_link notification(s) sealed (login_url)"
    assert "LEGACY-MAGIC" not in json.dumps({t: m["stored"] for t, m in json.loads(run("-c", OPEN).stdout).items()})

    for args, message in ((["--field", "login_url"], "error: --field needs --template"),
                          (["--template", "magic_link"], "error: no known secrets for template 'magic_link'")):
        refused = run("-m", "vendo", "outbox", "seal", *args)
        assert refused.returncode == 1 and refused.stderr.startswith(message), refused.stderr
