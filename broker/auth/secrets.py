"""Opaque secrets handed to clients (refresh tokens, enrollment codes): made here, and stored
only as an HMAC under the server's key, so a copy of the database does not let anyone in."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from broker.settings import Secret


def new_token(prefix: str, nbytes: int = 32) -> str:
    return prefix + secrets.token_urlsafe(nbytes)


def token_hash(key: Secret, purpose: str, token: str) -> str:
    message = purpose.encode() + b"\x00" + token.encode()
    return hmac.new(key.reveal().encode(), message, hashlib.sha256).hexdigest()
