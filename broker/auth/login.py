"""Two-step login with mandatory TOTP: password → short-lived challenge → code → session.

Step one verifies the password (against a dummy hash when the account is unknown) and hands
out a single-use challenge bound to the user, valid a few minutes. A user without TOTP gets
a new secret with it (`mfa: "enroll"`); the secret is stored only once a first code proves
the authenticator has it, and one-time recovery codes are returned then, once.

Step two takes a TOTP code (±1 step, each step accepted once per user, ever) or a recovery
code (each once). Every failure counts against the account, the account from this client
(or from this known browser) and the client address (`broker.auth.ratelimit`: a wall per
account and client, a slowdown per account). A browser that completed a sign-in before
carries a known-device cookie (`broker.auth.known_device`) and is not slowed by strangers'
failures. The person is told, at their next full sign-in, how many failed attempts there
were since the last one; when an account reaches the limit, an `auth.account_under_attack`
entry goes to the audit log (and a warning to the broker's log), for its admins.

Only active people sign in (`broker.accounts.people`): an invited or deactivated person's
password step is refused exactly as a wrong password is (the dummy hash verified, the failure
counted), so the reply tells nothing of the account's state; a code step whose person was
deactivated, or whose TOTP an admin reset, since the password step fails. A full sign-in
stamps `last_sign_in_at`; after an admin's 2FA reset the challenge is an enrolment again
(`mfa_reset` on the step, so the page can say why).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, or_, select
from sqlalchemy.exc import SQLAlchemyError

from broker.accounts.passwords import Passwords
from broker.accounts.people import PersonState
from broker.audit import log as audit
from broker.auth import known_device, totp
from broker.auth.known_device import KnownDevice
from broker.auth.ratelimit import Attempt, LimitKey, LoginLimiter
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

log = logging.getLogger(__name__)

CHALLENGE_PURPOSE = "mfa-challenge"
RECOVERY_PURPOSE = "recovery-code"
TOTP_SEAL_PURPOSE = "totp"
RECOVERY_CODES = 10
MAX_CHALLENGE_FAILURES = 5
AUDIT_ACCOUNT_PURPOSE = "audit-account"
MASKED_ACCOUNT_CHARS = 16  # 64 bits of the HMAC: enough to tell names apart, nothing more
ENROLL = "enroll"
TOTP = "totp"


@dataclass(frozen=True, slots=True)
class LoginStep:
    mfa: str
    challenge: str
    expires_in: int
    provisioning_uri: str | None = None
    # An admin reset the person's 2FA: they enrol again now (the sign-in page says why).
    mfa_reset: bool = False

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "mfa": self.mfa,
            "challenge": self.challenge,
            "expires_in": self.expires_in,
        }
        if self.provisioning_uri is not None:
            data["provisioning_uri"] = self.provisioning_uri
        if self.mfa_reset:
            data["mfa_reset"] = True
        return data


@dataclass(frozen=True, slots=True)
class FailedSignIns:
    """Failed passwords and codes for the account since its last full sign-in."""

    count: int
    last_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "last_at": self.last_at.isoformat() if self.last_at else None,
        }


@dataclass(frozen=True, slots=True)
class LoginResult:
    tokens: SessionTokens
    recovery_codes: list[str]
    known_device: str = ""  # the known-device cookie's value for this browser
    failed_sign_ins: FailedSignIns | None = None  # since the last full sign-in, if any


def _bad_credentials() -> Unauthenticated:
    return Unauthenticated("email or password is wrong", code=ErrorCode.INVALID_CREDENTIALS)


def _bad_code() -> Unauthenticated:
    return Unauthenticated(
        "the code is wrong, expired or was used already", code=ErrorCode.INVALID_MFA_CODE
    )


def masked_account(hmac_key: Secret, tenant_id: str, email: str) -> str:
    """What the audit log keeps of an account name that matched nobody: a truncated HMAC
    under the server's key (never the typed string, which may be a password)."""
    return "acct_" + token_hash(hmac_key, AUDIT_ACCOUNT_PURPOSE, f"{tenant_id}\x00{email}")[
        :MASKED_ACCOUNT_CHARS
    ]


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

    async def login(
        self,
        tenant: str,
        email: str,
        password: str,
        client: str,
        *,
        known_device: str | None = None,
    ) -> LoginStep:
        """Step one; `known_device`: the browser's known-device cookie, if it sent one."""
        now = self._clock()
        email = email.strip().lower()
        try:
            async with self._db.transaction() as conn:
                tenant_row = (
                    await conn.execute(
                        select(tenants).where(or_(tenants.c.id == tenant, tenants.c.name == tenant))
                    )
                ).first()
                user = None
                if tenant_row is not None:
                    user = await TenantScope(conn, tenant_row.id).one(users, users.c.email == email)
                keys = self._limit_keys(
                    tenant_row.id if tenant_row else tenant, email, client,
                    self._known(known_device, user, now),
                )
                # counted as a failure until the password proves right (no parallel overshoot)
                attempt = await self._limiter.reserve(conn, keys, now)
        except SQLAlchemyError:
            raise ServiceUnavailable("login is unavailable: the database did not answer") from None
        if user is None or user.state != PersonState.ACTIVE:
            # Invited (no password yet) or deactivated: refused as a wrong password is, after
            # the same work, so the reply tells nothing of the account's state.
            await asyncio.to_thread(self._passwords.verify_unknown, password)
            ok = False
        else:
            ok = await asyncio.to_thread(self._passwords.verify, user.password_hash, password)
        if not ok or user is None or tenant_row is None:
            await self._login_failed(tenant_row, user, email, keys[1], now)
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
        account: LimitKey,
        now: datetime,
    ) -> None:
        """The failure is counted already (reserved before the check); audit it."""
        if tenant_row is None:
            return  # no tenant to audit in (the failure still counts)
        # Never the typed string: people type passwords into the email field. A known user
        # is named by id only; an unknown account by a short keyed digest (the same typo
        # gives the same digest, so repeated guesses at one name can be told apart).
        details: dict[str, Any] = {"step": "password"}
        if user is None:
            details["account"] = masked_account(self._hmac_key, tenant_row.id, email)
        elif user.state != PersonState.ACTIVE:
            details["state"] = user.state  # for the admins: no password was checked
        async with self._db.transaction() as conn:
            scope = TenantScope(conn, tenant_row.id)
            await audit.record(
                scope,
                at=now,
                actor=f"user:{user.id}" if user else "anonymous",
                action="auth.login_failed",
                target=user.id if user else "unknown-user",
                details=details,
            )
            if user is not None:
                await self._note_failure(scope, user.id, account, now)

    async def _note_failure(
        self, scope: TenantScope, user_id: str, account: LimitKey, now: datetime
    ) -> None:
        """Count a failure on the user's row (shown at their next full sign-in); when the
        account reaches the limit (and at every hundredth failure after), say it is under
        attack: an audit entry for the tenant's admins and a warning in the broker's log."""
        await scope.update(
            users, users.c.id == user_id,
            failed_logins=users.c.failed_logins + 1, failed_login_at=now,
        )
        row = await scope.one(users, users.c.id == user_id)
        failures = row.failed_logins if row is not None else 0
        if failures != self._limiter.account_limit and failures % 100 != 0:
            return
        in_window = await self._limiter.count(scope.conn, account, now)
        await audit.record(
            scope,
            at=now,
            actor="broker",
            action="auth.account_under_attack",
            target=user_id,
            details={
                "failed_since_last_sign_in": failures,
                "failed_in_window": in_window,
                "window_seconds": self._limiter.window_seconds,
            },
        )
        log.warning(
            "account %s (tenant %s): %d failed sign-ins since its last sign-in; further "
            "attempts without its known-device cookie are slowed down",
            user_id, scope.tenant_id, failures,
        )

    def _known(
        self, cookie: str | None, user: Row[Any] | None, now: datetime
    ) -> KnownDevice | None:
        """The browser's known-device cookie, if it is valid for this very account."""
        if user is None:
            return None
        known = known_device.verify(self._hmac_key, cookie, now=now.timestamp())
        if known is None or known.user_id != user.id:
            return None
        if known.session_version != user.session_version:
            return None  # "sign out everywhere" since
        return known

    def _limit_keys(
        self, tenant: str, email: str, client: str, known: KnownDevice | None
    ) -> list[LimitKey]:
        """[account from this source (hard), account (slowed, or only counted for a known
        browser), client address (hard)]."""
        return [
            self._limiter.account_client(
                tenant, email, client, known=known.browser_id if known else None
            ),
            self._limiter.account(tenant, email, known=known is not None),
            self._limiter.client(client),
        ]

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
        return LoginStep(
            kind, challenge, int(self._challenge_ttl.total_seconds()), uri,
            mfa_reset=kind == ENROLL and user.mfa_reset_at is not None,
        )

    async def mfa(
        self,
        challenge: str,
        code: str,
        client: str,
        *,
        browser: bool = False,
        known_device: str | None = None,
    ) -> LoginResult:
        """Step two; `browser`: the session is a cookie session (see `UserSessions.open`);
        `known_device`: the browser's known-device cookie, if it sent one."""
        now = self._clock()
        digest = token_hash(self._hmac_key, CHALLENGE_PURPOSE, challenge)
        client_key = self._limiter.client(client)
        result: LoginResult | None = None
        try:
            async for txn in self._db.attempts():
                async with txn as conn:
                    row = (
                        await conn.execute(
                            select(mfa_challenges).where(
                                mfa_challenges.c.challenge_hash == digest,
                                mfa_challenges.c.kind.in_((TOTP, ENROLL)),
                            )
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
                        keys = self._limit_keys(
                            row.tenant_id, user.email, client, self._known(known_device, user, now)
                        )
                        await self._limiter.check(conn, keys, now)
                        result = await self._verify(scope, row, user, code, now, browser)
                        if result is None:
                            await scope.update(
                                mfa_challenges,
                                mfa_challenges.c.id == row.id,
                                failures=mfa_challenges.c.failures + 1,
                            )
                            await self._limiter.failed(conn, keys, now)
                            await audit.record(
                                scope,
                                at=now,
                                actor=f"user:{user.id}",
                                action="auth.mfa_failed",
                                target=user.id,
                                details={"kind": row.kind},
                            )
                            await self._note_failure(scope, user.id, keys[1], now)
                        else:
                            await self._limiter.succeeded(conn, keys[0])
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
        if user.state != PersonState.ACTIVE:
            return None  # deactivated since the password step
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
                mfa_reset_at=None,  # the reset an admin made, if any, is done with
            ):
                return None
            recovery = await self._new_recovery_codes(scope, user.id, now)
        elif totp.looks_like_code(code):
            if user.totp_sealed is None:
                return None  # reset by an admin since the password step
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
        failed = None
        if user.failed_logins:
            failed = FailedSignIns(user.failed_logins, user.failed_login_at)
        await scope.update(  # a full sign-in: the admins' list shows when
            users, users.c.id == user.id, failed_logins=0, failed_login_at=None,
            last_sign_in_at=now,
        )
        await audit.record(
            scope,
            at=now,
            actor=f"user:{user.id}",
            action="auth.mfa_enroll" if how == ENROLL else "auth.login",
            target=user.id,
            details={
                "mfa": how, "session": tokens.session_id,
                **({"after_reset": True} if how == ENROLL and user.mfa_reset_at else {}),
            },
        )
        cookie = known_device.issue(
            self._hmac_key, user.id, user.session_version, now=now.timestamp()
        )
        return LoginResult(tokens, recovery, cookie, failed)

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
