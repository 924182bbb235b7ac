"""The built-in templates render the contract's contexts, escape HTML, and can be overridden."""

from __future__ import annotations

from pathlib import Path

import pytest

from vendo import InvalidInput
from vendo_email_smtp.templates import TEMPLATES, Templates

CONTEXTS = {
    "license_key": {"product": "QoreDB", "tier": "pro", "key": "QDB1.abc.def", "license_id": "lic_1",
                    "expires_at": "2031-01-01T00:00:00+00:00"},
    "invitation": {"workspace": "Acme", "inviter": "Ada Lovelace", "accept_url": "https://app.test/inv?token=vinv_x"},
    "password_reset": {"reset_url": "https://app.test/reset?token=vpr_y", "expires_minutes": 60},
    "payment_failed": {"workspace": "Acme", "plan": "pro", "grace_until": "2030-02-01",
                       "portal_url": "https://billing.test/portal/1"},
    "email_verification": {"verify_url": "https://app.test/verify?token=vev_z", "expires_minutes": 2880},
}


def test_every_template_renders_its_contract_context():
    templates = Templates()
    assert sorted(TEMPLATES) == sorted(CONTEXTS) == templates.names()
    for name, context in CONTEXTS.items():
        rendered = templates.render(name, context)
        assert rendered.subject and "\n" not in rendered.subject and "$" not in rendered.subject
        assert rendered.html is not None and "$" not in rendered.text + rendered.html
        for value in context.values():
            assert str(value) in rendered.text, (name, value)


def test_subjects_and_optional_values():
    templates = Templates()
    assert templates.render("invitation", CONTEXTS["invitation"]).subject == "Ada Lovelace invited you to join Acme"
    perpetual = templates.render("license_key", {**CONTEXTS["license_key"], "expires_at": None})
    assert "Expires: never (perpetual license)." in perpetual.text
    without_portal = templates.render("payment_failed", {**CONTEXTS["payment_failed"], "portal_url": None})
    assert "Sign in to your account to update your payment method." in without_portal.text
    assert "<a href" not in without_portal.html
    with_portal = templates.render("payment_failed", CONTEXTS["payment_failed"])
    assert '<a href="https://billing.test/portal/1">Update your payment method</a>' in with_portal.html


def test_values_are_escaped_in_html_only():
    rendered = Templates().render("invitation", {**CONTEXTS["invitation"], "workspace": '<script>"x"</script>'})
    assert "<script>" not in rendered.html and "&lt;script&gt;&quot;x&quot;&lt;/script&gt;" in rendered.html
    assert '<script>"x"</script>' in rendered.text


def test_subject_cannot_carry_a_header_injection():
    rendered = Templates().render("invitation", {**CONTEXTS["invitation"], "inviter": "Eve\r\nBcc: all@x.test"})
    assert "\r" not in rendered.subject and "\n" not in rendered.subject


def test_missing_values_and_unknown_templates_are_clear_errors():
    with pytest.raises(InvalidInput, match="email template 'password_reset' needs 'reset_url'") as caught:
        Templates().render("password_reset", {"expires_minutes": 5})
    assert caught.value.code == "template_context"
    with pytest.raises(InvalidInput, match="no email template named 'nope'") as unknown:
        Templates().render("nope", {})
    assert unknown.value.code == "unknown_template"


def test_a_directory_overrides_files_one_by_one_and_adds_templates(tmp_path: Path):
    (tmp_path / "password_reset.subject").write_text("[$$QoreDB] new password\n")
    (tmp_path / "welcome.subject").write_text("Welcome, $name\n")
    (tmp_path / "welcome.txt").write_text("Hello $name.\n")
    templates = Templates(tmp_path)
    reset = templates.render("password_reset", CONTEXTS["password_reset"])
    assert reset.subject == "[$QoreDB] new password"
    assert CONTEXTS["password_reset"]["reset_url"] in reset.text  # built-in body kept
    welcome = templates.render("welcome", {"name": "Ada"})
    assert (welcome.subject, welcome.text, welcome.html) == ("Welcome, Ada", "Hello Ada.\n", None)
    assert "welcome" in templates.names()
