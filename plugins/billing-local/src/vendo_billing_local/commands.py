"""``vendo billing-local renew`` (roll local subscriptions over at their period end) and
``vendo billing-local refund`` (give money back on a paid local invoice)."""

from __future__ import annotations

import asyncio
from typing import Any, Optional

import typer

app = typer.Typer(help="The local (no-payment) billing provider.", no_args_is_help=True, rich_markup_mode=None)


def _provider() -> Any:
    from vendo import cli_kernel

    from vendo_billing_local import provider_of

    kernel = cli_kernel()
    kernel.providers.configure(kernel.settings.providers)
    kernel.check_database()
    return provider_of(kernel)


@app.command("renew")
def renew() -> None:
    """Process every local subscription whose period or trial ended (cancel, expire, renew)."""
    count = asyncio.run(_provider().renew())
    typer.echo(f"{count} subscription{'s' * (count != 1)} processed")


@app.command("refund")
def refund(
    target: str = typer.Argument(..., metavar="INVOICE_OR_SUBSCRIPTION_ID",
                                 help="A local invoice (linv_...), subscription (lsub_..., its latest paid invoice) "
                                      "or checkout (lchk_...)."),
    amount: Optional[int] = typer.Option(None, "--amount", help="Minor units (cents); default: all that is left."),
    key: Optional[str] = typer.Option(None, "--key", help="Idempotency key (default: invoice and amount)."),
    reason: Optional[str] = typer.Option(None, "--reason", help="Why (kept with the refund)."),
) -> None:
    """Refund a paid local invoice and tell the kernel (``billing.refund.created``).

    Running it again refunds nothing more: the same amount (or the same --key) is the same
    refund, and an invoice refunded in full has nothing left.
    """
    from vendo_billing_local.routes import money

    done, created = asyncio.run(_provider().refund(target, amount, idempotency_key=key, reason=reason))
    state = "refunded" if created else "already refunded"
    typer.echo(f"{done.id} {state}: {money(done.amount, done.currency)} on invoice {done.invoice_id} "
               f"(subscription {done.subscription_id or '-'}, workspace {done.subject})")
