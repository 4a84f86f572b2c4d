"""User sessions: short access tokens, rotating refresh tokens, logout, sign out everywhere.

A session is a row (its id is the refresh-token family and the `sid` claim); each access token
also carries the user's `session_version` (`sv`). Every request checks both against the
database, so logout (the session revoked) and sign out everywhere (the version bumped, every
session revoked) take effect at once, not when the access token expires.

A refresh token works once. Presenting one that was already used means a copy exists
somewhere else: the whole session is revoked and the event is audited (theft detection).
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, select

from broker.audit import log as audit
from broker.auth.secrets import new_token, token_hash
from broker.auth.tokens import Principal, TokenSigner
from broker.clock import Clock
from broker.db.database import Database
from broker.db.schema import user_refresh_tokens, user_sessions, users
from broker.db.scope import TenantScope
from broker.errors import Unauthenticated
from broker.settings import Secret
from shared.errors import ErrorCode

REFRESH_PURPOSE = "user-refresh"
CSRF_PURPOSE = "csrf"


@dataclass(frozen=True, slots=True)
class SessionTokens:
    access_token: str
    refresh_token: str
    expires_in: int
    session_id: str
    csrf_token: str

    def to_json(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
        }


def _ended() -> Unauthenticated:
    return Unauthenticated("the session has ended; log in again", code=ErrorCode.INVALID_TOKEN)


class UserSessions:
    def __init__(
        self,
        *,
        db: Database,
        signer: TokenSigner,
        hmac_key: Secret,
        refresh_ttl: int,
        clock: Clock,
    ) -> None:
        self._db = db
        self._signer = signer
        self._hmac_key = hmac_key
        self._refresh_ttl = timedelta(seconds=refresh_ttl)
        self._clock = clock

    def csrf_token(self, session_id: str) -> str:
        """The session's CSRF token: derived, so nothing more is stored."""
        message = f"{CSRF_PURPOSE}\x00{session_id}".encode()
        return hmac.new(self._hmac_key.reveal().encode(), message, hashlib.sha256).hexdigest()

    def csrf_ok(self, session_id: str, presented: str) -> bool:
        return hmac.compare_digest(self.csrf_token(session_id), presented)

    async def open(self, scope: TenantScope, user: Row[Any], now: datetime) -> SessionTokens:
        """A new session for a user who has just passed both login steps (caller's transaction)."""
        session_id = str(uuid.uuid4())
        await scope.insert(user_sessions, id=session_id, user_id=user.id, created_at=now)
        refresh = await self._new_refresh(scope, session_id, now)
        return self._tokens(scope.tenant_id, user, session_id, refresh)

    async def refresh(self, refresh_token: str) -> SessionTokens:
        now = self._clock()
        digest = token_hash(self._hmac_key, REFRESH_PURPOSE, refresh_token)
        async with self._db.transaction() as conn:
            # The token names its tenant: the one lookup made before a tenant is known.
            row = (
                await conn.execute(
                    select(user_refresh_tokens).where(user_refresh_tokens.c.token_hash == digest)
                )
            ).first()
            if row is None:
                raise Unauthenticated("refresh token is not valid", code=ErrorCode.INVALID_TOKEN)
            scope = TenantScope(conn, row.tenant_id)
            session = await scope.one(user_sessions, user_sessions.c.id == row.session_id)
            live = session is not None and session.revoked_at is None and row.expires_at > now
            claimed = 0
            if live:
                claimed = await scope.update(
                    user_refresh_tokens,
                    user_refresh_tokens.c.id == row.id,
                    user_refresh_tokens.c.used_at.is_(None),
                    used_at=now,
                )
            if claimed == 1 and session is not None:
                user = await scope.one(users, users.c.id == session.user_id)
                if user is not None:
                    refresh = await self._new_refresh(scope, session.id, now)
                    return self._tokens(scope.tenant_id, user, session.id, refresh)
            elif live and session is not None:
                # Live but already used: a copy is being replayed. End the whole family.
                await self._revoke(scope, session.id, now)
                await audit.record(
                    scope,
                    at=now,
                    actor=f"user:{session.user_id}",
                    action="user.refresh_reuse",
                    target=session.user_id,
                    details={"session": session.id},
                )
        # Reached only on failure; the transaction above has committed any revocation.
        raise Unauthenticated("refresh token is not valid", code=ErrorCode.INVALID_TOKEN)

    async def check(self, scope: TenantScope, principal: Principal) -> None:
        """An access token works only while its session and session version are current."""
        user = await scope.one(users, users.c.id == principal.user_id)
        if (
            user is None
            or user.session_version != principal.session_version
            or user.role != principal.role
        ):
            raise _ended()
        session = await scope.one(user_sessions, user_sessions.c.id == principal.session_id)
        if session is None or session.revoked_at is not None or session.user_id != user.id:
            raise _ended()

    async def logout(self, principal: Principal) -> None:
        now = self._clock()
        async with self._db.transaction() as conn:
            scope = TenantScope(conn, principal.tenant_id)
            await self._revoke(scope, principal.session_id, now)
            await audit.record(
                scope,
                at=now,
                actor=f"user:{principal.user_id}",
                action="user.logout",
                target=principal.user_id,
                details={"session": principal.session_id},
            )

    async def sign_out_everywhere(self, principal: Principal) -> None:
        now = self._clock()
        async with self._db.transaction() as conn:
            scope = TenantScope(conn, principal.tenant_id)
            await scope.update(
                users,
                users.c.id == principal.user_id,
                session_version=users.c.session_version + 1,
            )
            await scope.update(
                user_sessions,
                user_sessions.c.user_id == principal.user_id,
                user_sessions.c.revoked_at.is_(None),
                revoked_at=now,
            )
            await audit.record(
                scope,
                at=now,
                actor=f"user:{principal.user_id}",
                action="user.sign_out_everywhere",
                target=principal.user_id,
            )

    async def _revoke(self, scope: TenantScope, session_id: str, now: datetime) -> None:
        await scope.update(
            user_sessions,
            user_sessions.c.id == session_id,
            user_sessions.c.revoked_at.is_(None),
            revoked_at=now,
        )

    async def _new_refresh(self, scope: TenantScope, session_id: str, now: datetime) -> str:
        token = new_token("bru_", 32)
        await scope.insert(
            user_refresh_tokens,
            id=str(uuid.uuid4()),
            session_id=session_id,
            token_hash=token_hash(self._hmac_key, REFRESH_PURPOSE, token),
            created_at=now,
            expires_at=now + self._refresh_ttl,
        )
        return token

    def _tokens(
        self, tenant_id: str, user: Row[Any], session_id: str, refresh: str
    ) -> SessionTokens:
        principal = Principal(
            kind="user",
            subject=user.id,
            tenant_id=tenant_id,
            user_id=user.id,
            role=user.role,
            session_id=session_id,
            session_version=user.session_version,
        )
        return SessionTokens(
            access_token=self._signer.issue(principal),
            refresh_token=refresh,
            expires_in=self._signer.ttl,
            session_id=session_id,
            csrf_token=self.csrf_token(session_id),
        )
