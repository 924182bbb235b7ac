"""``vendo email templates | preview | test``: check templates and the SMTP settings by hand."""

from __future__ import annotations

import json
import smtplib
import uuid
from typing import Any, Optional

import typer
from vendo import InvalidInput, ProviderNotConfigured, VendoError

app = typer.Typer(name="email", help="Transactional email over SMTP (vendo-email-smtp).", no_args_is_help=True,
                  rich_markup_mode=None)


def _settings() -> Any:
    from vendo import cli_kernel

    kernel = cli_kernel()
    settings = kernel.plugin_settings("email-smtp")
    if settings is None:
        info = kernel.plugin("email-smtp")
        reason = f"{info.status}: {info.error}" if info is not None and info.error else "not loaded"
        raise ProviderNotConfigured(f"plugin 'email-smtp' is {reason}", code="plugin_not_loaded")
    return settings


@app.command("templates")
def list_templates() -> None:
    """List the templates available (built-in, and from templates_dir)."""
    from vendo_email_smtp.templates import Templates

    for name in Templates(_settings().templates_dir).names():
        typer.echo(name)


@app.command("preview")
def preview(
    template: str = typer.Argument(..., help="Template name, e.g. license_key."),
    context: Optional[str] = typer.Option(
        None, "--context", help="JSON object of values (default: an example context for built-in templates)."),
    html: bool = typer.Option(False, "--html", help="Print the HTML part instead of the text."),
) -> None:
    """Render a template and print its subject and body (nothing is sent)."""
    from vendo_email_smtp.templates import SAMPLES, Templates

    values = dict(SAMPLES.get(template, {}))
    if context is not None:
        try:
            given = json.loads(context)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"--context is not JSON: {exc.msg}") from None
        if not isinstance(given, dict):
            raise InvalidInput("--context must be a JSON object")
        values.update(given)
    rendered = Templates(_settings().templates_dir).render(template, values)
    if html and rendered.html is None:
        raise InvalidInput(f"template {template!r} has no HTML part")
    typer.echo(f"Subject: {rendered.subject}\n")
    typer.echo(rendered.html if html else rendered.text)


@app.command("test")
def send_test(to: str = typer.Option(..., "--to", help="Address to send the test email to.")) -> None:
    """Send one test email now, straight through the configured server (not the outbox)."""
    from vendo import EmailMessage

    from vendo_email_smtp import sender

    settings = _settings()
    if not settings.configured:
        raise ProviderNotConfigured("no SMTP server configured: set [email-smtp] host and from_address "
                                    "(or VENDO_EMAIL_SMTP__HOST)", code="smtp_not_configured")
    from vendo import normalize_email

    address, _ = normalize_email(to)
    message = EmailMessage(to=address, subject="Vendo SMTP test",
                           text="This test email shows that Vendo can send email through this server.\n",
                           headers={"Message-ID": sender.message_id(f"smtp-test:{uuid.uuid4()}", settings.domain)})
    try:
        sender.send_sync(sender.to_mime(message, settings), settings)
    except (smtplib.SMTPException, OSError) as exc:
        lines = str(exc).strip().splitlines()
        raise VendoError(f"sending failed: {type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": "),
                         code="smtp_failed") from None
    typer.echo(f"sent to {address} through {settings.host}:{settings.port} ({settings.security})")
