"""ID token validation, on tokens signed here with keys generated for the test."""

from __future__ import annotations

import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey, RSAKey

from vendo_auth_oidc.idtoken import IdTokenError, UnknownSigningKey, validate_id_token

ISSUER = "https://idp.example.test"
CLIENT = "vendo-client"
NONCE = "n-0S6_WzA2Mj"


@pytest.fixture(scope="module")
def key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "key-1", "use": "sig"})


@pytest.fixture(scope="module")
def jwks(key: RSAKey) -> dict[str, Any]:
    return KeySet([key]).as_dict(private=False)


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    values = {"iss": ISSUER, "sub": "248289761001", "aud": CLIENT, "exp": now + 300, "iat": now, "nonce": NONCE,
              "email": "ada@example.test", "email_verified": True}
    values.update(changes)
    return {k: v for k, v in values.items() if v is not None}


def sign(payload: dict[str, Any], key: Any, alg: str = "RS256", kid: str | None = "key-1") -> str:
    header = {"alg": alg, **({"kid": kid} if kid else {})}
    return jwt.encode(header, payload, key, algorithms=[alg])


def check(token: str, jwks: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    arguments = {"jwks": jwks, "issuer": ISSUER, "client_id": CLIENT, "nonce": NONCE, "now": int(time.time()),
                 "leeway": 30}
    arguments.update(overrides)
    return validate_id_token(token, **arguments)


def test_a_valid_token_gives_its_claims(key: RSAKey, jwks: dict[str, Any]) -> None:
    result = check(sign(claims(), key), jwks)
    assert result["sub"] == "248289761001" and result["email"] == "ada@example.test"


def test_wrong_nonce_is_rejected(key: RSAKey, jwks: dict[str, Any]) -> None:
    with pytest.raises(IdTokenError, match="nonce"):
        check(sign(claims(nonce="replayed-nonce"), key), jwks)


def test_missing_nonce_is_rejected(key: RSAKey, jwks: dict[str, Any]) -> None:
    with pytest.raises(IdTokenError, match="missing claim 'nonce'"):
        check(sign(claims(nonce=None), key), jwks)


def test_wrong_audience_is_rejected(key: RSAKey, jwks: dict[str, Any]) -> None:
    with pytest.raises(IdTokenError, match="aud"):
        check(sign(claims(aud="another-client"), key), jwks)


def test_several_audiences_need_azp_to_be_us(key: RSAKey, jwks: dict[str, Any]) -> None:
    assert check(sign(claims(aud=[CLIENT, "api"], azp=CLIENT), key), jwks)["sub"]
    with pytest.raises(IdTokenError, match="azp"):
        check(sign(claims(aud=[CLIENT, "api"]), key), jwks)
    with pytest.raises(IdTokenError, match="azp"):
        check(sign(claims(aud=[CLIENT, "api"], azp="api"), key), jwks)


def test_wrong_issuer_is_rejected(key: RSAKey, jwks: dict[str, Any]) -> None:
    with pytest.raises(IdTokenError, match="iss"):
        check(sign(claims(iss="https://evil.example.test"), key), jwks)


def test_expired_token_is_rejected_beyond_the_leeway(key: RSAKey, jwks: dict[str, Any]) -> None:
    now = int(time.time())
    assert check(sign(claims(exp=now - 10), key), jwks, leeway=30)  # within the clock skew
    with pytest.raises(IdTokenError, match="expired"):
        check(sign(claims(exp=now - 120, iat=now - 600), key), jwks, leeway=30)


def test_token_from_the_future_is_rejected(key: RSAKey, jwks: dict[str, Any]) -> None:
    now = int(time.time())
    with pytest.raises(IdTokenError, match="iat"):
        check(sign(claims(iat=now + 3600, exp=now + 7200), key), jwks)


def test_the_current_time_is_the_callers(key: RSAKey, jwks: dict[str, Any]) -> None:
    token = sign(claims(), key)
    with pytest.raises(IdTokenError, match="expired"):
        check(token, jwks, now=int(time.time()) + 3600)


def test_missing_subject_is_rejected(key: RSAKey, jwks: dict[str, Any]) -> None:
    with pytest.raises(IdTokenError, match="sub"):
        check(sign(claims(sub=None), key), jwks)


def test_signature_by_another_key_is_rejected(jwks: dict[str, Any]) -> None:
    impostor = RSAKey.generate_key(2048, parameters={"kid": "key-1"})
    with pytest.raises(IdTokenError, match="bad signature"):
        check(sign(claims(), impostor), jwks)


def test_tampered_payload_is_rejected(key: RSAKey, jwks: dict[str, Any]) -> None:
    header, payload, signature = sign(claims(), key).split(".")
    other = sign(claims(sub="someone-else"), key).split(".")[1]
    with pytest.raises(IdTokenError, match="bad signature"):
        check(f"{header}.{other}.{signature}", jwks)
    assert payload != other


def test_unknown_kid_asks_for_a_jwks_refresh(jwks: dict[str, Any]) -> None:
    rotated = RSAKey.generate_key(2048, parameters={"kid": "key-2"})
    with pytest.raises(UnknownSigningKey):
        check(sign(claims(), rotated, kid="key-2"), jwks)


def test_symmetric_and_none_algorithms_are_refused(key: RSAKey, jwks: dict[str, Any]) -> None:
    secret = OctKey.import_key("a-client-secret-that-is-long-enough-for-hs256")
    with pytest.raises(IdTokenError, match="not accepted"):
        check(sign(claims(), secret, alg="HS256"), jwks)
    header, payload, _ = sign(claims(), key).split(".")
    none_header = "eyJhbGciOiJub25lIn0"  # {"alg":"none"}
    with pytest.raises(IdTokenError, match="not accepted"):
        check(f"{none_header}.{payload}.", jwks)
    assert header


def test_algorithms_the_provider_does_not_advertise_are_refused(key: RSAKey, jwks: dict[str, Any]) -> None:
    with pytest.raises(IdTokenError, match="not accepted"):
        check(sign(claims(), key), jwks, algorithms=["ES256"])


def test_ec_keys_and_tokens_without_kid(jwks: dict[str, Any]) -> None:
    ec = ECKey.generate_key("P-256", parameters={"kid": "ec-1"})
    both = {"keys": [*jwks["keys"], ec.as_dict(private=False)]}
    assert check(sign(claims(), ec, alg="ES256", kid=None), both)["sub"]


def test_at_hash_is_checked_when_present(key: RSAKey, jwks: dict[str, Any]) -> None:
    from authlib.oidc.core.util import create_half_hash

    at_hash = create_half_hash("the-access-token", "RS256").decode()
    token = sign(claims(at_hash=at_hash), key)
    assert check(token, jwks, access_token="the-access-token")
    with pytest.raises(IdTokenError, match="at_hash"):
        check(token, jwks, access_token="another-access-token")


def test_microsoft_tenant_issuer_template(key: RSAKey, jwks: dict[str, Any]) -> None:
    template = "https://login.microsoftonline.com/{tenantid}/v2.0"
    tenant = "9188040d-6c67-4c5b-b112-36a304b66dad"
    good = claims(iss=f"https://login.microsoftonline.com/{tenant}/v2.0", tid=tenant)
    assert check(sign(good, key), jwks, issuer=template)["tid"] == tenant
    with pytest.raises(IdTokenError, match="iss"):
        check(sign(claims(iss=f"https://login.microsoftonline.com/{tenant}/v2.0", tid="other"), key), jwks,
              issuer=template)
    with pytest.raises(IdTokenError, match="iss"):
        check(sign(claims(iss="https://evil.example/v2.0"), key), jwks, issuer=template)


def test_garbage_is_rejected(jwks: dict[str, Any]) -> None:
    for token in ("", "abc", "a.b", "!!!.???.###"):
        with pytest.raises(IdTokenError):
            check(token, jwks)
    with pytest.raises(IdTokenError, match="JWKS"):
        check(sign(claims(), RSAKey.generate_key(2048)), {"keys": [{"kty": "nope"}]})
