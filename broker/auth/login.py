"""Two-step login with mandatory TOTP: password → short-lived challenge → code → session.

Step one verifies the password (against a dummy hash when the account is unknown) and hands
out a single-use challenge bound to the user, valid a few minutes. A user without TOTP gets
a new secret with it (`mfa: "enroll"`); the secret is stored only once a first code proves
the authenticator has it, and one-time recovery codes are returned then, once.

Step two takes a TOTP code (±1 step, each step accepted once per user, ever) or a recovery
code (each once). Every failure counts against the account and the client address.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, or_, select
from sqlalchemy.exc import SQLAlchemyError

from broker.accounts.passwords import Passwords
from broker.audit import log as audit
from broker.auth import totp
from broker.auth.ratelimit import Attempt, LoginLimiter
from broker.auth.secrets import new_token, token_hash
from broker.auth.sessions import SessionTokens, UserSessions
from broker.clock import Clock
from broker.db.database import Database
from broker.db.schema import mfa_challenges, recovery_codes, tenants, users
from broker.db.scope import TenantScope
from broker.errors import ServiceUnavailable, Unauthenticated
from broker.sealing import Sealed, seal, unseal
from broker.settings import MasterKeys, Secret
from shared.errors import ErrorCode

CHALLENGE_PURPOSE = "mfa-challenge"
RECOVERY_PURPOSE = "recovery-code"
TOTP_SEAL_PURPOSE = "totp"
RECOVERY_CODES = 10
MAX_CHALLENGE_FAILURES = 5
ENROLL = "enroll"
TOTP = "totp"


@dataclass(frozen=True, slots=True)
class LoginStep:
    mfa: str
    challenge: str
    expires_in: int
    provisioning_uri: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "mfa": self.mfa,
            "challenge": self.challenge,
            "expires_in": self.expires_in,
        }
        if self.provisioning_uri is not None:
            data["provisioning_uri"] = self.provisioning_uri
        return data


@dataclass(frozen=True, slots=True)
class LoginResult:
    tokens: SessionTokens
    recovery_codes: list[str]


def _bad_credentials() -> Unauthenticated:
    return Unauthenticated("email or password is wrong", code=ErrorCode.INVALID_CREDENTIALS)


def _bad_code() -> Unauthenticated:
    return Unauthenticated(
        "the code is wrong, expired or was used already", code=ErrorCode.INVALID_MFA_CODE
    )


def normalize_recovery_code(code: str) -> str:
    return code.replace("-", "").replace(" ", "").lower()


class LoginService:
    def __init__(
        self,
        *,
        db: Database,
        passwords: Passwords,
        limiter: LoginLimiter,
        sessions: UserSessions,
        keys: MasterKeys,
        hmac_key: Secret,
        challenge_ttl: int,
        clock: Clock,
    ) -> None:
        self._db = db
        self._passwords = passwords
        self._limiter = limiter
        self._sessions = sessions
        self._keys = keys
        self._hmac_key = hmac_key
        self._challenge_ttl = timedelta(seconds=challenge_ttl)
        self._clock = clock

    async def login(self, tenant: str, email: str, password: str, client: str) -> LoginStep:
        now = self._clock()
        email = email.strip().lower()
        client_key = self._limiter.client(client)
        try:
            async with self._db.transaction() as conn:
                tenant_row = (
                    await conn.execute(
                        select(tenants).where(or_(tenants.c.id == tenant, tenants.c.name == tenant))
                    )
                ).first()
                account = self._limiter.account(tenant_row.id if tenant_row else tenant, email)
                # counted as a failure until the password proves right (no parallel overshoot)
                attempt = await self._limiter.reserve(conn, [account, client_key], now)
                user = None
                if tenant_row is not None:
                    user = await TenantScope(conn, tenant_row.id).one(users, users.c.email == email)
        except SQLAlchemyError:
            raise ServiceUnavailable("login is unavailable: the database did not answer") from None
        if user is None:
            await asyncio.to_thread(self._passwords.verify_unknown, password)
            ok = False
        else:
            ok = await asyncio.to_thread(self._passwords.verify, user.password_hash, password)
        if not ok or user is None or tenant_row is None:
            await self._login_failed(tenant_row, user, email, now)
            raise _bad_credentials()
        new_hash = None
        if self._passwords.needs_rehash(user.password_hash):
            new_hash = await asyncio.to_thread(self._passwords.hash_unchecked, password)
        return await self._challenge(tenant_row, user, new_hash, attempt, now)

    async def _login_failed(
        self,
        tenant_row: Row[Any] | None,
        user: Row[Any] | None,
        email: str,
        now: datetime,
    ) -> None:
        """The failure is counted already (reserved before the check); audit it."""
        if tenant_row is None:
            return  # no tenant to audit in (the failure still counts)
        async with self._db.transaction() as conn:
            await audit.record(
                TenantScope(conn, tenant_row.id),
                at=now,
                actor=f"user:{user.id}" if user else "anonymous",
                action="auth.login_failed",
                target=user.id if user else "unknown-user",
                details={"email": email, "step": "password"},
            )

    async def _challenge(
        self,
        tenant_row: Row[Any],
        user: Row[Any],
        new_hash: str | None,
        attempt: Attempt,
        now: datetime,
    ) -> LoginStep:
        challenge = new_token("brc_", 32)
        kind, uri, pending = TOTP, None, None
        if user.totp_sealed is None:
            secret = totp.new_secret()
            kind = ENROLL
            uri = totp.provisioning_uri(secret, email=user.email, tenant_name=tenant_row.name)
            pending = self._seal_totp(tenant_row.id, user.id, secret)
        async for txn in self._db.attempts():
            async with txn as conn:
                scope = TenantScope(conn, tenant_row.id)
                if new_hash is not None:  # audited below: the chain lock first (README)
                    await audit.lock_chain(scope)
                await self._limiter.release(conn, attempt)  # the password was right
                if new_hash is not None:
                    await scope.update(users, users.c.id == user.id, password_hash=new_hash)
                    await audit.record(
                        scope,
                        at=now,
                        actor=f"user:{user.id}",
                        action="user.password_rehash",
                        target=user.id,
                    )
                await scope.insert(
                    mfa_challenges,
                    id=str(uuid.uuid4()),
                    user_id=user.id,
                    challenge_hash=token_hash(self._hmac_key, CHALLENGE_PURPOSE, challenge),
                    kind=kind,
                    pending_sealed=pending.blob if pending else None,
                    pending_kek_version=pending.kek_version if pending else None,
                    failures=0,
                    created_at=now,
                    expires_at=now + self._challenge_ttl,
                )
        return LoginStep(kind, challenge, int(self._challenge_ttl.total_seconds()), uri)

    async def mfa(
        self, challenge: str, code: str, client: str, *, browser: bool = False
    ) -> LoginResult:
        """Step two; `browser`: the session is a cookie session (see `UserSessions.open`)."""
        now = self._clock()
        digest = token_hash(self._hmac_key, CHALLENGE_PURPOSE, challenge)
        client_key = self._limiter.client(client)
        result: LoginResult | None = None
        try:
            async for txn in self._db.attempts():
                async with txn as conn:
                    row = (
                        await conn.execute(
                            select(mfa_challenges).where(mfa_challenges.c.challenge_hash == digest)
                        )
                    ).first()
                    live = (
                        row is not None
                        and row.used_at is None
                        and row.expires_at > now
                        and row.failures < MAX_CHALLENGE_FAILURES
                    )
                    if row is None or not live:
                        await self._limiter.check(conn, [client_key], now)
                        await self._limiter.failed(conn, [client_key], now)
                    else:
                        scope = TenantScope(conn, row.tenant_id)
                        user = await scope.one(users, users.c.id == row.user_id)
                        if user is None:
                            raise _bad_code()
                        # Either way this is audited: the chain lock before any write (README).
                        await audit.lock_chain(scope)
                        account = self._limiter.account(row.tenant_id, user.email)
                        await self._limiter.check(conn, [account, client_key], now)
                        result = await self._verify(scope, row, user, code, now, browser)
                        if result is None:
                            await scope.update(
                                mfa_challenges,
                                mfa_challenges.c.id == row.id,
                                failures=mfa_challenges.c.failures + 1,
                            )
                            await self._limiter.failed(conn, [account, client_key], now)
                            await audit.record(
                                scope,
                                at=now,
                                actor=f"user:{user.id}",
                                action="auth.mfa_failed",
                                target=user.id,
                                details={"kind": row.kind},
                            )
                        else:
                            await self._limiter.succeeded(conn, account)
        except SQLAlchemyError:
            raise ServiceUnavailable("login is unavailable: the database did not answer") from None
        if row is None or not live:
            raise Unauthenticated(
                "the login challenge is unknown, used or expired; log in again",
                code=ErrorCode.INVALID_TOKEN,
            )
        if result is None:  # raised after the failure has been counted and committed
            raise _bad_code()
        return result

    async def _verify(
        self,
        scope: TenantScope,
        challenge: Row[Any],
        user: Row[Any],
        code: str,
        now: datetime,
        browser: bool,
    ) -> LoginResult | None:
        """The session when the code is good (everything claimed once), else None."""
        code = code.strip()
        recovery: list[str] = []
        how = challenge.kind
        if challenge.kind == ENROLL:
            pending = Sealed(challenge.pending_kek_version, challenge.pending_sealed)
            secret = self._unseal_totp(scope.tenant_id, user.id, pending)
            step = totp.matching_step(secret, code, now, after=None)
            if step is None or user.totp_sealed is not None:
                return None
            if not await scope.update(
                users,
                users.c.id == user.id,
                users.c.totp_sealed.is_(None),
                totp_sealed=pending.blob,
                totp_kek_version=pending.kek_version,
                totp_last_step=step,
                totp_enrolled_at=now,
            ):
                return None
            recovery = await self._new_recovery_codes(scope, user.id, now)
        elif totp.looks_like_code(code):
            secret = self._unseal_totp(
                scope.tenant_id, user.id, Sealed(user.totp_kek_version, user.totp_sealed)
            )
            step = totp.matching_step(secret, code, now, after=user.totp_last_step)
            # The step is claimed by a conditional UPDATE, so a replay racing us loses.
            if step is None or not await scope.update(
                users,
                users.c.id == user.id,
                or_(users.c.totp_last_step.is_(None), users.c.totp_last_step < step),
                totp_last_step=step,
            ):
                return None
        else:
            how = "recovery"
            claimed = await scope.update(
                recovery_codes,
                recovery_codes.c.user_id == user.id,
                recovery_codes.c.code_hash == self._recovery_hash(user.id, code),
                recovery_codes.c.used_at.is_(None),
                used_at=now,
            )
            if claimed != 1:
                return None
        if not await scope.update(
            mfa_challenges,
            mfa_challenges.c.id == challenge.id,
            mfa_challenges.c.used_at.is_(None),
            used_at=now,
        ):
            return None
        tokens = await self._sessions.open(scope, user, now, browser=browser)
        await audit.record(
            scope,
            at=now,
            actor=f"user:{user.id}",
            action="auth.mfa_enroll" if how == ENROLL else "auth.login",
            target=user.id,
            details={"mfa": how, "session": tokens.session_id},
        )
        return LoginResult(tokens, recovery)

    async def _new_recovery_codes(
        self, scope: TenantScope, user_id: str, now: datetime
    ) -> list[str]:
        await scope.update(  # any earlier set stops working
            recovery_codes,
            recovery_codes.c.user_id == user_id,
            recovery_codes.c.used_at.is_(None),
            used_at=now,
        )
        codes = []
        for _ in range(RECOVERY_CODES):
            raw = secrets.token_hex(5)
            codes.append(f"{raw[:5]}-{raw[5:]}")
            await scope.insert(
                recovery_codes,
                id=str(uuid.uuid4()),
                user_id=user_id,
                code_hash=self._recovery_hash(user_id, raw),
                created_at=now,
            )
        return codes

    def _recovery_hash(self, user_id: str, code: str) -> str:
        return token_hash(
            self._hmac_key, RECOVERY_PURPOSE, f"{user_id}:{normalize_recovery_code(code)}"
        )

    def _seal_totp(self, tenant_id: str, user_id: str, secret: str) -> Sealed:
        return seal(
            self._keys,
            secret.encode(),
            purpose=TOTP_SEAL_PURPOSE,
            tenant_id=tenant_id,
            row_ref=user_id,
        )

    def _unseal_totp(self, tenant_id: str, user_id: str, sealed: Sealed) -> str:
        return unseal(
            self._keys, sealed, purpose=TOTP_SEAL_PURPOSE, tenant_id=tenant_id, row_ref=user_id
        ).decode()
