"""The password sign-in service (one per kernel): every rule of the plugin, without HTTP.

Transactions: each successful operation writes its rows, audit entry and outbox events in
one ``kernel.session()``, so it commits whole or not at all. A refused attempt raises after
its own small transaction has committed what must survive the refusal (failure counters,
lock, throttle rows, the audit entry), or records the audit entry with
``kernel.audit.record_now``. Slow argon2 work runs outside any transaction.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import uuid
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session
from vendo import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized, VendoError

from vendo_auth_password import totp
from vendo_auth_password.errors import Gone, TooManyAttempts
from vendo_auth_password.hashing import Passwords
from vendo_auth_password.models import PasswordCredential, RecoveryCode, SingleUseToken
from vendo_auth_password.policy import check_password, weak
from vendo_auth_password.throttle import (
    FAILURES,
    INVALID_TOKEN,
    LOGIN_FAILURE,
    REGISTRATION,
    RESET_REQUEST,
    Throttle,
)

if TYPE_CHECKING:  # pragma: no cover
    from vendo import Kernel

    from vendo_auth_password.settings import PasswordSettings

log = logging.getLogger("vendo.auth_password")

T = TypeVar("T")

#: The sign-in method recorded on sessions (``session:password`` principals).
METHOD = "password"
RESET = "reset"
VERIFY_EMAIL = "verify_email"
TOKEN_PREFIXES = {RESET: "vpr_", VERIFY_EMAIL: "vev_"}
TOKEN_EVENTS = {RESET: "auth.password_reset.requested", VERIFY_EMAIL: "auth.email_verification.requested"}
#: The email templates (``notification.requested``) carrying each kind of token, and the
#: context name of the link.
TOKEN_TEMPLATES = {RESET: ("password_reset", "reset_url"), VERIFY_EMAIL: ("email_verification", "verify_url")}
PASSWORD_CHANGED_EVENT = "auth.password.changed"
TOTP_ENABLED_EVENT = "auth.2fa.enabled"
TOTP_DISABLED_EVENT = "auth.2fa.disabled"
#: Purposes of the keys derived from the master secret.
TOKEN_PURPOSE = "auth-password-token"
RECOVERY_PURPOSE = "auth-password-recovery-code"
TOTP_PURPOSE = "totp"


def client_ip(request: Any) -> str:
    """The caller's address as the server sees it (behind a proxy, run uvicorn with
    ``--proxy-headers``/``--forwarded-allow-ips`` so this is the client's)."""
    client = getattr(request, "client", None) if request is not None else None
    return (getattr(client, "host", "") or "") if client is not None else ""


@dataclass(frozen=True)
class Account:
    """What a password check needs, read before the (slow, transaction-free) argon2 work."""

    user_id: str | None
    email: str
    password_hash: str | None
    locked_until: datetime | None
    totp_enabled: bool
    totp_secret: str | None

    @property
    def has_password(self) -> bool:
        """Whether the account has a password credential (else lockout is per address)."""
        return self.password_hash is not None


class _SecondFactorRefused(Exception):
    """Raised inside a transaction to roll it back when a one-time code was refused."""


def invalid_credentials() -> Unauthorized:
    """The one answer for an unknown email and for a wrong password (401)."""
    return Unauthorized("invalid email or password", code="invalid_credentials")


def totp_required(invalid: bool) -> Unauthorized:
    """401 ``totp_required``: the password was right, a valid second factor is missing."""
    if invalid:
        return Unauthorized("the two-factor code is not valid: type the current code from your authenticator app, "
                            "or a recovery code", code="totp_required", details={"reason": "invalid"})
    return Unauthorized("this account uses two-factor authentication: send totp_code (or a recovery_code)",
                        code="totp_required", details={"reason": "missing"})


def account_locked(retry_after: float) -> TooManyAttempts:
    """429 ``account_locked`` (the same for every address, existing or not)."""
    return TooManyAttempts("too many failed sign-ins: this account is locked for a while, try again later",
                           code="account_locked", retry_after=retry_after)


