"""ID token validation: signature against the provider's JWKS, then the OpenID claims.

The signature is checked with joserfc (the JOSE library Authlib itself uses) and the claims
with Authlib's :class:`authlib.oidc.core.CodeIDToken`: ``iss``, ``aud`` (and ``azp`` when
several audiences), ``exp``, ``iat``, ``nonce`` and ``at_hash`` (when present). Only
asymmetric algorithms are accepted: ``none`` and the ``HS*`` family never are.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Collection, Mapping
from typing import Any

#: Signature algorithms accepted for ID tokens (verified with a public key from the JWKS).
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
                         "EdDSA", "Ed25519")

#: Microsoft's multi-tenant issuers are templates: ``https://login.microsoftonline.com/{tenantid}/v2.0``.
TENANT_PLACEHOLDER = "{tenantid}"


class IdTokenError(Exception):
    """The ID token is not acceptable; the message says why (never the token itself)."""


class UnknownSigningKey(IdTokenError):
    """No key of the JWKS has the token's ``kid``: the provider may have rotated its keys."""


def token_header(id_token: str) -> dict[str, Any]:
    """The JOSE header of a compact JWS, unverified.

    :raises IdTokenError: not a compact JWS.
    """
    if not isinstance(id_token, str) or id_token.count(".") != 2:
        raise IdTokenError("not a signed JWT")
    encoded = id_token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    except (ValueError, TypeError):
        raise IdTokenError("malformed JWT header") from None
    if not isinstance(header, dict):
        raise IdTokenError("malformed JWT header")
    return header


def _issuer_option(issuer: str) -> dict[str, Any]:
    """Claims option for ``iss``: an exact value, or Microsoft's ``{tenantid}`` template
    filled with the token's own ``tid`` claim (as Microsoft documents)."""
    if TENANT_PLACEHOLDER not in issuer:
        return {"essential": True, "value": issuer}

    def matches(claims: Mapping[str, Any], value: Any) -> bool:
        tenant = claims.get("tid")
        return isinstance(tenant, str) and bool(tenant) and value == issuer.replace(TENANT_PLACEHOLDER, tenant)

    return {"essential": True, "validate": matches}


def validate_id_token(
    id_token: str,
    *,
    jwks: Mapping[str, Any],
    issuer: str,
    client_id: str,
    nonce: str,
    now: int,
    leeway: int = 60,
    algorithms: Collection[str] | None = None,
    access_token: str | None = None,
) -> dict[str, Any]:
    """Verify ``id_token`` and return its claims.

    :param jwks: the provider's JSON Web Key Set (``{"keys": [...]}``).
    :param issuer: the expected ``iss`` (the discovery document's ``issuer``).
    :param client_id: the expected audience.
    :param nonce: the nonce sent in the authorization request; the token must carry it.
    :param now: the current time (seconds since the epoch) for ``exp`` and ``iat``.
    :param leeway: clock skew tolerated, in seconds.
    :param algorithms: the provider's advertised signing algorithms (intersected with
        :data:`ASYMMETRIC_ALGORITHMS`); ``None`` means all of those.
    :param access_token: the access token issued with it, to check ``at_hash`` when present.
    :raises UnknownSigningKey: the JWKS has no key for the token's ``kid``.
    :raises IdTokenError: anything else wrong, with the reason.
    """
    from authlib.oidc.core import CodeIDToken
    from joserfc import jwt
    from joserfc.errors import ClaimError, InvalidKeyIdError, JoseError
    from joserfc.jwk import KeySet

    allowed = [a for a in ASYMMETRIC_ALGORITHMS if algorithms is None or a in algorithms]
    header = token_header(id_token)
    alg = header.get("alg")
    if alg not in allowed:
        raise IdTokenError(f"signature algorithm {str(alg)[:20]!r} is not accepted")
    try:
        key_set = KeySet.import_key_set(dict(jwks))  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError, KeyError):
        raise IdTokenError("the provider's JWKS cannot be read") from None
    candidates: list[Any]
    if header.get("kid") is None and len(key_set.keys) > 1:
        candidates = [KeySet([key]) for key in key_set.keys]  # no kid: try each key of the set
    else:
        candidates = [key_set]
    token = None
    for candidate in candidates:
        try:
            token = jwt.decode(id_token, candidate, algorithms=allowed)
            break
        except InvalidKeyIdError:
            if len(candidates) == 1:
                raise UnknownSigningKey(f"no key with kid {str(header.get('kid'))[:60]!r} in the provider's JWKS") \
                    from None
        except (JoseError, ValueError, TypeError):
            continue
    if token is None:
        raise IdTokenError("bad signature")
    options: dict[str, Any] = {"iss": _issuer_option(issuer), "aud": {"essential": True, "value": client_id},
                               "sub": {"essential": True}}
    params: dict[str, Any] = {"nonce": nonce, "client_id": client_id}
    if access_token:
        params["access_token"] = access_token
    claims = CodeIDToken(token.claims, token.header, options, params)
    try:
        claims.validate(now=now, leeway=leeway)
    except ClaimError as exc:
        raise IdTokenError(_claim_reason(exc)) from None
    except JoseError as exc:
        raise IdTokenError(f"invalid claims ({exc.error})") from None
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise IdTokenError("no subject")
    return dict(claims)


def _claim_reason(exc: Exception) -> str:
    """A short reason naming the claim (``invalid claim 'nonce'``, ``token expired``...)."""
    name = type(exc).__name__
    claim = getattr(exc, "claim", None)
    if name == "ExpiredTokenError":
        return "expired"
    if name == "MissingClaimError":
        return f"missing claim {claim!r}"
    if claim:
        return f"invalid claim {claim!r}"
    description = getattr(exc, "description", None) or str(exc)
    return description[:120]
