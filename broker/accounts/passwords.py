"""Password hashing: Argon2id with at least OWASP's parameters (m=19456 KiB, t=2, p=1).

The parameters come from settings; a hash made with other (weaker) parameters is upgraded on
the next good login (`needs_rehash`). An unknown account is verified against a dummy hash made
with the same parameters, so the time a login takes does not tell whether the email exists.
"""

from __future__ import annotations

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from broker.errors import InvalidInput
from shared.errors import ErrorCode

MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024

# A small built-in list of passwords long enough to pass the length rule yet guessed first.
# Compared case-insensitively, with surrounding spaces removed.
COMMON_PASSWORDS = frozenset(
    {
        "123456789012",
        "1234567890123",
        "12345678901234",
        "123123123123",
        "111111111111",
        "000000000000",
        "qwertyuiop12",
        "qwertyuiopas",
        "qwerty123456",
        "1qaz2wsx3edc",
        "1q2w3e4r5t6y",
        "asdfghjkl123",
        "zxcvbnm12345",
        "password1234",
        "password123!",
        "passwordpassword",
        "password12345",
        "p@ssw0rd1234",
        "letmein12345",
        "welcome12345",
        "welcome123456",
        "iloveyou1234",
        "administrator",
        "changeme1234",
        "trustno11234",
        "monkey123456",
        "football1234",
        "baseball1234",
        "superman1234",
        "princess1234",
        "sunshine1234",
        "starwars1234",
        "dragon123456",
        "master123456",
        "abc123456789",
        "abcdefghijkl",
        "abcd12345678",
        "aaaaaaaaaaaa",
        "qwertyqwerty",
        "passw0rd1234",
        "bucketreel123",
        "bucketreel1234",
    }
)


def check_policy(password: str) -> None:
    """Refuse passwords that are too short, too long, or on the common list; say which."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise InvalidInput(
            f"password must be at least {MIN_PASSWORD_CHARS} characters long",
            code=ErrorCode.WEAK_PASSWORD,
        )
    if len(password) > MAX_PASSWORD_CHARS:
        raise InvalidInput(
            f"password must be at most {MAX_PASSWORD_CHARS} characters long",
            code=ErrorCode.WEAK_PASSWORD,
        )
    folded = password.strip().lower()
    if folded in COMMON_PASSWORDS or len(set(folded)) <= 2:
        raise InvalidInput(
            "password is too common or too simple; choose a longer passphrase",
            code=ErrorCode.WEAK_PASSWORD,
        )


class Passwords:
    def __init__(self, *, time_cost: int, memory_kib: int, parallelism: int) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )
        self._dummy: str | None = None

    def hash(self, password: str) -> str:
        check_policy(password)
        return self._hasher.hash(password)

    def hash_unchecked(self, password: str) -> str:
        """Re-hash a password that just verified (an upgrade on login), whatever the policy."""
        return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        if len(password) > MAX_PASSWORD_CHARS:
            return False
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def verify_unknown(self, password: str) -> bool:
        """Spend the same time as a real verification, for an account that does not exist."""
        if self._dummy is None:
            self._dummy = self._hasher.hash("bucketreel dummy password for unknown accounts")
        self.verify(self._dummy, password)
        return False

    def needs_rehash(self, password_hash: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True
