"""Invitations request their email in the transaction that creates them: the accept link (the
token) travels sealed in the ``notification.requested`` event, opened only by the notifier
(``kernel.notifications.context_of``); no outbox row, domain event or command shows it."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest

from sqlalchemy import select

from vendo import ConfigError
from vendo.config import load_settings
from vendo.outbox import OutboxEvent


def _invite(kernel, email="eve@example.com"):
    with kernel.session() as session:
        ada = kernel.identity.create_user(session, "ada@example.com", name="Ada Lovelace")
        team = kernel.identity.create_workspace(session, ada.id, "Analytical Engines")
        invitation, token = kernel.identity.invite(session, ada.id, team.id, email, "MEMBER")
    return ada, team, invitation, token


def test_an_invitation_requests_its_email_with_the_accept_link(migrated_kernel):
    kernel = migrated_kernel(public_url="https://app.example.com/")
    ada, _team, invitation, token = _invite(kernel)
    [mail] = kernel.outbox.events(type="notification.requested")
    payload = kernel.outbox.event(mail["event_id"])["payload"]
    assert payload["to"] == "eve@example.com" and payload["template"] == "invitation"
    assert payload["idempotency_key"] == f"invitation:{invitation.id}"
    assert payload["context"] == {"workspace": "Analytical Engines", "inviter": "Ada Lovelace"}
    context = kernel.notifications.context_of(payload)  # what the notifier renders
    assert context["workspace"] == "Analytical Engines" and context["inviter"] == "Ada Lovelace"
    url = urlsplit(context["accept_url"])
    assert (url.scheme, url.netloc, url.path) == ("https", "app.example.com", "/invitations/accept")
    assert parse_qs(url.query) == {"token": [token]}

    [created] = kernel.outbox.events(type="identity.invitation.created")
    created_payload = kernel.outbox.event(created["event_id"])["payload"]
    assert "token" not in created_payload and token not in str(created_payload)
    with kernel.session() as session:
        eve = kernel.identity.create_user(session, "eve@example.com")
        joined = kernel.identity.accept_invitation(session, eve.id, parse_qs(url.query)["token"][0])
    assert joined["role"] == "MEMBER"


def test_no_outbox_row_holds_the_invitation_token(migrated_kernel):
    kernel = migrated_kernel(public_url="https://app.example.com/")
    _ada, team, invitation, token = _invite(kernel)
    with kernel.session() as session:  # as the database (and a dump of it) holds them
        rows = session.scalars(select(OutboxEvent)).all()
        stored = {row.type: json.dumps(row.payload) for row in rows}
    assert set(stored) >= {"notification.requested", "identity.invitation.created"}
    secret = token[len("vinv_"):]
    assert all(token not in text and secret not in text for text in stored.values())
    assert "accept_url" not in stored["notification.requested"]
    [mail] = kernel.outbox.events(type="notification.requested")
    assert token not in json.dumps(mail) and token not in json.dumps(kernel.outbox.event(mail["event_id"]))

    # the sealed link is the working one: the invited address joins with it, once
    [event] = [row for row in rows if row.type == "notification.requested"]
    url = kernel.notifications.context_of(event.payload)["accept_url"]
    with kernel.session() as session:
        eve = kernel.identity.create_user(session, "eve@example.com")
        joined = kernel.identity.accept_invitation(session, eve.id, parse_qs(urlsplit(url).query)["token"][0])
    assert joined["id"] == team.id == invitation.workspace_id


def test_a_rolled_back_invitation_requests_no_email(migrated_kernel):
    kernel = migrated_kernel()
    with pytest.raises(RuntimeError):
        with kernel.session() as session:
            ada = kernel.identity.create_user(session, "ada@example.com")
            team = kernel.identity.create_workspace(session, ada.id, "Team")
            kernel.identity.invite(session, ada.id, team.id, "eve@example.com")
            raise RuntimeError("boom")
    assert kernel.outbox.events(type="notification.requested") == []


def test_link_defaults_to_the_server_address_and_is_configurable(migrated_kernel):
    kernel = migrated_kernel(server={"port": 8123},
                             notifications={"invitation_url": "https://join.example.com/i/{token}?from=mail"})
    _ada, _team, _invitation, token = _invite(kernel)
    [mail] = kernel.outbox.events(type="notification.requested")
    accept_url = kernel.notifications.context_of(kernel.outbox.event(mail["event_id"])["payload"])["accept_url"]
    assert accept_url == f"https://join.example.com/i/{token}?from=mail"
    plain = migrated_kernel()
    assert plain.notifications.link("{public_url}/x?t={token}", token="a b/c") == "http://127.0.0.1:8000/x?t=a%20b%2Fc"


@pytest.mark.parametrize(("overrides", "message"), [
    ({"public_url": "app.example.com"}, "public_url must be an http(s) URL"),
    ({"public_url": "https://app.example.com/?x=1"}, "public_url must be an http(s) URL"),
    ({"notifications": {"invitation_url": "{public_url}/accept"}}, "the link must contain {token}"),
    ({"notifications": {"invitation_url": "{public_url}/a?t={token}&u={user}"}}, "unknown placeholder"),
    ({"notifications": {"invitation_url": "ftp://x/{token}"}}, "must start with {public_url} or http(s)://"),
])
def test_bad_link_settings_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(overrides=overrides)
