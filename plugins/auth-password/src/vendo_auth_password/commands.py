"""``vendo auth-password unlock EMAIL``: the operator lifts a lockout at once (a customer
locked out of their account calls support)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Password sign-in, for the operator.", no_args_is_help=True, rich_markup_mode=None)


@app.command("unlock")
def unlock(email: str = typer.Argument(..., metavar="EMAIL")) -> None:
    """Lift the lockout of an account (its failure count starts again)."""
    from vendo import cli_kernel

    from vendo_auth_password import service_for

    kernel = cli_kernel()
    kernel.check_database()
    was_locked = service_for(kernel, None).unlock(email)
    typer.echo(f"{email.strip()}: {'unlocked' if was_locked else 'was not locked'}")
