"""The local hosted pages: checkout (``GET`` shows the plan and a Pay button, ``POST``
completes it and redirects to the success URL) and portal (subscriptions, invoices,
cancel/resume). Their unguessable ids are the credential, as with a vendor's hosted pages."""

from __future__ import annotations

from html import escape
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem}}
table{{border-collapse:collapse;width:100%}}td,th{{padding:.3rem;border-bottom:1px solid #ddd;text-align:left}}
button{{font-size:1rem;padding:.5rem 1.2rem}}.note{{color:#666;font-size:.9rem}}</style></head>
<body><h1>{title}</h1>{content}
<p class="note">Local billing: no payment is taken (vendo-billing-local).</p></body></html>"""


def money(amount: int, currency: str) -> str:
    """``1990, "eur"`` → ``19.90 EUR``."""
    from vendo import ZERO_DECIMAL

    if currency in ZERO_DECIMAL:
        return f"{amount} {currency.upper()}"
    return f"{amount / 100:.2f} {currency.upper()}"


def success_url(checkout: Any) -> str:
    """Where the buyer goes once paid: the checkout's ``success_url`` with ``{CHECKOUT_SESSION_ID}``
    replaced by the checkout id, as Stripe does, so one success URL works with both providers."""
    return checkout.success_url.replace("{CHECKOUT_SESSION_ID}", checkout.id)


def build_router(kernel: Any) -> APIRouter:
    """The pages of the ``local`` provider of ``kernel``."""
    from vendo_billing_local import provider_of

    router = APIRouter(prefix="/billing/local", tags=["billing-local"])

    @router.get("/checkout/{checkout_id}", response_class=HTMLResponse, summary="Local hosted checkout page")
    def checkout_page(checkout_id: str) -> HTMLResponse:
        checkout = provider_of(kernel).checkout(checkout_id)
        if checkout.status != "open":
            return HTMLResponse(PAGE.format(title="Checkout complete", content=(
                f'<p>This checkout is complete. <a href="{escape(success_url(checkout))}">Continue</a></p>')))
        if checkout.trial_days:
            due = f"{checkout.trial_days}-day free trial, no card needed; then {money(checkout.amount, checkout.currency)}"
            action = "Start trial"
        else:
            due = f"{money(checkout.amount, checkout.currency)} per {escape(checkout.interval)}"
            action = "Pay"
        try:
            plan = kernel.entitlements.catalog().plan(checkout.plan)
            name = plan.name
            usage = plan.usage_prices(checkout.interval, checkout.currency)
        except Exception:  # noqa: BLE001 - a plan removed since: show its id
            name, usage = checkout.plan, ()
        for price in usage:  # usage-based prices: billed in arrears with each renewal
            beyond = f" beyond {price.included} included" if price.included else ""
            due += (f"<br>plus {escape(str(price.amount))} {escape(price.currency.upper())} per "
                    f"{escape(price.metered_feature or '')} used{beyond}, billed at the end of each "
                    f"{escape(price.interval)}")
        content = (
            f"<table><tr><th>Plan</th><td>{escape(name)}</td></tr>"
            f"<tr><th>Seats</th><td>{checkout.seats}</td></tr>"
            f"<tr><th>Price</th><td>{due}</td></tr>"
            f"<tr><th>Account</th><td>{escape(checkout.subject)}</td></tr></table>"
            f'<form method="post"><p><button type="submit">{action}</button> '
            f'<a href="{escape(checkout.cancel_url)}">Cancel</a></p></form>')
        return HTMLResponse(PAGE.format(title=f"Subscribe to {escape(name)}", content=content))

    @router.post("/checkout/{checkout_id}", summary="Complete a local checkout (the Pay button)")
    async def checkout_pay(checkout_id: str) -> RedirectResponse:
        checkout = await provider_of(kernel).complete_checkout(checkout_id)
        return RedirectResponse(success_url(checkout), status_code=303)

    @router.get("/portal/{portal_id}", response_class=HTMLResponse, summary="Local customer portal page")
    def portal_page(portal_id: str) -> HTMLResponse:
        portal, subs, invoices = provider_of(kernel).portal(portal_id)
        rows = []
        for sub in subs:
            if sub.status in ("canceled", "expired"):
                button = ""
            else:
                action, label = ("resume", "Resume") if sub.cancel_at_period_end else ("cancel", "Cancel at period end")
                button = (f'<form method="post" action="/api/v1/billing/local/portal/{escape(portal_id)}/'
                          f'{escape(sub.id)}/{action}"><button type="submit">{label}</button></form>')
            ending = " (cancels at period end)" if sub.cancel_at_period_end else ""
            rows.append(f"<tr><td>{escape(sub.plan)}</td><td>{escape(sub.status)}{ending}</td><td>{sub.seats}</td>"
                        f"<td>{sub.current_period_end.date().isoformat()}</td><td>{button}</td></tr>")
        bills = "".join(f"<tr><td>{escape(i.id)}</td><td>{i.created_at.date().isoformat()}</td>"
                        f"<td>{money(i.amount_paid, i.currency)}</td><td>{escape(i.status)}</td></tr>"
                        for i in invoices)
        content = ("<h2>Subscriptions</h2><table><tr><th>Plan</th><th>Status</th><th>Seats</th><th>Period end</th>"
                   f"<th></th></tr>{''.join(rows)}</table><h2>Invoices</h2><table><tr><th>Invoice</th><th>Date</th>"
                   f"<th>Amount</th><th>Status</th></tr>{bills}</table>"
                   f'<p><a href="{escape(portal.return_url)}">Back</a></p>')
        return HTMLResponse(PAGE.format(title="Billing", content=content))

    @router.post("/portal/{portal_id}/{subscription_id}/{action}", summary="Cancel or resume from the local portal")
    async def portal_action(portal_id: str, subscription_id: str, action: str) -> RedirectResponse:
        await provider_of(kernel).portal_action(portal_id, subscription_id, action)
        return RedirectResponse(f"/api/v1/billing/local/portal/{portal_id}", status_code=303)

    return router
