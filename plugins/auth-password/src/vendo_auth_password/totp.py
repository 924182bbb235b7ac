"""TOTP (RFC 6238: 6 digits, 30-second steps, SHA-1, as every authenticator app) and
recovery codes, always at the kernel's clock."""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime

DIGITS = 6
INTERVAL = 30
#: Recovery-code alphabet: lower-case letters and digits without look-alikes (0/o, 1/l/i).
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


def new_secret() -> str:
    """A fresh base32 TOTP seed (160 bits)."""
    import pyotp

    return pyotp.random_base32()


def provisioning_uri(secret: str, account: str, issuer: str) -> str:
    """The ``otpauth://totp/...`` URI that authenticator apps scan as a QR code."""
    import pyotp

    return pyotp.TOTP(secret, digits=DIGITS, interval=INTERVAL).provisioning_uri(name=account, issuer_name=issuer)


def step_at(moment: datetime) -> int:
    """The TOTP time step (counter) of an aware datetime."""
    return int(moment.timestamp()) // INTERVAL


def normalize_code(code: str | None) -> str:
    """A typed TOTP code without spaces (``"123 456"`` → ``"123456"``)."""
    return "".join((code or "").split())


def match(secret: str, code: str | None, moment: datetime, window: int = 1) -> int | None:
    """The time step whose code ``code`` is, within ``window`` steps of ``moment``, or ``None``.

    Every candidate is compared in constant time; the caller refuses a step not newer than
    the last one accepted (replay).
    """
    import pyotp

    typed = normalize_code(code)
    if len(typed) != DIGITS or not typed.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=INTERVAL)
    now = step_at(moment)
    found = None
    for offset in sorted(range(-window, window + 1), key=abs):
        if hmac.compare_digest(totp.generate_otp(now + offset), typed) and found is None:
            found = now + offset
    return found


def new_recovery_codes(count: int) -> list[str]:
    """``count`` random recovery codes such as ``k7m2p-x9qa4`` (about 49 bits each)."""
    codes = set()
    while len(codes) < count:
        raw = "".join(secrets.choice(_ALPHABET) for _ in range(10))
        codes.add(f"{raw[:5]}-{raw[5:]}")
    return sorted(codes)


def normalize_recovery_code(code: str | None) -> str:
    """A typed recovery code lower-cased, without spaces or dashes."""
    return "".join(ch for ch in (code or "").lower() if ch.isalnum())
