"""The ``core`` built-in plugin: the outbox commands and the plugin listing route."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Optional

import typer

from vendo.plugins import hookimpl

outbox_app = typer.Typer(name="outbox", help="Domain events waiting for or delivered to subscribers.",
                         no_args_is_help=True, rich_markup_mode=None)


@outbox_app.command("list")
def outbox_list(
    type: Optional[str] = typer.Option(None, "--type", help="Only events of this type, e.g. notification.requested."),
    status: Optional[str] = typer.Option(
        None, help="Only events with a delivery in this status: pending, delivered or dead; "
                   "or unrouted (no subscriber received it)."),
    limit: int = typer.Option(50, min=1, max=10_000, help="How many, newest first."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines."),
) -> None:
    """List recent outbox events with their deliveries, newest first.

    Payloads are not printed: `vendo outbox show EVENT_ID` prints one.
    """
    from vendo.cli import cli_kernel

    kernel = cli_kernel()
    kernel.check_database()
    rows = kernel.outbox.events(type=type, status=status, limit=limit)
    for row in rows:
        if as_json:
            typer.echo(json.dumps(row))
            continue
        note = row.get("notification")
        about = f"  [{note['channel']} {note['template']} -> {note['to']}]" if note else ""
        typer.echo(f"{row['created_at']}  {row['event_id']}  {row['type']}  {row['status']}{about}")
        for delivery in row["deliveries"]:
            typer.echo("    " + _delivery_line(delivery))
    if not rows and not as_json:
        typer.echo("no events")


def _delivery_line(delivery: dict[str, Any]) -> str:
    """``-> subscriber  status (n attempt(s))  reason``, one line."""
    reason = delivery["waiting"] or delivery["last_error"] or ""
    line = f"-> {delivery['subscriber']}  {delivery['status']} ({delivery['attempts']} attempt(s))"
    if delivery["status"] == "pending" and delivery["attempts"] and not delivery["waiting"]:
        line += f", next at {delivery['next_attempt_at']}"
    return f"{line}  {reason}".rstrip()


@outbox_app.command("show")
def outbox_show(
    event_id: str = typer.Argument(..., help="The event id shown by `vendo outbox list`."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Print one event: its payload and its deliveries.

    The payload is printed as stored: a notification's secrets (a license key, an invitation,
    password-reset or verification link) are sealed, shown as the ciphertext of its `sealed`
    field, never in clear (rows an older version wrote in clear: `vendo outbox seal`).
    """
    from vendo.cli import cli_kernel

    kernel = cli_kernel()
    kernel.check_database()
    row = kernel.outbox.event(event_id)
    if as_json:
        typer.echo(json.dumps(row, indent=2))
        return
    typer.echo(f"event    {row['event_id']}")
    typer.echo(f"type     {row['type']}")
    typer.echo(f"created  {row['created_at']}")
    typer.echo(f"status   {row['status']}")
    typer.echo("payload")
    for line in json.dumps(row["payload"], indent=2, sort_keys=True).splitlines():
        typer.echo("  " + line)
    typer.echo("deliveries" if row["deliveries"] else "deliveries: none (no subscriber received it)")
    for delivery in row["deliveries"]:
        typer.echo("  " + _delivery_line(delivery))


@outbox_app.command("dispatch")
def outbox_dispatch() -> None:
    """Deliver every due event now, then exit."""
    from vendo.cli import cli_kernel

    kernel = cli_kernel()
    kernel.check_database()
    done = asyncio.run(kernel.outbox.drain())
    typer.echo(f"{done} deliver{'y' if done == 1 else 'ies'} attempted")


