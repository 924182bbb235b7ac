"""The password policy: what a new password must be, each refusal naming its rule.

Rules, checked in this order (the first broken one is reported):

- ``min_length``: at least ``min_length`` characters (10 by default);
- ``not_email``: not the account's email address, nor the part before the ``@``;
- ``common_password``: not one of the most common passwords (:data:`COMMON_PASSWORDS`,
  compared case-insensitively);
- ``character_classes``: not all from one class (lower-case letters, upper-case letters,
  digits, anything else).
"""

from __future__ import annotations

from vendo import InvalidInput

#: The most common passwords of public breach corpora that are long enough to pass the
#: length rule, plus the classics, lower-cased.
COMMON_PASSWORDS = frozenset({
    "123456", "password", "12345678", "qwerty", "123456789", "12345", "111111", "1234567", "iloveyou",
    "admin", "welcome", "monkey", "dragon", "letmein", "football", "baseball", "sunshine", "princess",
    "superman", "trustno1", "passw0rd", "master", "shadow", "abc123", "qwerty123", "1q2w3e4r",
    "1234567890", "0123456789", "0987654321", "9876543210", "1111111111", "0000000000", "1212121212",
    "123123123123", "123456789012", "12345678910", "qwertyuiop", "asdfghjkl1", "zxcvbnm123",
    "password12", "password123", "password1234", "password12345", "password1!", "password!1",
    "password!!", "password01", "password99", "passw0rd12", "passw0rd123", "p@ssw0rd12", "p@ssw0rd123",
    "p@ssword123", "p@55w0rd123", "pa$$w0rd123", "mypassword1", "mypassword123", "newpassword1",
    "changeme123", "changeme1234", "welcome123", "welcome1234", "welcome2024", "welcome2025",
    "welcome2026", "letmein123", "letmein1234", "iloveyou12", "iloveyou123", "iloveyou1!",
    "qwerty1234", "qwerty12345", "qwerty123456", "qwertyuiop1", "qwertyuiop123", "qwerty123!",
    "1q2w3e4r5t", "1q2w3e4r5t6y", "1qaz2wsx3edc", "1qazxsw23edc", "q1w2e3r4t5", "q1w2e3r4t5y6",
    "zaq12wsx3edc", "a1b2c3d4e5", "abc1234567", "abcd123456", "abcd1234!", "a123456789",
    "123456789a", "123456789q", "1234567890a", "1234567890q", "123qweasdzxc", "qweasdzxc123",
    "admin12345", "admin123456", "administrator", "administrator1", "root123456", "football123",
    "baseball123", "monkey12345", "dragon12345", "sunshine123", "princess123", "superman123",
    "trustno1234", "starwars123", "pokemon1234", "computer123", "internet123", "michael123",
    "jennifer123", "jordan2323", "summer2024", "summer2025", "winter2024", "winter2025",
    "spring2025", "autumn2025", "secret1234", "secret12345", "access1234", "test123456",
    "testtest123", "temp123456", "guest12345", "login12345", "hello12345", "hello123456",
    "whatever123", "freedom123", "killer1234", "batman1234", "charlie123", "liverpool1",
    "chelsea123", "arsenal123", "soccer1234", "hockey1234", "america123", "london1234",
    "abcdefghij", "abcdefghijk", "aaaaaaaaaa", "qazwsxedcrfv", "1qaz2wsx", "zaq1zaq1zaq1",
    "qwertyqwerty", "asdfasdfasdf", "iloveyou2", "vendo12345",
})

_CLASSES = ("lower-case letters", "upper-case letters", "digits", "other characters")


def _character_class(char: str) -> int:
    if char.islower():
        return 0
    if char.isupper():
        return 1
    if char.isdigit():
        return 2
    return 3


def weak(message: str, rule: str) -> InvalidInput:
    """The ``weak_password`` error (422) for one broken rule."""
    return InvalidInput(message, code="weak_password", details={"rule": rule})


def check_password(password: str, email: str, *, min_length: int = 10) -> None:
    """Refuse a password that breaks a rule of the policy.

    :param password: the new password, as typed.
    :param email: the account's email address.
    :param min_length: the shortest length accepted.
    :raises InvalidInput: ``weak_password`` (422), ``details.rule`` naming the rule broken.
    """
    if len(password) < min_length:
        raise weak(f"password too short: use at least {min_length} characters", "min_length")
    lowered = password.strip().lower()
    address = (email or "").strip().lower()
    local = address.partition("@")[0]
    if lowered and (lowered == address or (len(local) >= 3 and lowered == local)):
        raise weak("password must not be your email address", "not_email")
    if lowered in COMMON_PASSWORDS:
        raise weak("password is one of the most common passwords: choose another", "common_password")
    if len({_character_class(char) for char in password}) < 2:
        kind = _CLASSES[_character_class(password[0])]
        raise weak(f"password uses only {kind}: mix at least two of lower-case letters, upper-case letters, "
                   "digits and other characters", "character_classes")
