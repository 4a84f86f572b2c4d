"""Invitations: an admin invites a person by email; the person sets a password through a
one-time link, then signs in and enrols TOTP as at anyone's first sign-in.

The invitation is a `mfa_challenges` row of kind "invite" that holds only an HMAC of the
link's token (`broker.auth.secrets`, under a purpose of its own, so no other kind of token
matches it), valid `INVITE_TTL`, and claimed once by a conditional UPDATE. Until the person
accepts, their row is in state "invited" with a password hash nothing verifies against
(`broker.accounts.people.NO_PASSWORD`), so they cannot sign in.

Inviting an email that has an account is refused (409, saying so); inviting a person who is
still invited replaces their link (the old row is deleted: the old link stops working) and
their role. Housekeeping deletes expired invitations like expired login challenges
(`broker.db.housekeeping`); the person stays invited until an admin invites them again.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from broker.accounts.passwords import Passwords, check_policy
from broker.accounts.people import INVITE, NO_PASSWORD, PersonState
from broker.accounts.service import check_email, check_name, check_role
from broker.audit import log as audit
from broker.auth.secrets import new_token, token_hash
from broker.clock import Clock
from broker.db.database import Database
from broker.db.schema import mfa_challenges, tenants, users
from broker.db.scope import TenantScope
from broker.errors import Conflict, InvalidInput
from broker.settings import Secret
from shared.errors import ErrorCode

INVITE_PURPOSE = "invite"
INVITE_TTL = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Invited:
    """A new invitation: the token goes into the link, shown to the admin once."""

    user_id: str
    email: str
    role: str
    token: str
    expires_at: datetime
    replaced: bool  # the person was invited before; that link no longer works


@dataclass(frozen=True, slots=True)
class Invitation:
    """What the link's page tells the person."""

    user_id: str
    email: str
    role: str
    tenant: str  # the organisation's name, which the person types at sign-in
    expires_at: datetime


def _not_valid(why: str) -> InvalidInput:
    return InvalidInput(why, code=ErrorCode.INVALID_TOKEN)


UNKNOWN = (
    "this invitation link is not valid: it may be mistyped, or a newer invitation replaced "
    "it; ask your admin to invite you again"
)


