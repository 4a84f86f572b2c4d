"""Signed access tokens (JWT, HS256) with a current and a previous key.

The `kid` header names the key; verification pins the algorithm to HS256 and accepts only
the keys the settings hold, so `alg: none`, RS/HS confusion and unknown keys all fail.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import jwt

from broker.clock import Clock
from broker.errors import Unauthenticated
from broker.identity import Audience, Principal
from broker.settings import Secret
from shared.errors import ErrorCode

ALGORITHM = "HS256"
ISSUER = "bucketreel"
LEEWAY = 5  # seconds of clock skew allowed between replicas, on every time rule below
VERIFIED = 32_768  # tokens remembered as verified (a fleet's live access tokens)


def key_id(key: Secret) -> str:
    return "k" + hashlib.sha256(b"bucketreel-kid\x00" + key.reveal().encode()).hexdigest()[:16]


class TokenSigner:
    def __init__(self, *, current: Secret, previous: Secret | None, ttl: int, clock: Clock) -> None:
        self._current = current
        self._keys = {key_id(current): current}
        if previous is not None:
            self._keys[key_id(previous)] = previous
        self.ttl = ttl
        self._clock = clock
        # (token, audience) -> its principal and `iat`, once verified (`verify`)
        self._verified: dict[tuple[str, str], tuple[Principal, float]] = {}

    def issue(self, principal: Principal, *, ttl: int | None = None) -> str:
        """A signed token for `principal`, living `ttl` seconds (never more than the setting)."""
        now = int(self._clock().timestamp())
        lifetime = self.ttl if ttl is None else max(0, min(ttl, self.ttl))
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": principal.kind,
            "sub": principal.subject,
            "tid": principal.tenant_id,
            "uid": principal.user_id,
            "role": principal.role,
            "iat": now,
            "exp": now + lifetime,
            "jti": uuid.uuid4().hex,
        }
        if principal.kind == "user":
            claims["sid"] = principal.session_id
            claims["sv"] = principal.session_version
        return jwt.encode(
            claims,
            self._current.reveal(),
            algorithm=ALGORITHM,
            headers={"kid": key_id(self._current)},
        )

    @staticmethod
    def audience_of(token: str) -> str | None:
        """The audience a token claims, unverified: only to choose how to verify it."""
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            return None
        audience = claims.get("aud")
        return audience if isinstance(audience, str) else None

    def _check_age(self, claims: dict[str, Any]) -> None:
        """A token's own `exp` is not trusted alone: whoever holds a key (the previous one
        after a rotation, say) could sign a token valid for ten years. No token this broker
        issues lives longer than `ttl`, so one whose `exp - iat` or whose age `now - iat`
        exceeds it (plus the leeway), or that was issued in the future, was not issued here."""
        issued, expires = claims["iat"], claims["exp"]
        for value in (issued, expires):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise jwt.InvalidTokenError("iat and exp must be numbers")
        self._check_times(issued, expires)

    def _check_times(self, issued: float, expires: float) -> None:
        now = self._clock().timestamp()
        if expires <= now - LEEWAY:  # as jwt.decode checks `exp`, for a remembered token
            raise jwt.InvalidTokenError("the token has expired")
        if expires - issued > self.ttl + LEEWAY:
            raise jwt.InvalidTokenError("the token claims a longer life than any issued")
        if now - issued > self.ttl + LEEWAY or issued > now + LEEWAY:
            raise jwt.InvalidTokenError("the token is older than any issued token lives")

    def verify(self, token: str, audience: Audience) -> Principal:
        """The token's principal when its signature, claims and times hold. A token verified
        before (these very bytes, for this audience) is not decoded again: its principal is
        remembered (`VERIFIED`, bounded) and only its times are checked again, now. What
        can end a token early (a revoked device, a session signed out) is checked by the
        caller on every request, never remembered here."""
        remembered = self._verified.get((token, audience))
        if remembered is not None:
            principal, issued = remembered
            try:
                self._check_times(issued, principal.expires_at)
            except jwt.InvalidTokenError:
                self._verified.pop((token, audience), None)
                raise Unauthenticated(
                    "access token is invalid or expired", code=ErrorCode.INVALID_TOKEN
                ) from None
            return principal
        principal, issued = self._decode(token, audience)
        if len(self._verified) >= VERIFIED:
            self._verified.clear()  # simple and bounded: the live tokens come back at once
        self._verified[(token, audience)] = (principal, issued)
        return principal

    def _decode(self, token: str, audience: Audience) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
            key = self._keys.get(str(header.get("kid")))
            if key is None or header.get("alg") != ALGORITHM:
                raise jwt.InvalidTokenError("unknown key or algorithm")
            claims = jwt.decode(
                token,
                key.reveal(),
                algorithms=[ALGORITHM],
                audience=audience,
                issuer=ISSUER,
                options={"require": ["exp", "iat", "jti", "sub", "aud", "iss"]},
                leeway=LEEWAY,
            )
            self._check_age(claims)
            session_version = claims["sv"] if audience == "user" else 0
            if isinstance(session_version, bool) or not isinstance(session_version, int):
                raise jwt.InvalidTokenError("session version is not an integer")
            return Principal(
                kind=audience,
                subject=str(claims["sub"]),
                tenant_id=str(claims["tid"]),
                user_id=str(claims["uid"]),
                role=str(claims["role"]),
                session_id=str(claims["sid"]) if audience == "user" else "",
                session_version=session_version,
                expires_at=int(claims["exp"]),
            ), claims["iat"]
        except (jwt.InvalidTokenError, KeyError):
            raise Unauthenticated(
                "access token is invalid or expired", code=ErrorCode.INVALID_TOKEN
            ) from None
