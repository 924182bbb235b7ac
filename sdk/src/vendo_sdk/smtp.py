"""A real SMTP server on loopback for tests (``aiosmtpd``), with optional AUTH, STARTTLS or
implicit TLS: what an email plugin's tests, or an end-to-end test of a flow that sends email,
point their SMTP settings at. Used through the ``vendo_smtp_server`` fixture; needs the
``vendo-sdk[smtp]`` extra (``aiosmtpd``, and ``cryptography`` for the TLS certificate).

    def test_key_is_emailed(vendo_smtp_server):
        server = vendo_smtp_server()                     # or (tls="starttls", users={"u": "p"})
        settings = server.settings()                     # [email-smtp] host, port, security...
        ...
        [received] = server.messages                     # parsed email.message.EmailMessage
        assert "QDB1." in received.message.get_body(("plain",)).get_content()
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Iterator


@dataclass
class Received:
    """One message as the server got it."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    tls: bool
    authenticated: bool


@dataclass
class SMTPServer:
    """A running loopback SMTP server and what it received."""

    host: str
    port: int
    messages: list[Received] = field(default_factory=list)
    attempts: int = 0
    fail_next: list[str] = field(default_factory=list)
    logins: list[tuple[str, bool]] = field(default_factory=list)
    cafile: Path | None = None

    def settings(self, **extra: Any) -> dict[str, Any]:
        """``[email-smtp]`` settings pointing at this server (``security`` matches how it
        was started only if you pass it: ``settings(security="starttls")``)."""
        values: dict[str, Any] = {"host": self.host, "port": self.port, "security": "none",
                                  "from_address": "QoreDB <licenses@qoredb.test>", "timeout": 5}
        if self.cafile is not None:
            values["ca_file"] = str(self.cafile)
        values.update(extra)
        return values


class _Handler:
    def __init__(self, server: SMTPServer) -> None:
        self.server = server

    async def handle_DATA(self, smtp: Any, session: Any, envelope: Any) -> str:
        self.server.attempts += 1
        if self.server.fail_next:
            return self.server.fail_next.pop(0)
        message = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        self.server.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message,
                                             tls=session.ssl is not None, authenticated=bool(session.authenticated)))
        return "250 2.0.0 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA): (certificate, key) PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                    x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@contextmanager
def smtp_servers(directory: Path) -> Iterator[Any]:
    """Yield ``start(tls=None|"starttls"|"ssl", users=None) -> SMTPServer``; every server
    started is stopped on exit. TLS certificates are written to ``directory``.

    With ``users`` (``{login: password}``), AUTH is required (over TLS when there is TLS).
    """
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    controllers: list[Any] = []

    def start(tls: str | None = None, users: dict[str, str] | None = None) -> SMTPServer:
        if tls not in (None, "starttls", "ssl"):
            raise ValueError(f"tls must be None, 'starttls' or 'ssl', got {tls!r}")
        server = SMTPServer(host="127.0.0.1", port=free_port())
        options: dict[str, Any] = {}
        if tls is not None:
            cert, key = _certificate(directory)
            server.cafile = cert
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
            if tls == "starttls":
                options.update(tls_context=context, require_starttls=True)
            else:
                options.update(ssl_context=context)
        if users is not None:
            def authenticator(_server: Any, _session: Any, _envelope: Any, mechanism: str, data: Any) -> Any:
                ok = (isinstance(data, LoginPassword)
                      and users.get(data.login.decode()) == data.password.decode())
                server.logins.append((data.login.decode() if isinstance(data, LoginPassword) else "", ok))
                return AuthResult(success=ok, handled=False)

            # With implicit TLS aiosmtpd cannot tell the connection is encrypted: it is, from the first byte.
            options.update(authenticator=authenticator, auth_required=True, auth_require_tls=tls == "starttls")
        controller = Controller(_Handler(server), hostname=server.host, port=server.port, **options)
        controller.start()
        controllers.append(controller)
        return server

    try:
        yield start
    finally:
        for controller in controllers:
            controller.stop()
