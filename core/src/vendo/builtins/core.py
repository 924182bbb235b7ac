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
    status: Optional[str] = typer.Option(None, help="Only deliveries in this status: pending, delivered or dead."),
    limit: int = typer.Option(50, min=1, max=10_000, help="How many, newest first."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines."),
) -> None:
    """List recent outbox deliveries, newest first."""
    from vendo.cli import cli_kernel
    from vendo.errors import InvalidInput

    if status not in (None, "pending", "delivered", "dead"):
        raise InvalidInput(f"unknown status {status!r}: use pending, delivered or dead")
    kernel = cli_kernel()
    kernel.check_database()
    rows = kernel.outbox.list(status=status, limit=limit)
    for row in rows:
        if as_json:
            typer.echo(json.dumps(row))
        else:
            error = f"  {row['last_error']}" if row["last_error"] else ""
            typer.echo(
                f"{row['created_at']}  {row['event_id']}  {row['type']}  -> {row['subscriber']}  "
                f"{row['status']} ({row['attempts']} attempt(s)){error}"
            )
    if not rows and not as_json:
        typer.echo("no deliveries")


@outbox_app.command("dispatch")
def outbox_dispatch() -> None:
    """Deliver every due event now, then exit."""
    from vendo.cli import cli_kernel

    kernel = cli_kernel()
    kernel.check_database()
    done = asyncio.run(kernel.outbox.drain())
    typer.echo(f"{done} deliver{'y' if done == 1 else 'ies'} attempted")


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
    """Add ``vendo outbox list|dispatch|retry``."""
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
    """Identity routes (me, sessions, workspaces, members, invitations, audit) and
    ``GET /api/v1/plugins`` (plugins with versions, statuses and hooks, like Datasette's)."""
    from fastapi import APIRouter

    from vendo.identity.endpoints import build_router

    register(build_router(kernel))
    from vendo.entitlements.endpoints import build_router as entitlement_routes

    register(entitlement_routes(kernel))
    router = APIRouter(tags=["kernel"])

    @router.get("/plugins", summary="Installed plugins and their status")
    def list_plugins() -> dict[str, Any]:
        return {
            "plugins": [p.to_dict() for p in kernel.plugins],
            "providers": kernel.providers.summary(),
        }

    register(router)
