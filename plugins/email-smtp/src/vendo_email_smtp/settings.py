"""The plugin's settings: ``[email-smtp]`` in vendo.toml, or ``VENDO_EMAIL_SMTP__<FIELD>``."""

from __future__ import annotations

from email.utils import parseaddr
from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, SecretStr, field_validator, model_validator
from vendo import PluginSettings


class SMTPSettings(PluginSettings):
    """Where and how emails are sent.

    Without ``host`` the plugin registers no notifier: emails wait in the outbox (``vendo
    outbox list --type notification.requested``) and go out once ``host`` is set.
    """

    host: Optional[str] = Field(None, description="SMTP server; unset: nothing is sent, emails wait in the outbox.")
    port: int = Field(587, ge=1, le=65535, description="587 for STARTTLS, 465 for implicit TLS, 25 for relays.")
    security: Literal["starttls", "ssl", "none"] = Field(
        "starttls", description="starttls (upgrade a plain connection), ssl (TLS from the first byte, port 465) "
                                "or none (a local relay only).")
    username: Optional[str] = Field(None, description="AUTH user name; unset: no authentication.")
    password: Optional[SecretStr] = Field(None, description="AUTH password (never logged or shown).")
    from_address: str = Field("", description="Sender, e.g. 'QoreDB <licenses@qoredb.example>'.")
    reply_to: Optional[str] = Field(None, description="Reply-To address, if replies go elsewhere.")
    timeout: float = Field(10.0, gt=0, le=300, description="Seconds to wait for the server, per operation.")
    templates_dir: Optional[Path] = Field(
        None, description="Directory of templates overriding the built-in ones (<name>.subject, <name>.txt, "
                          "<name>.html).")
    ca_file: Optional[Path] = Field(
        None, description="PEM file of the CA that signed the server's certificate (default: the system's).")
    message_id_domain: Optional[str] = Field(
        None, description="Domain of the Message-ID header (default: the domain of from_address).")

    @field_validator("from_address", "reply_to")
    @classmethod
    def _address(cls, value: Optional[str]) -> Optional[str]:
        if value:
            _, address = parseaddr(value)
            if "@" not in address or any(c in value for c in "\r\n"):
                raise ValueError(f"not an email address: {value!r}")
        return value

    @field_validator("templates_dir", "ca_file")
    @classmethod
    def _exists(cls, value: Optional[Path]) -> Optional[Path]:
        if value is not None and not value.exists():
            raise ValueError(f"{value} does not exist")
        return value

    @model_validator(mode="after")
    def _complete(self) -> "SMTPSettings":
        if self.host and not self.from_address:
            raise ValueError("from_address is required when host is set")
        if (self.username is None) != (self.password is None):
            raise ValueError("set both username and password, or neither")
        return self

    @property
    def configured(self) -> bool:
        """Whether a server is set (else the plugin registers no notifier)."""
        return bool(self.host)

    @property
    def domain(self) -> str:
        """The domain of Message-ID headers."""
        if self.message_id_domain:
            return self.message_id_domain
        address = parseaddr(self.from_address)[1]
        return address.rsplit("@", 1)[-1] if "@" in address else "vendo.invalid"

