"""The SDK's notifier contract suite, against a real SMTP server on loopback."""

from __future__ import annotations

from typing import Any

import pytest

import vendo_email_smtp
from vendo_sdk.contracts import NotifierContract


class TestSMTPNotifierContract(NotifierContract):
    plugin = vendo_email_smtp
    plugin_name = "email-smtp"
    provider_name = "smtp"

    @pytest.fixture
    def kernel(self, vendo_kernel: Any, smtp_server: Any) -> Any:
        """A kernel whose notifier sends to a fresh loopback SMTP server."""
        self.server = smtp_server()
        return vendo_kernel({self.plugin_name: self.plugin}, plugin_settings={self.plugin_name: self.server.settings()})

    def delivered(self) -> list[Any]:
        return self.server.messages

    def identity(self, item: Any) -> str:
        return item.message["Message-ID"]