class PasswordAuth:
    """Registration, sign-in, password change and reset, email verification and TOTP."""

    def __init__(self, kernel: Kernel, settings: PasswordSettings) -> None:
        # A weak proxy: the plugin keeps one service per kernel without keeping kernels alive.
        self.kernel = kernel if isinstance(kernel, weakref.ProxyTypes) else weakref.proxy(kernel)
        self.settings = settings
        self.passwords = Passwords(settings)
        self.throttle = Throttle(self.kernel, settings)

    # -- registration and sign-in --------------------------------------------------------------

    def register(self, email: str, password: str, name: str = "", request: Any = None) -> dict[str, Any]:
        """Create a user (through ``kernel.identity``) with a password, and sign them in.

        :return: the token pair as JSON-compatible data.
        :raises Forbidden: ``registration_closed``.
        :raises InvalidInput: ``weak_password`` or ``invalid_email`` (422).
        :raises Conflict: ``email_taken`` (409).
        :raises TooManyAttempts: ``too_many_attempts`` (``ip_max_registrations`` per IP).
        """
        if not self.settings.registration_enabled:
            raise Forbidden("registration is closed on this server", code="registration_closed")
        check_password(password, email, min_length=self.settings.min_length)
        kernel = self.kernel
        ip = client_ip(request)
        now = kernel.now()
        with kernel.session() as session:
            retry = self.throttle.ip_retry_after(session, ip, (REGISTRATION,), self.settings.ip_max_registrations,
                                                 now)
        if retry is not None:
            raise TooManyAttempts("too many accounts were created from your network: try again later",
                                  code="too_many_attempts", retry_after=retry)
        digest = self.passwords.hash(password)
        with kernel.session() as session:
            # Written first, so the transaction has begun before create_user's savepoint (on
            # SQLite, a savepoint opening the transaction would commit it when released).
            self.throttle.record(session, REGISTRATION, ip, now)
            session.flush()
            user = kernel.identity.create_user(session, email, name=name or "", method=METHOD, request=request)
            session.add(PasswordCredential(user_id=user.id, password_hash=digest, failed_attempts=0,
                                           totp_enabled=False, created_at=now, password_changed_at=now))
            if self.settings.send_verification_on_register:
                self._issue_token(session, user.id, user.email, VERIFY_EMAIL, now)
            pair = kernel.sessions.issue(session, user.id, METHOD)
            kernel.audit.record(session, "auth.login", actor=user.id, actor_label=user.email, target_type="user",
                                target_id=user.id, details={"method": METHOD, "via": "register"}, request=request)
        return pair.to_dict()

    def login(self, email: str, password: str, totp_code: str | None = None, recovery_code: str | None = None,
              request: Any = None) -> dict[str, Any]:
        """Sign in with email and password (and a TOTP or recovery code when 2FA is on).

        :return: the token pair as JSON-compatible data.
        :raises Unauthorized: ``invalid_credentials`` (unknown email and wrong password alike)
            or ``totp_required`` (password right, second factor missing or invalid).
        :raises TooManyAttempts: ``account_locked`` or ``too_many_attempts`` (429).
        """
        return self._sign_in(email, password, totp_code, recovery_code, request, via="login",
                             finish=lambda session, user_id, method:
                             self.kernel.sessions.issue(session, user_id, method).to_dict())

    def authenticate_basic(self, email: str, password: str, request: Any = None) -> str:
        """Check an HTTP Basic ``email:password`` pair; return the user id.

        Accounts with 2FA are refused (``totp_required``): Basic cannot carry a second factor.
        Lockout, throttling and auditing are those of :meth:`login`.
        """
        return self._sign_in(email, password, None, None, request, via="basic",
                             finish=lambda session, user_id, method: user_id)

    def _sign_in(self, email: str, password: str, totp_code: str | None, recovery_code: str | None, request: Any,
                 *, via: str, finish: Callable[[Session, str, str], T]) -> T:
        kernel = self.kernel
        ip = client_ip(request)
        key = (email or "").strip().lower()[:320]
        self.passwords.warm()  # the dummy hash is made before any lookup, so no answer pays for it alone
        account = self._read_account(key, ip, request, action="auth.login", via=via)
        if not self.passwords.verify(account.password_hash, password):
            raise self._failed(account, ip, request, action="auth.login", reason="invalid_credentials",
                               error=invalid_credentials(), via=via)
        now = kernel.now()
        method, step, recovery = METHOD, None, None
        if account.totp_enabled:
            if via == "basic" or not (totp_code or recovery_code):
                kernel.audit.record_now("auth.login", outcome="failure", actor=account.user_id,
                                        actor_label=account.email, target_type="user",
                                        target_id=account.user_id or "",
                                        details={"method": METHOD, "via": via, "reason": "totp_required"},
                                        request=request)
                raise totp_required(invalid=False)
            if recovery_code:
                recovery, method = totp.normalize_recovery_code(recovery_code), METHOD + "+recovery_code"
            else:
                secret = kernel.secrets.decrypt(TOTP_PURPOSE, account.totp_secret or "")
                step, method = totp.match(secret, totp_code, now, self.settings.totp_window), METHOD + "+totp"
                if step is None:
                    raise self._failed(account, ip, request, action="auth.login", reason="invalid_totp_code",
                                       error=totp_required(invalid=True), via=via)
        new_hash = self.passwords.hash(password) if self.passwords.needs_rehash(account.password_hash or "") else None
        assert account.user_id is not None
        user_id = account.user_id
        details: dict[str, Any] = {"method": method, "via": via}
        try:
            with kernel.session() as session:
                if step is not None and not self._claim_step(session, user_id, step):
                    raise _SecondFactorRefused()
                if recovery is not None:
                    if not self._claim_recovery_code(session, user_id, recovery, now):
                        raise _SecondFactorRefused()
                    details["recovery_codes_left"] = self._recovery_codes_left(session, user_id)
                values: dict[str, Any] = {"last_login_at": now, "failed_attempts": 0, "locked_until": None}
                if new_hash is not None:
                    values["password_hash"] = new_hash
                    details["rehashed"] = True
                session.execute(update(PasswordCredential).where(PasswordCredential.user_id == user_id)
                                .values(**values))
                result = finish(session, user_id, method)
                kernel.audit.record(session, "auth.login", actor=user_id, actor_label=account.email,
                                    target_type="user", target_id=user_id, details=details, request=request)
        except _SecondFactorRefused:
            reason = "invalid_recovery_code" if recovery is not None else "totp_code_reused"
            raise self._failed(account, ip, request, action="auth.login", reason=reason,
                               error=totp_required(invalid=True), via=via) from None
        return result

    def _read_account(self, key: str, ip: str, request: Any, *, action: str, via: str) -> Account:
        """The account of an email address (a stand-in without password for unknown ones),
        after the per-IP throttle; refuses locked accounts."""
        kernel = self.kernel
        now = kernel.now()
        account = None
        with kernel.session() as session:
            retry = self.throttle.ip_retry_after(session, ip, FAILURES, self.settings.ip_max_failures, now)
            if retry is None:
                user = kernel.identity.user_by_email(session, key)
                credential = session.get(PasswordCredential, user.id) if user is not None else None
                if credential is not None:
                    locked = credential.locked_until if credential.locked_until and credential.locked_until > now \
                        else None
                else:
                    locked = self.throttle.subject_locked_until(session, self.throttle.subject(key), now)
                account = Account(
                    user_id=user.id if user is not None else None, email=user.email if user is not None else key,
                    password_hash=credential.password_hash if credential is not None else None, locked_until=locked,
                    totp_enabled=bool(credential is not None and credential.totp_enabled),
                    totp_secret=credential.totp_secret if credential is not None else None,
                )
        if account is None:
            assert retry is not None
            log.warning("sign-in attempts from %s throttled for %d s", ip, retry)
            kernel.audit.record_now(action, outcome="failure", actor_label=key,
                                    details={"method": METHOD, "via": via, "reason": "ip_throttled"}, request=request)
            raise TooManyAttempts("too many failed attempts from your network: try again later",
                                  code="too_many_attempts", retry_after=retry)
        if account.locked_until is not None:
            kernel.audit.record_now(action, outcome="failure", actor=account.user_id, actor_label=account.email,
                                    target_type="user" if account.user_id else "", target_id=account.user_id or "",
                                    details={"method": METHOD, "via": via, "reason": "account_locked"},
                                    request=request)
            raise account_locked((account.locked_until - now).total_seconds())
        return account

    def _failed(self, account: Account, ip: str, request: Any, *, action: str, reason: str, error: VendoError,
                via: str = "") -> VendoError:
        """Count a failed attempt (locking at the threshold) and audit it, in a transaction of
        its own that commits; return ``error`` for the caller to raise."""
        kernel = self.kernel
        settings = self.settings
        now = kernel.now()
        locked_until = None
        with kernel.session() as session:
            if account.has_password:
                self.throttle.record(session, LOGIN_FAILURE, ip, now)
                failures = session.execute(
                    update(PasswordCredential).where(PasswordCredential.user_id == account.user_id)
                    .values(failed_attempts=PasswordCredential.failed_attempts + 1, last_failed_at=now)
                    .returning(PasswordCredential.failed_attempts)
                ).scalar_one_or_none()
                if failures is not None and failures >= settings.lockout_threshold:
                    locked_until = now + timedelta(seconds=settings.lockout_duration)
                    session.execute(update(PasswordCredential).where(PasswordCredential.user_id == account.user_id)
                                    .values(locked_until=locked_until, failed_attempts=0))
            else:
                locked_until = self.throttle.subject_failed(session, self.throttle.subject(account.email.lower()),
                                                            ip, now)
            target = {"target_type": "user", "target_id": account.user_id} if account.user_id else {}
            details = {"method": METHOD, "reason": reason, **({"via": via} if via else {})}
            kernel.audit.record(session, action, outcome="failure", actor=account.user_id, actor_label=account.email,
                                details=details, request=request, **target)
            if locked_until is not None:
                kernel.audit.record(session, "auth.account_locked", outcome="failure", actor=account.user_id,
                                    actor_label=account.email, details={"until": locked_until.isoformat(),
                                                                        "failures": settings.lockout_threshold},
                                    request=request, **target)
        if locked_until is not None:
            log.warning("sign-in locked for %d s after %d consecutive failures (user %s)", settings.lockout_duration,
                        settings.lockout_threshold, account.user_id or "unknown")
        return error

    # -- password change and reset -------------------------------------------------------------

    def change_password(self, user_id: str, current_password: str, new_password: str,
                        request: Any = None) -> dict[str, Any]:
        """Change a signed-in user's password; every session of theirs ends and a new token
        pair is returned for the caller.

        :raises Conflict: ``no_password``.
        :raises Forbidden: ``wrong_password`` (counted towards the lockout).
        :raises InvalidInput: ``weak_password``.
        :raises TooManyAttempts: ``account_locked``.
        """
        kernel = self.kernel
        ip = client_ip(request)
        account = self._account_of(user_id, request, action="auth.password_change")
        if not self.passwords.verify(account.password_hash, current_password):
            raise self._failed(account, ip, request, action="auth.password_change", reason="wrong_password",
                               error=Forbidden("the current password is not correct", code="wrong_password"))
        check_password(new_password, account.email, min_length=self.settings.min_length)
        if hmac.compare_digest(current_password.encode(), new_password.encode()):
            raise weak("the new password must differ from the current one", "same_as_current")
        digest = self.passwords.hash(new_password)
        now = kernel.now()
        with kernel.session() as session:
            session.execute(update(PasswordCredential).where(PasswordCredential.user_id == user_id).values(
                password_hash=digest, password_changed_at=now, failed_attempts=0, locked_until=None))
            self._drop_pending_tokens(session, user_id, RESET)
            kernel.sessions.revoke_user(session, user_id)
            pair = kernel.sessions.issue(session, user_id, METHOD)
            kernel.audit.record(session, "auth.password_changed", actor=user_id, actor_label=account.email,
                                target_type="user", target_id=user_id, request=request)
            kernel.outbox.publish(session, PASSWORD_CHANGED_EVENT,
                                  {"user_id": user_id, "email": account.email, "via": "change"})
        return pair.to_dict()

    def unlock(self, email: str) -> bool:
        """The operator lifts an address's lockout at once (the failure count starts again);
        return whether it was locked. Audited as ``auth.password.unlocked``.

        :raises NotFound: ``user_not_found`` (an operator, not a visitor, asks: no enumeration
            concern).
        """
        kernel = self.kernel
        now = kernel.now()
        with kernel.session() as session:
            user = kernel.identity.user_by_email(session, email)
            if user is None:
                raise NotFound(f"no account uses {email.strip()!r}", code="user_not_found")
            credential = session.get(PasswordCredential, user.id)
            locked = credential is not None and credential.locked_until is not None and credential.locked_until > now
            if credential is not None:
                credential.locked_until, credential.failed_attempts = None, 0
            kernel.audit.record(session, "auth.password.unlocked", actor_label="operator", target_type="user",
                                target_id=user.id, details={"was_locked": locked})
        return locked

    def forgot_password(self, email: str, request: Any = None) -> None:
        """Send a reset token through the outbox when the address has an account; the
        caller answers the same either way.

        At most one token per ``token_request_interval`` per account (later requests are
        silently dropped); requests per IP are limited by ``ip_max_reset_requests``.

        :raises TooManyAttempts: ``too_many_attempts`` (per IP, whatever the address).
        """
        kernel = self.kernel
        ip = client_ip(request)
        key = (email or "").strip().lower()[:320]
        now = kernel.now()
        with kernel.session() as session:
            retry = self.throttle.ip_retry_after(session, ip, (RESET_REQUEST,), self.settings.ip_max_reset_requests,
                                                 now)
            if retry is None:
                self.throttle.record(session, RESET_REQUEST, ip, now)
                user = kernel.identity.user_by_email(session, key)
                if user is not None and self._recent_token(session, user.id, RESET, now) is None:
                    expires_at = self._issue_token(session, user.id, user.email, RESET, now)
                    kernel.audit.record(session, "auth.password_reset_requested", actor=user.id,
                                        actor_label=user.email, target_type="user", target_id=user.id,
                                        details={"expires_at": expires_at.isoformat()}, request=request)
        if retry is not None:
            raise TooManyAttempts("too many password-reset requests from your network: try again later",
                                  code="too_many_attempts", retry_after=retry)

    def reset_password(self, token: str, password: str, request: Any = None) -> None:
        """Set a new password with a reset token (single use). Creates the credential of an
        account that had none, unlocks the account, marks its email verified (the token
        proved it) and ends every session.

        :raises InvalidInput: ``invalid_token`` (400) or ``weak_password`` (422).
        :raises Gone: ``token_used`` or ``token_expired`` (410).
        """
        kernel = self.kernel
        row, email = self._check_token(token, RESET, request, action="auth.password_reset")
        check_password(password, email, min_length=self.settings.min_length)
        digest = self.passwords.hash(password)
        now = kernel.now()
        user_id = row.user_id
        with kernel.session() as session:
            self._claim_token(session, row.id, now)
            credential = session.get(PasswordCredential, user_id)
            if credential is None:
                session.add(PasswordCredential(user_id=user_id, password_hash=digest, failed_attempts=0,
                                               totp_enabled=False, created_at=now, password_changed_at=now))
            else:
                credential.password_hash = digest
                credential.password_changed_at = now
                credential.failed_attempts = 0
                credential.locked_until = None
            self._drop_pending_tokens(session, user_id, RESET)
            kernel.identity.mark_email_verified(session, user_id)
            kernel.sessions.revoke_user(session, user_id)
            kernel.audit.record(session, "auth.password_reset", actor=user_id, actor_label=email, target_type="user",
                                target_id=user_id, request=request)
            kernel.outbox.publish(session, PASSWORD_CHANGED_EVENT, {"user_id": user_id, "email": email, "via": "reset"})

    # -- email verification ---------------------------------------------------------------------

    def request_verification(self, user_id: str, request: Any = None) -> dict[str, Any]:
        """Send a verification token to a signed-in user's address through the outbox.

        :raises Conflict: ``already_verified``.
        :raises TooManyAttempts: ``too_many_requests`` (one email per ``token_request_interval``).
        """
        kernel = self.kernel
        now = kernel.now()
        with kernel.session() as session:
            user = kernel.identity.user(session, user_id)
            if user.email_verified_at is not None:
                raise Conflict("your email address is already verified", code="already_verified")
            recent = self._recent_token(session, user_id, VERIFY_EMAIL, now)
            if recent is not None:
                wait = recent + timedelta(seconds=self.settings.token_request_interval) - now
                raise TooManyAttempts("a verification email was sent moments ago: check your inbox, or ask again "
                                      "later", code="too_many_requests", retry_after=wait.total_seconds())
            expires_at = self._issue_token(session, user.id, user.email, VERIFY_EMAIL, now)
            kernel.audit.record(session, "auth.email_verification_requested", actor=user.id, actor_label=user.email,
                                target_type="user", target_id=user.id,
                                details={"expires_at": expires_at.isoformat()}, request=request)
            return {"email": user.email, "expires_at": expires_at.isoformat()}

    def verify_email(self, token: str, request: Any = None) -> None:
        """Mark the address a verification token was sent to as verified (single use).

        :raises InvalidInput: ``invalid_token`` (400).
        :raises Gone: ``token_used`` or ``token_expired`` (410).
        """
        kernel = self.kernel
        row, email = self._check_token(token, VERIFY_EMAIL, request, action="auth.email_verification")
        now = kernel.now()
        with kernel.session() as session:
            self._claim_token(session, row.id, now)
            self._drop_pending_tokens(session, row.user_id, VERIFY_EMAIL)
            kernel.identity.mark_email_verified(session, row.user_id)
            kernel.audit.record(session, "auth.email_verified", actor=row.user_id, actor_label=email,
                                target_type="user", target_id=row.user_id, request=request)

    # -- two-factor authentication -----------------------------------------------------------------

    def totp_setup(self, user_id: str, request: Any = None) -> dict[str, Any]:
        """Start 2FA: a new TOTP seed, stored encrypted and pending until :meth:`totp_enable`.

        :return: ``secret``, ``otpauth_uri`` (for a QR code), ``issuer``, ``digits``, ``period``;
            the secret is shown this once.
        :raises Conflict: ``no_password`` or ``totp_already_enabled``.
        """
        kernel = self.kernel
        with kernel.session() as session:
            user = kernel.identity.user(session, user_id)
            credential = self._credential(session, user_id)
            if credential.totp_enabled:
                raise Conflict("two-factor authentication is already enabled: disable it first",
                               code="totp_already_enabled")
            secret = totp.new_secret()
            credential.totp_secret = kernel.secrets.encrypt(TOTP_PURPOSE, secret)
            credential.totp_last_step = None
            kernel.audit.record(session, "auth.2fa_setup_started", actor=user_id, actor_label=user.email,
                                target_type="user", target_id=user_id, request=request)
            email = user.email
        issuer = self.settings.totp_issuer
        return {"secret": secret, "otpauth_uri": totp.provisioning_uri(secret, email, issuer), "issuer": issuer,
                "digits": totp.DIGITS, "period": totp.INTERVAL}

    def totp_enable(self, user_id: str, code: str, request: Any = None) -> dict[str, Any]:
        """Turn 2FA on with a code from the pending seed; return the recovery codes (shown
        this once, stored as keyed hashes).

        :raises Conflict: ``no_password``, ``totp_already_enabled`` or ``totp_setup_required``.
        :raises InvalidInput: ``invalid_totp_code``.
        """
        kernel = self.kernel
        now = kernel.now()
        with kernel.session() as session:
            user = kernel.identity.user(session, user_id)
            credential = self._credential(session, user_id)
            if credential.totp_enabled:
                raise Conflict("two-factor authentication is already enabled", code="totp_already_enabled")
            if credential.totp_secret is None:
                raise Conflict("start with POST /auth/2fa/setup", code="totp_setup_required")
            secret = kernel.secrets.decrypt(TOTP_PURPOSE, credential.totp_secret)
            step = totp.match(secret, code, now, self.settings.totp_window)
            if step is None:
                raise InvalidInput("the code is not valid: check the time on your device and type the current code",
                                   code="invalid_totp_code")
            credential.totp_enabled = True
            credential.totp_enabled_at = now
            credential.totp_last_step = step
            codes = self._replace_recovery_codes(session, user_id, now)
            kernel.audit.record(session, "auth.2fa_enabled", actor=user_id, actor_label=user.email,
                                target_type="user", target_id=user_id, request=request)
            kernel.outbox.publish(session, TOTP_ENABLED_EVENT, {"user_id": user_id, "email": user.email})
        return {"recovery_codes": codes}

    def totp_disable(self, user_id: str, password: str, code: str, request: Any = None) -> None:
        """Turn 2FA off, given the password and a current TOTP code (or a recovery code).

        :raises Conflict: ``no_password`` or ``totp_not_enabled``.
        :raises Forbidden: ``wrong_password``; :raises InvalidInput: ``invalid_totp_code``
            (both counted towards the lockout).
        :raises TooManyAttempts: ``account_locked``.
        """
        kernel = self.kernel
        ip = client_ip(request)
        account = self._account_of(user_id, request, action="auth.2fa_disable")
        if not account.totp_enabled:
            raise Conflict("two-factor authentication is not enabled", code="totp_not_enabled")
        if not self.passwords.verify(account.password_hash, password):
            raise self._failed(account, ip, request, action="auth.2fa_disable", reason="wrong_password",
                               error=Forbidden("the password is not correct", code="wrong_password"))
        now = kernel.now()
        invalid = InvalidInput("the code is not valid: type the current code from your authenticator app, or a "
                               "recovery code", code="invalid_totp_code")
        secret = kernel.secrets.decrypt(TOTP_PURPOSE, account.totp_secret or "")
        step = totp.match(secret, code, now, self.settings.totp_window)
        recovery = totp.normalize_recovery_code(code) if step is None else None
        try:
            with kernel.session() as session:
                if step is not None:
                    if not self._claim_step(session, user_id, step):
                        raise _SecondFactorRefused()
                elif not recovery or not self._claim_recovery_code(session, user_id, recovery, now):
                    raise _SecondFactorRefused()
                session.execute(update(PasswordCredential).where(PasswordCredential.user_id == user_id).values(
                    totp_enabled=False, totp_secret=None, totp_last_step=None, totp_enabled_at=None))
                session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
                kernel.audit.record(session, "auth.2fa_disabled", actor=user_id, actor_label=account.email,
                                    target_type="user", target_id=user_id, request=request)
                kernel.outbox.publish(session, TOTP_DISABLED_EVENT, {"user_id": user_id, "email": account.email})
        except _SecondFactorRefused:
            raise self._failed(account, ip, request, action="auth.2fa_disable", reason="invalid_totp_code",
                               error=invalid) from None

    # -- helpers -------------------------------------------------------------------------------------

    def _credential(self, session: Session, user_id: str) -> PasswordCredential:
        credential = session.get(PasswordCredential, user_id)
        if credential is None:
            raise Conflict("this account has no password: set one with POST /auth/password/forgot",
                           code="no_password")
        return credential

    def _account_of(self, user_id: str, request: Any, *, action: str) -> Account:
        """A signed-in user's account, refused while locked."""
        kernel = self.kernel
        now = kernel.now()
        with kernel.session() as session:
            user = kernel.identity.user(session, user_id)
            credential = self._credential(session, user_id)
            locked = credential.locked_until if credential.locked_until and credential.locked_until > now else None
            account = Account(user_id=user.id, email=user.email, password_hash=credential.password_hash,
                              locked_until=locked, totp_enabled=credential.totp_enabled,
                              totp_secret=credential.totp_secret)
        if account.locked_until is not None:
            kernel.audit.record_now(action, outcome="failure", actor=user_id, actor_label=account.email,
                                    target_type="user", target_id=user_id,
                                    details={"method": METHOD, "reason": "account_locked"}, request=request)
            raise account_locked((account.locked_until - now).total_seconds())
        return account

    def _claim_step(self, session: Session, user_id: str, step: int) -> bool:
        """Accept a TOTP time step once: only if newer than the last one accepted (no replay)."""
        claimed = session.execute(
            update(PasswordCredential).where(
                PasswordCredential.user_id == user_id, PasswordCredential.totp_enabled.is_(True),
                or_(PasswordCredential.totp_last_step.is_(None), PasswordCredential.totp_last_step < step),
            ).values(totp_last_step=step)
        )
        return claimed.rowcount == 1

    def _recovery_hash(self, user_id: str, code: str) -> str:
        return self.kernel.secrets.keyed_hash(RECOVERY_PURPOSE, f"{user_id}:{code}")

    def _claim_recovery_code(self, session: Session, user_id: str, code: str, now: datetime) -> bool:
        """Use up one recovery code (atomically: a code works once, even under concurrency)."""
        claimed = session.execute(
            update(RecoveryCode).where(RecoveryCode.user_id == user_id,
                                       RecoveryCode.code_hash == self._recovery_hash(user_id, code),
                                       RecoveryCode.used_at.is_(None)).values(used_at=now)
        )
        return claimed.rowcount == 1

    def _recovery_codes_left(self, session: Session, user_id: str) -> int:
        return session.scalar(select(func.count()).select_from(RecoveryCode)
                              .where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))) or 0

    def _replace_recovery_codes(self, session: Session, user_id: str, now: datetime) -> list[str]:
        session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
        codes = totp.new_recovery_codes(self.settings.recovery_codes)
        session.add_all([RecoveryCode(user_id=user_id, created_at=now,
                                      code_hash=self._recovery_hash(user_id, totp.normalize_recovery_code(code)))
                         for code in codes])
        return codes

    def _issue_token(self, session: Session, user_id: str, email: str, purpose: str, now: datetime) -> datetime:
        """A new single-use token (replacing the pending ones of that purpose), emailed
        through ``kernel.notify`` in the caller's transaction; return its expiry.

        The token is stored as a keyed hash; its link travels sealed (``secret_context``) in
        the ``notification.requested`` event, opened only by the notifier. The domain event
        (``auth.password_reset.requested``...) names the token's id, never the token."""
        ttl = self.settings.reset_token_ttl if purpose == RESET else self.settings.verify_token_ttl
        session.execute(delete(SingleUseToken).where(
            SingleUseToken.user_id == user_id, SingleUseToken.purpose == purpose,
            or_(SingleUseToken.used_at.is_(None), SingleUseToken.expires_at < now)))
        token = TOKEN_PREFIXES[purpose] + secrets.token_urlsafe(32)
        token_id = f"tok_{uuid.uuid4().hex}"
        expires_at = now + timedelta(seconds=ttl)
        session.add(SingleUseToken(
            id=token_id, user_id=user_id, purpose=purpose, email_key=email.lower(),
            token_hash=self.kernel.secrets.keyed_hash(TOKEN_PURPOSE, token), created_at=now, expires_at=expires_at))
        self.kernel.outbox.publish(session, TOKEN_EVENTS[purpose], {
            "user_id": user_id, "email": email, "token_id": token_id, "expires_at": expires_at.isoformat()})
        template, link_name = TOKEN_TEMPLATES[purpose]
        link = self.settings.reset_url if purpose == RESET else self.settings.verify_email_url
        self.kernel.notify(session, to=email, template=template, idempotency_key=f"{template}:{token_id}",
                           context={"expires_minutes": ttl // 60},
                           secret_context={link_name: self.kernel.notifications.link(link, token=token)})
        return expires_at

    def _recent_token(self, session: Session, user_id: str, purpose: str, now: datetime) -> datetime | None:
        """When a pending token of that purpose was issued less than ``token_request_interval`` ago."""
        interval = self.settings.token_request_interval
        if interval <= 0:
            return None
        return session.scalar(select(func.max(SingleUseToken.created_at)).where(
            SingleUseToken.user_id == user_id, SingleUseToken.purpose == purpose, SingleUseToken.used_at.is_(None),
            SingleUseToken.created_at > now - timedelta(seconds=interval)))

    def _drop_pending_tokens(self, session: Session, user_id: str, purpose: str) -> None:
        session.execute(delete(SingleUseToken).where(SingleUseToken.user_id == user_id,
                                                     SingleUseToken.purpose == purpose,
                                                     SingleUseToken.used_at.is_(None)))

    def _check_token(self, token: str, purpose: str, request: Any, *, action: str) -> tuple[SingleUseToken, str]:
        """The token row and the address it was sent to, if the token is valid now.

        Unknown tokens count against the caller's IP like failed sign-ins.
        """
        kernel = self.kernel
        ip = client_ip(request)
        now = kernel.now()
        row, email = None, ""
        with kernel.session() as session:
            retry = self.throttle.ip_retry_after(session, ip, FAILURES, self.settings.ip_max_failures, now)
            if retry is None and isinstance(token, str) and token.startswith(TOKEN_PREFIXES[purpose]):
                row = session.scalar(select(SingleUseToken).where(
                    SingleUseToken.token_hash == kernel.secrets.keyed_hash(TOKEN_PURPOSE, token)))
                if row is not None:
                    user = kernel.identity.user(session, row.user_id)
                    email = user.email
                    if row.purpose != purpose or user.email_key != row.email_key:
                        row = None  # another purpose, or sent to an address the account no longer has
        if retry is not None:
            kernel.audit.record_now(action, outcome="failure", details={"reason": "ip_throttled"}, request=request)
            raise TooManyAttempts("too many failed attempts from your network: try again later",
                                  code="too_many_attempts", retry_after=retry)
        if row is None:
            with kernel.session() as session:
                self.throttle.record(session, INVALID_TOKEN, ip, now)
                kernel.audit.record(session, action, outcome="failure", details={"reason": "invalid_token"},
                                    request=request)
            raise InvalidInput("this link is not valid: ask for a new one", code="invalid_token", status_code=400)
        target = {"actor": row.user_id, "actor_label": email, "target_type": "user", "target_id": row.user_id}
        if row.used_at is not None:
            kernel.audit.record_now(action, outcome="failure", details={"reason": "token_used"}, request=request,
                                    **target)
            raise Gone("this link was already used: ask for a new one if needed", code="token_used")
        if row.expires_at <= now:
            kernel.audit.record_now(action, outcome="failure", details={"reason": "token_expired"}, request=request,
                                    **target)
            raise Gone("this link expired: ask for a new one", code="token_expired")
        return row, email

    def _claim_token(self, session: Session, token_id: str, now: datetime) -> None:
        """Mark a token used, atomically: a concurrent use of the same token loses (410)."""
        claimed = session.execute(update(SingleUseToken).where(SingleUseToken.id == token_id,
                                                               SingleUseToken.used_at.is_(None))
                                  .values(used_at=now))
        if claimed.rowcount != 1:
            raise Gone("this link was already used: ask for a new one if needed", code="token_used")
