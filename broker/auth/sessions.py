"""User sessions: short access tokens, rotating refresh tokens, logout, sign out everywhere.

A session is a row (its id is the refresh-token family and the `sid` claim); each access token
also carries the user's `session_version` (`sv`). Every request checks both against the
database, so logout (the session revoked) and sign out everywhere (the version bumped, every
session revoked) take effect at once, not when the access token expires.

A refresh token works once. Presenting one that was already used means a copy exists
somewhere else: the whole session is revoked and the event is audited (theft detection);
the rotation is `broker.auth.refresh`'s, shared with devices.

A browser session (signed in with cookies) uses the same rows and rotation, with three
differences: its refresh tokens are hashed under their own purpose, so one is accepted only
by the cookie route (`refresh_browser`, which also wants the session's CSRF token) and never
by the bearer route, nor the other way round; each lives only `browser_idle` (no refresh for
that long ends the session); and nothing of the session outlives `browser_max_age` from
sign-in: refresh tokens and access tokens are cut at that instant, then both login steps are
needed again.

Only an active person's sessions verify and refresh (`broker.accounts.people`): deactivation
also ends them at once, as does an admin's 2FA reset.

An API (bearer) session has an absolute lifetime too, `max_age` (30 days by default): a
refresh token that leaked and is used regularly would otherwise keep a session alive for
ever. Its refresh tokens and access tokens are cut at that instant in the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row

from broker.accounts.people import PersonState, end_sessions
from broker.audit import log as audit
from broker.auth import refresh as rotation
from broker.auth.secrets import token_hash
from broker.auth.tokens import TokenSigner
from broker.clock import Clock
from broker.db.database import Database
from broker.db.schema import user_refresh_tokens, user_sessions, users
from broker.db.scope import TenantScope
from broker.errors import Forbidden, Unauthenticated
from broker.identity import Principal
from broker.settings import Secret
from shared.errors import ErrorCode

REFRESH_PURPOSE = "user-refresh"
BROWSER_REFRESH_PURPOSE = "user-refresh-browser"
CSRF_PURPOSE = "csrf"


@dataclass(frozen=True, slots=True)
class SessionTokens:
    access_token: str
    refresh_token: str
    expires_in: int
    session_id: str
    csrf_token: str
    refresh_expires_in: int = 0
    browser: bool = False

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
        browser_idle: int = 1800,
        browser_max_age: int = 12 * 3600,
        max_age: int = 30 * 86_400,
    ) -> None:
        self._db = db
        self._signer = signer
        self._hmac_key = hmac_key
        self._refresh_ttl = timedelta(seconds=refresh_ttl)
        self._clock = clock
        self._browser_idle = timedelta(seconds=browser_idle)
        self._browser_max_age = timedelta(seconds=browser_max_age)
        self._max_age = timedelta(seconds=max_age)

    def csrf_token(self, session_id: str) -> str:
        """The session's CSRF token: derived, so nothing more is stored."""
        message = f"{CSRF_PURPOSE}\x00{session_id}".encode()
        return hmac.new(self._hmac_key.reveal().encode(), message, hashlib.sha256).hexdigest()

    def csrf_ok(self, session_id: str, presented: str) -> bool:
        return hmac.compare_digest(self.csrf_token(session_id), presented)

    async def open(
        self, scope: TenantScope, user: Row[Any], now: datetime, *, browser: bool = False
    ) -> SessionTokens:
        """A new session for a user who has just passed both login steps (caller's transaction);
        `browser`: a cookie session, bounded by the idle timeout and the absolute lifetime."""
        session_id = str(uuid.uuid4())
        await scope.insert(user_sessions, id=session_id, user_id=user.id, created_at=now)
        refresh = await self._new_refresh(scope, session_id, now, started=now, browser=browser)
        return self._tokens(
            scope.tenant_id, user, session_id, refresh, now, started=now, browser=browser
        )

    async def refresh(self, refresh_token: str) -> SessionTokens:
        """Rotate a bearer client's refresh token (`POST /api/v1/auth/token`)."""
        return await self._rotate(refresh_token, browser=False, csrf="")

    async def refresh_browser(self, refresh_token: str, csrf: str) -> SessionTokens:
        """Rotate a browser session's refresh token (from its cookie); the request must carry
        the session's CSRF token, checked before anything is claimed."""
        return await self._rotate(refresh_token, browser=True, csrf=csrf)

    def session_end(self, started: datetime, *, browser: bool) -> datetime:
        """The instant a session opened at `started` ends, refreshed or not."""
        return started + (self._browser_max_age if browser else self._max_age)

    async def _rotate(self, refresh_token: str, *, browser: bool, csrf: str) -> SessionTokens:
        now = self._clock()
        purpose = BROWSER_REFRESH_PURPOSE if browser else REFRESH_PURPOSE
        digest = token_hash(self._hmac_key, purpose, refresh_token)
        replayed = None
        async for txn in self._db.attempts():
            async with txn as conn:
                presented = await rotation.find(conn, user_refresh_tokens, digest)
                scope, row = presented.scope, presented.row
                if browser and not self.csrf_ok(row.session_id, csrf):
                    raise Forbidden(
                        "refreshing a browser session needs the session's CSRF token",
                        code=ErrorCode.CSRF_FAILED,
                    )
                session = await scope.one(user_sessions, user_sessions.c.id == row.session_id)
                live = (
                    session is not None
                    and session.revoked_at is None
                    and row.expires_at > now
                    and now < self.session_end(session.created_at, browser=browser)
                )
                used = await rotation.use(presented, user_refresh_tokens, now, live=live)
                if used is rotation.Use.FRESH and session is not None:
                    user = await scope.one(users, users.c.id == session.user_id)
                    if user is not None and user.state == PersonState.ACTIVE:
                        token = await self._new_refresh(
                            scope, session.id, now, started=session.created_at, browser=browser
                        )
                        return self._tokens(
                            scope.tenant_id, user, session.id, token, now,
                            started=session.created_at, browser=browser,
                        )
                elif used is rotation.Use.REPLAYED and session is not None:
                    replayed = session  # live but already used: a copy is being replayed
        if replayed is not None:
            await self._end_replayed(replayed, now)
        # Reached only on failure; any revocation has committed.
        raise rotation.not_valid()

    async def _end_replayed(self, session: Any, now: datetime) -> None:
        """End the whole family of a replayed refresh token, audited: a transaction of its
        own, chain lock first (the claim before may hold the token's row: README's lock
        order)."""
        async for txn in self._db.attempts():
            async with txn as conn:
                scope = TenantScope(conn, session.tenant_id)
                await audit.lock_chain(scope)
                await self._revoke(scope, session.id, now)
                await rotation.reused(
                    scope, now, kind="user", actor=f"user:{session.user_id}",
                    target=session.user_id, details={"session": session.id},
                )

    async def verify(self, principal: Principal) -> None:
        """`check` in a read transaction of its own (the request guard's call)."""
        async with self._db.transaction() as conn:
            await self.check(TenantScope(conn, principal.tenant_id), principal)

    async def check(self, scope: TenantScope, principal: Principal) -> None:
        """An access token works only while its session and session version are current."""
        user = await scope.one(users, users.c.id == principal.user_id)
        if (
            user is None
            or user.session_version != principal.session_version
            or user.role != principal.role
            or user.state != PersonState.ACTIVE
        ):
            raise _ended()
        session = await scope.one(user_sessions, user_sessions.c.id == principal.session_id)
        if session is None or session.revoked_at is not None or session.user_id != user.id:
            raise _ended()

    async def logout(self, principal: Principal) -> None:
        now = self._clock()
        async for txn in self._db.attempts():
            async with txn as conn:
                scope = TenantScope(conn, principal.tenant_id)
                await audit.lock_chain(scope)  # first (README's lock order)
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
        async for txn in self._db.attempts():
            async with txn as conn:
                scope = TenantScope(conn, principal.tenant_id)
                await audit.lock_chain(scope)  # first (README's lock order)
                await end_sessions(scope, principal.user_id, now)
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

    async def _new_refresh(
        self,
        scope: TenantScope,
        session_id: str,
        now: datetime,
        *,
        started: datetime,
        browser: bool,
    ) -> tuple[str, datetime]:
        idle = self._browser_idle if browser else self._refresh_ttl
        expires_at = min(now + idle, self.session_end(started, browser=browser))
        token = await rotation.mint(
            scope, user_refresh_tokens, key=self._hmac_key,
            purpose=BROWSER_REFRESH_PURPOSE if browser else REFRESH_PURPOSE, prefix="bru_",
            now=now, expires_at=expires_at, session_id=session_id,
        )
        return token, expires_at

    def _tokens(
        self,
        tenant_id: str,
        user: Row[Any],
        session_id: str,
        refresh: tuple[str, datetime],
        now: datetime,
        *,
        started: datetime,
        browser: bool,
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
        # no access token outlives the session's absolute end
        left = self.session_end(started, browser=browser) - now
        ttl = max(0, min(self._signer.ttl, int(left.total_seconds())))
        token, refresh_expires = refresh
        return SessionTokens(
            access_token=self._signer.issue(principal, ttl=ttl),
            refresh_token=token,
            expires_in=ttl,
            session_id=session_id,
            csrf_token=self.csrf_token(session_id),
            refresh_expires_in=max(0, int((refresh_expires - now).total_seconds())),
            browser=browser,
        )
