"""`vendo email templates | preview | test`, run as an operator runs them (a real process;
the plugin found through its entry point), and the start-up warning without a server."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def vendo(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VENDO_") or k.startswith("VENDO_TEST_")}
    environment.update({"VENDO_PLUGINS__ENABLED": "email-smtp", **env})
    return subprocess.run([sys.executable, "-m", "vendo", *args], capture_output=True, text=True, cwd=cwd,
                          env=environment, timeout=120)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0 and "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    return line


def test_templates_and_preview(tmp_path: Path) -> None:
    listed = vendo("email", "templates", cwd=tmp_path)
    assert listed.stdout.split() == ["email_verification", "invitation", "license_key", "password_reset",
                                     "payment_failed"]
    preview = vendo("email", "preview", "password_reset", "--context",
                    '{"reset_url": "https://x.test/r?token=vpr_1", "expires_minutes": 15}', cwd=tmp_path)
    assert preview.returncode == 0, preview.stderr
    assert preview.stdout.startswith("Subject: Reset your password\n")
    assert "https://x.test/r?token=vpr_1" in preview.stdout and "for 15 minutes" in preview.stdout
    as_html = vendo("email", "preview", "license_key", "--html", cwd=tmp_path)
    assert "<pre" in as_html.stdout and "QDB1.EXAMPLE.KEY" in as_html.stdout
    assert "needs 'name'" in one_error_line(vendo("email", "preview", "custom", cwd=tmp_path,
                                                  VENDO_EMAIL_SMTP__TEMPLATES_DIR=str(_custom(tmp_path))))
    assert "--context is not JSON" in one_error_line(vendo("email", "preview", "invitation", "--context", "{",
                                                           cwd=tmp_path))


def _custom(tmp_path: Path) -> Path:
    directory = tmp_path / "templates"
    directory.mkdir()
    (directory / "custom.subject").write_text("Hi $name\n")
    (directory / "custom.txt").write_text("Hello $name\n")
    return directory


def test_test_email_goes_through_the_configured_server(tmp_path: Path, smtp_server: Any) -> None:
    server = smtp_server(tls="starttls", users={"mailer": "s3cret-pass"})
    env = {"VENDO_EMAIL_SMTP__HOST": server.host, "VENDO_EMAIL_SMTP__PORT": str(server.port),
           "VENDO_EMAIL_SMTP__FROM_ADDRESS": "ops@qoredb.test", "VENDO_EMAIL_SMTP__USERNAME": "mailer",
           "VENDO_EMAIL_SMTP__PASSWORD": "s3cret-pass", "VENDO_EMAIL_SMTP__CA_FILE": str(server.cafile)}
    sent = vendo("email", "test", "--to", "ada@example.com", cwd=tmp_path, **env)
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.strip() == f"sent to ada@example.com through 127.0.0.1:{server.port} (starttls)"
    [received] = server.messages
    assert received.message["Subject"] == "Vendo SMTP test" and received.tls and received.authenticated

    refused = vendo("email", "test", "--to", "ada@example.com", cwd=tmp_path,
                    **{**env, "VENDO_EMAIL_SMTP__PASSWORD": "wrong"})
    line = one_error_line(refused)
    assert line.startswith("error: sending failed: SMTPAuthenticationError") and "wrong" not in refused.stderr
    assert "no SMTP server configured" in one_error_line(vendo("email", "test", "--to", "a@b.test", cwd=tmp_path))


async def test_start_up_warns_when_no_server_is_set(make_kernel: Any, caplog: Any) -> None:
    caplog.set_level(logging.WARNING)
    kernel = make_kernel({})
    await kernel.start()
    try:
        assert "email-smtp: no host set, emails wait in the outbox" in caplog.text
    finally:
        await kernel.stop()
