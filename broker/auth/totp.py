"""TOTP (RFC 6238, pyotp): 30-second steps, 6 digits, a window of one step either side.

`matching_step` says which time step a code belongs to; the caller stores the last accepted
step per user and accepts only later ones, so a code works once, ever (replay refused).
"""

from __future__ import annotations

import hmac
import re
from datetime import datetime

import pyotp

ISSUER = "bucketreel"
DIGITS = 6
INTERVAL = 30
WINDOW = 1
_CODE_RE = re.compile(r"^\d{6}$")


def new_secret() -> str:
    return pyotp.random_base32(32)  # 160 bits, as RFC 4226 recommends


def provisioning_uri(secret: str, *, email: str, tenant_name: str) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=INTERVAL).provisioning_uri(
        name=f"{email} ({tenant_name})", issuer_name=ISSUER
    )


def looks_like_code(value: str) -> bool:
    return bool(_CODE_RE.match(value))


def current_step(now: datetime) -> int:
    return int(now.timestamp()) // INTERVAL


def matching_step(secret: str, code: str, now: datetime, *, after: int | None) -> int | None:
    """The time step (within ±WINDOW of now, and later than `after`) whose code this is."""
    if not looks_like_code(code):
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=INTERVAL)
    step = current_step(now)
    found: int | None = None
    for candidate in range(step - WINDOW, step + WINDOW + 1):
        expected = totp.generate_otp(candidate)
        # Compare every candidate (no early exit) in constant time.
        if hmac.compare_digest(expected, code) and (after is None or candidate > after):
            found = candidate
    return found