class Invitations:
    def __init__(
        self,
        *,
        db: Database,
        passwords: Passwords,
        hmac_key: Secret,
        clock: Clock,
        ttl: timedelta = INVITE_TTL,
    ) -> None:
        self._db = db
        self._passwords = passwords
        self._hmac_key = hmac_key
        self._clock = clock
        self._ttl = ttl

    def _digest(self, token: str) -> str:
        return token_hash(self._hmac_key, INVITE_PURPOSE, token)

    async def invite(
        self, tenant_id: str, email: str, role: str, *, actor: str, name: str | None = None
    ) -> Invited:
        """Invite `email` as `role` (`name`: their display name; a still-invited person's is
        replaced only when one is given)."""
        email, role, name = check_email(email), check_role(role), check_name(name)
        token = new_token("bri_", 32)
        async for txn in self._db.attempts():
            async with txn as conn:
                now = self._clock()
                scope = TenantScope(conn, tenant_id)
                await audit.lock_chain(scope)  # before the first write (README's lock order)
                user_id, replaced = await self._invitee(scope, email, role, now, name)
                await scope.insert(
                    mfa_challenges,
                    id=str(uuid.uuid4()),
                    user_id=user_id,
                    challenge_hash=self._digest(token),
                    kind=INVITE,
                    failures=0,
                    created_at=now,
                    expires_at=now + self._ttl,
                )
                await audit.record(
                    scope, at=now, actor=actor, action="user.invite", target=user_id,
                    details={
                        "email": email, "role": role, "replaced": replaced, "name": name,
                        "expires_at": (now + self._ttl).isoformat(),
                    },
                )
        return Invited(user_id, email, role, token, now + self._ttl, replaced)

    async def _invitee(
        self, scope: TenantScope, email: str, role: str, now: datetime, name: str | None
    ) -> tuple[str, bool]:
        """The invited person's row, made now or (still invited) with its old links gone."""
        existing = await scope.one(users, users.c.email == email)
        if existing is None:
            user_id = str(uuid.uuid4())
            await scope.insert(
                users, id=user_id, email=email, role=role, password_hash=NO_PASSWORD,
                session_version=1, created_at=now, state=PersonState.INVITED,
                display_name=name,
            )
            return user_id, False
        if existing.state != PersonState.INVITED:
            raise Conflict(
                f"{email} already has an account in this organisation ({existing.state}, "
                f"{existing.role})"
            )
        await scope.execute(
            delete(mfa_challenges).where(
                mfa_challenges.c.tenant_id == scope.tenant_id,
                mfa_challenges.c.user_id == existing.id,
                mfa_challenges.c.kind == INVITE,
            )
        )
        named = {"display_name": name} if name else {}
        await scope.update(users, users.c.id == existing.id, role=role, **named)
        return str(existing.id), True

    async def look_up(self, token: str) -> Invitation:
        """The invitation this link's token opens, or 400 saying why it opens none."""
        async with self._db.transaction() as conn:
            row = await _find(conn, self._digest(token))
            scope = TenantScope(conn, row.tenant_id)
            person = await scope.one(users, users.c.id == row.user_id)
            tenant = (
                await scope.execute(select(tenants.c.name).where(tenants.c.id == row.tenant_id))
            ).scalar_one()
        person = _check_open(row, person, self._clock())
        return Invitation(person.id, person.email, person.role, tenant, row.expires_at)

    async def accept(self, token: str, password: str) -> Invitation:
        """Set the invited person's password (the operator's password rules); they are active
        from now on and sign in at /signin, where their first sign-in enrols TOTP."""
        check_policy(password)
        invitation = await self.look_up(token)  # before hashing: a bad link costs no Argon2
        password_hash = await asyncio.to_thread(self._passwords.hash, password)
        digest = self._digest(token)
        async for txn in self._db.attempts():
            async with txn as conn:
                now = self._clock()
                # The token names its tenant (the one lookup before a tenant is known, by an
                # unguessable value); then the chain lock, then the claim, conditional.
                row = await _find(conn, digest)
                scope = TenantScope(conn, row.tenant_id)
                await audit.lock_chain(scope)
                claimed = await scope.update(
                    mfa_challenges, mfa_challenges.c.id == row.id,
                    mfa_challenges.c.used_at.is_(None), mfa_challenges.c.expires_at > now,
                    used_at=now,
                )
                if not claimed or not await scope.update(
                    users, users.c.id == row.user_id, users.c.state == PersonState.INVITED,
                    state=PersonState.ACTIVE, password_hash=password_hash,
                ):
                    raise _not_valid("this invitation is no longer valid; ask your admin")
                await audit.record(
                    scope, at=now, actor=f"user:{row.user_id}", action="user.invite_accept",
                    target=row.user_id,
                )
        return invitation


async def _find(conn: AsyncConnection, digest: str) -> Row[Any]:
    row = (
        await conn.execute(
            select(mfa_challenges).where(
                mfa_challenges.c.challenge_hash == digest, mfa_challenges.c.kind == INVITE
            )
        )
    ).first()
    if row is None:
        raise _not_valid(UNKNOWN)
    return row


def _check_open(row: Row[Any], person: Row[Any] | None, now: datetime) -> Row[Any]:
    """The invited person, while the invitation is open; else 400 saying why it is not."""
    if person is None:
        raise _not_valid(UNKNOWN)
    if person.state == PersonState.ACTIVE:
        raise _not_valid("this invitation was used already: sign in with your password")
    if row.used_at is not None or person.state != PersonState.INVITED:
        raise _not_valid("this invitation was withdrawn; ask your admin")
    if row.expires_at <= now:
        raise _not_valid(
            f"this invitation expired on {row.expires_at:%Y-%m-%d %H:%M} UTC; ask your admin "
            "to invite you again"
        )
    return person
