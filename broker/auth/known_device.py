"""The known-device cookie: a browser that completed a sign-in to an account before.

Set after every full sign-in (password and code), `bucketreel_known`: `HttpOnly; Secure;
SameSite=Strict; Path=/`, for `KNOWN_DEVICE_TTL` (90 days). It holds the user's id, the
user's session version, an expiry and a random id, signed with an HMAC under the broker's
key; nothing secret, nothing a script can read. A browser presenting a valid one for the
account it signs in to is not held back by the account-wide slowdown
(`broker.auth.ratelimit`); its failures count against a hard limit of its own (the account
and this cookie's id) instead of the client address's. "Sign out everywhere" bumps the
session version, so every known-device cookie of the account stops counting.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass

from broker.auth.secrets import token_hash
from broker.settings import Secret

COOKIE = "bucketreel_known"
KNOWN_DEVICE_TTL = 90 * 86_400
PURPOSE = "known-device"
MAX_COOKIE_CHARS = 300


@dataclass(frozen=True, slots=True)
class KnownDevice:
    user_id: str
    session_version: int
    browser_id: str


def issue(key: Secret, user_id: str, session_version: int, *, now: float | None = None) -> str:
    expires = int((time.time() if now is None else now) + KNOWN_DEVICE_TTL)
    body = f"{user_id}.{session_version}.{expires}.{secrets.token_hex(8)}"
    return f"{body}.{token_hash(key, PURPOSE, body)}"


def verify(key: Secret, cookie: str | None, *, now: float | None = None) -> KnownDevice | None:
    """The cookie's content when it is ours and not expired; else None (never raises)."""
    if not cookie or len(cookie) > MAX_COOKIE_CHARS:
        return None
    body, _, mac = cookie.rpartition(".")
    if not hmac.compare_digest(mac.encode(), token_hash(key, PURPOSE, body).encode()):
        return None
    parts = body.split(".")
    if len(parts) != 4 or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    user_id, version, expires, browser_id = parts
    if int(expires) < (time.time() if now is None else now):
        return None
    return KnownDevice(user_id, int(version), browser_id)
