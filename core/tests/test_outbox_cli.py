"""`vendo outbox list` and `vendo outbox show`, run as an operator runs them (real process,
SQLite file): events are listed even when nobody received them, and a notification that
no notifier could send can be read in full, key included, by the operator only."""

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
                              context={"product": "QoreDB", "tier": "pro", "key": "QDB-PRO-SECRET-9",
                                       "license_id": "lic_9", "expires_at": None})
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
    assert '"key": "QDB-PRO-SECRET-9"' in shown.stdout
    assert "notify:email  pending (0 attempt(s))  no notifier registered for channel 'email'" in shown.stdout
    as_json = json.loads(run("-m", "vendo", "outbox", "show", event_id, "--json").stdout)
    assert as_json["payload"]["context"]["key"] == "QDB-PRO-SECRET-9"

    doctor = run("-m", "vendo", "plugins", "doctor")
    assert doctor.returncode == 0, doctor.stdout
    assert ("warn notifications: 1 email notification(s) waiting in the outbox, no notifier registered for "
            "channel 'email'") in doctor.stdout

    missing = run("-m", "vendo", "outbox", "show", "nope")
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert [line for line in missing.stderr.splitlines() if line.startswith("error: ")] == [
        "error: no outbox event with id nope"]