@outbox_app.command("seal")
def outbox_seal(
    template: Optional[str] = typer.Option(
        None, "--template", help="Only this notification template (with --field: any template)."),
    fields: Optional[list[str]] = typer.Option(
        None, "--field", help="A context value of --template to seal (repeatable); default: its known secrets."),
) -> None:
    """Seal the secrets that an older version stored in clear in notification.requested events.

    Without options: the license key of license_key emails, the link of invitation,
    password_reset and email_verification emails. Idempotent; run once after upgrading.
    Pending emails still go out with the same values.
    """
    from vendo.cli import cli_kernel
    from vendo.errors import InvalidInput
    from vendo.notifications import SECRET_FIELDS

    if fields and not template:
        raise InvalidInput("--field needs --template", code="invalid_option")
    if template and not fields and template not in SECRET_FIELDS:
        raise InvalidInput(f"no known secrets for template {template!r}: name them with --field "
                           f"(known templates: {', '.join(SECRET_FIELDS)})", code="invalid_option")
    kernel = cli_kernel()
    kernel.check_database()
    plan = {template: tuple(fields or SECRET_FIELDS[template])} if template else SECRET_FIELDS
    for name, names in plan.items():
        count = kernel.notifications.seal_stored(template=name, fields=names)
        typer.echo(f"{count} {name} notification(s) sealed ({', '.join(names)})")


@outbox_app.command("retry")
def outbox_retry(event_id: str = typer.Argument(..., help="The event id shown by `vendo outbox list`.")) -> None:
    """Make an event's undelivered (or dead) deliveries due again."""
    from vendo.cli import cli_kernel

    kernel = cli_kernel()
    kernel.check_database()
    count = kernel.outbox.retry(event_id)
    typer.echo(f"{count} deliver{'y' if count == 1 else 'ies'} scheduled")


@hookimpl
def vendo_register_commands(register: Any) -> None:
    """Add ``vendo outbox list|show|dispatch|retry``."""
    register(outbox_app)


@hookimpl
def vendo_register_authenticators(register: Any, kernel: Any) -> None:
    """The ``session`` authenticator: ``Authorization: Bearer <access token>`` from a sign-in."""
    from vendo.identity.sessions import SessionAuthenticator

    register("session", SessionAuthenticator(kernel.sessions))


@hookimpl
def vendo_register_counter_stores(register: Any) -> None:
    """The ``sql`` counter store: counters in the database, in the caller's transaction."""
    from vendo.entitlements.store import SQLCounterStore

    register("sql", SQLCounterStore())


@hookimpl
def vendo_register_routes(register: Any, kernel: Any) -> None:
    """Identity, entitlement, billing and AI routes (me, sessions, workspaces, members,
    invitations, audit, usage, ``/billing/...``, the AI vault and budgets under ``/ai``) and
    ``GET /api/v1/plugins`` (plugins with versions, statuses and hooks, like Datasette's). The
    OpenAI-compatible ``/v1`` routes are mounted by the app when an AI provider is registered."""
    from fastapi import APIRouter

    from vendo.identity.endpoints import build_router

    register(build_router(kernel))
    from vendo.entitlements.endpoints import build_router as entitlement_routes

    register(entitlement_routes(kernel))
    from vendo.billing.endpoints import build_router as billing_routes

    register(billing_routes(kernel))

    from vendo.ai.endpoints import build_router as ai_routes

    register(ai_routes(kernel))
    router = APIRouter(tags=["kernel"])

    @router.get("/plugins", summary="Installed plugins and their status")
    def list_plugins() -> dict[str, Any]:
        return {
            "plugins": [p.to_dict() for p in kernel.plugins],
            "providers": kernel.providers.summary(),
        }

    register(router)


@hookimpl
def vendo_erase_workspace_data(workspace_id: str, session: Any, kernel: Any) -> None:
    """Delete the AI vault's keys and the API-key AI budgets of a workspace being deleted."""
    from sqlalchemy import delete

    from vendo.ai.models import AIKeyBudget

    kernel.ai.vault.erase_workspace(session, workspace_id)
    session.execute(delete(AIKeyBudget).where(AIKeyBudget.workspace == workspace_id))
