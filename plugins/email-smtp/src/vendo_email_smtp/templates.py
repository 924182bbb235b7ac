"""Email templates: ``<name>.subject``, ``<name>.txt`` and ``<name>.html``, filled with
:class:`string.Template` (``$name`` placeholders; ``$$`` for a dollar sign).

Why not Jinja2: no package of the workspace depends on it, and these messages need values
and no logic; the few conditional sentences are computed here (``expires``, ``portal_text``).
Values are escaped for the HTML part, never for the text part. A directory given in
``templates_dir`` overrides built-in files one by one (and may add new templates); a
template needs at least its ``.subject`` and ``.txt`` files, ``.html`` is optional.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any, Mapping

from vendo import InvalidInput

BUILT_IN = Path(__file__).parent / "templates"
#: The templates this plugin ships (the contract of ``notification.requested``).
TEMPLATES = ("license_key", "invitation", "password_reset", "payment_failed", "email_verification")


#: Example contexts (``vendo email preview``), one per built-in template.
SAMPLES: dict[str, dict[str, Any]] = {
    "license_key": {"product": "QoreDB", "tier": "pro", "key": "QDB1.EXAMPLE.KEY", "license_id": "lic_example",
                    "expires_at": None},
    "invitation": {"workspace": "Acme", "inviter": "Ada Lovelace",
                   "accept_url": "https://app.example.com/invitations/accept?token=vinv_example"},
    "password_reset": {"reset_url": "https://app.example.com/reset-password?token=vpr_example", "expires_minutes": 60},
    "payment_failed": {"workspace": "Acme", "plan": "pro", "grace_until": "2030-02-01",
                       "portal_url": "https://billing.example.com/portal"},
    "email_verification": {"verify_url": "https://app.example.com/verify-email?token=vev_example",
                           "expires_minutes": 2880},
}


@dataclass(frozen=True)
class Rendered:
    """A template filled with its context."""

    subject: str
    text: str
    html: str | None


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _derived(name: str, context: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """Sentences that depend on optional values: (text values, HTML values)."""
    text: dict[str, str] = {}
    markup: dict[str, str] = {}
    if name == "license_key":
        text["expires"] = _as_text(context.get("expires_at")) or "never (perpetual license)"
    if name == "payment_failed":
        portal = context.get("portal_url")
        if portal:
            text["portal_text"] = f"Update your payment method here: {portal}"
            markup["portal_html"] = f'<a href="{html.escape(str(portal))}">Update your payment method</a>'
        else:
            text["portal_text"] = "Sign in to your account to update your payment method."
            markup["portal_html"] = html.escape(text["portal_text"])
    return text, markup


class Templates:
    """Finds and renders templates (built-in, or overridden from a directory)."""

    def __init__(self, override_dir: Path | None = None) -> None:
        self._dirs = [d for d in (override_dir, BUILT_IN) if d is not None]

    def _source(self, name: str, suffix: str) -> str | None:
        for directory in self._dirs:
            path = directory / f"{name}.{suffix}"
            if path.is_file():
                return path.read_text(encoding="utf-8")
        return None

    def names(self) -> list[str]:
        """Every template available (with a subject and a text body)."""
        found = {p.stem for d in self._dirs if d.is_dir() for p in d.glob("*.subject")}
        return sorted(n for n in found if self._source(n, "txt") is not None)

    def render(self, name: str, context: Mapping[str, Any]) -> Rendered:
        """Fill template ``name`` with ``context``.

        :raises InvalidInput: ``unknown_template``, or ``template_context`` when a
            placeholder has no value.
        """
        subject_src, text_src = self._source(name, "subject"), self._source(name, "txt")
        if subject_src is None or text_src is None:
            raise InvalidInput(f"no email template named {name!r} (known: {', '.join(self.names())})",
                               code="unknown_template")
        html_src = self._source(name, "html")
        derived_text, derived_html = _derived(name, context)
        values = {str(k): _as_text(v) for k, v in context.items()}
        values.update(derived_text)
        try:
            subject = " ".join(Template(subject_src).substitute(values).split())
            text = Template(text_src).substitute(values)
            markup = None
            if html_src is not None:
                escaped = {k: html.escape(v) for k, v in values.items()}
                escaped.update(derived_html)
                markup = Template(html_src).substitute(escaped)
        except KeyError as exc:
            raise InvalidInput(f"email template {name!r} needs {exc.args[0]!r} in its context",
                               code="template_context") from None
        except ValueError as exc:
            raise InvalidInput(f"email template {name!r} is malformed: {exc}", code="template_invalid") from None
        return Rendered(subject=subject, text=text, html=markup)
