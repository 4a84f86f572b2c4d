"""Devices (agents): enrollment codes (`broker.devices.codes`), rotating refresh tokens,
access tokens, and the admin's view of the fleet (`broker.devices.fleet`).

A refresh token works once. Presenting one that was already used means a copy exists
somewhere else: the whole family is revoked and the event is audited (theft detection);
the rotation is `broker.auth.refresh`'s, shared with people's sessions.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, bindparam, select

from broker.accounts.people import PersonState
from broker.audit import log as audit
from broker.auth import refresh as rotation
from broker.auth.secrets import new_token, token_hash
from broker.auth.tokens import TokenSigner
from broker.bucket import outbox
from broker.clock import Clock
from broker.db import notify
from broker.db.database import Database
from broker.db.notify import Note, Topic
from broker.db.schema import device_refresh_tokens, devices, enrollment_codes, users
from broker.db.scope import TenantScope
from broker.devices import caps, codes, fleet, policy
from broker.errors import Conflict, NotFound, Unauthenticated
from broker.identity import Principal
from broker.settings import Secret
from shared.errors import ErrorCode
from shared.wire import PolicyUpdate, TokenPair

CODE_PURPOSE = "enrollment-code"
REFRESH_PURPOSE = "device-refresh"
_DEVICE = select(devices).where(
    devices.c.tenant_id == bindparam("tenant"), devices.c.id == bindparam("device")
)


async def enrolled_device(scope: TenantScope, principal: Principal) -> Row[Any]:
    """The calling device's row, read in the caller's transaction; 401 `invalid_token` when
    it is revoked or gone (its access token works only while the device is enrolled). The
    device routes whose service calls this skip the guard's own read (`Route.checks_device`)."""
    device = (await scope.execute(
        _DEVICE, {"tenant": scope.tenant_id, "device": principal.subject}
    )).first()
    return check_enrolled(principal, device, device_user="user_id")


def check_enrolled(
    principal: Principal, row: Row[Any] | None, *, device_user: str
) -> Row[Any]:
    """`row`, if it (the device's columns, its person's id under `device_user`) is the
    calling device, enrolled and not revoked; 401 `invalid_token` else."""
    if row is None or row.revoked_at is not None or (
        getattr(row, device_user) != principal.user_id
    ):
        raise Unauthenticated("this device is not enrolled", code=ErrorCode.INVALID_TOKEN)
    return row


@dataclass(frozen=True, slots=True)
class EnrollmentCode:
    code: str
    expires_at: datetime
    info: dict[str, Any]  # as the admin's list shows it (`codes.describe`)


class DeviceAuth:
    def __init__(
        self,
        *,
        db: Database,
        signer: TokenSigner,
        hmac_key: Secret,
        refresh_ttl: int,
        code_ttl: int,
        clock: Clock,
        device_cap: int = caps.DEFAULT_DEVICE_CAP,
    ) -> None:
        self._device_cap = device_cap  # unless the tenant or the person has their own
        self._db = db
        self._signer = signer
        self._hmac_key = hmac_key
        self._refresh_ttl = timedelta(seconds=refresh_ttl)
        self._code_ttl = timedelta(seconds=code_ttl)
        self._clock = clock

    async def issue_enrollment_code(
        self,
        tenant_id: str,
        user_id: str,
        *,
        actor: str,
        max_uses: int = 1,
        ttl: int | None = None,
        label: str | None = None,
    ) -> EnrollmentCode:
        """A code enrolling up to `max_uses` devices of the person, for `ttl` seconds (default
        BUCKETREEL_ENROLLMENT_CODE_TTL); audited. The code is in the reply only."""
        lifetime = timedelta(seconds=ttl) if ttl is not None else self._code_ttl
        codes.check(max_uses=max_uses, ttl=int(lifetime.total_seconds()), label=label)
        now = self._clock()
        code, code_id = new_token("bre_", 24), str(uuid.uuid4())
        async for txn in self._db.attempts():
            async with txn as conn:
                scope = TenantScope(conn, tenant_id)
                await audit.lock_chain(scope)  # first (README's lock order)
                person = await scope.one(users, users.c.id == user_id)
                if person is None:
                    raise NotFound("no such user in this tenant")
                if person.state == "deactivated":
                    raise Conflict("this person is deactivated: their devices cannot enroll")
                await scope.insert(
                    enrollment_codes,
                    id=code_id,
                    user_id=user_id,
                    code_hash=token_hash(self._hmac_key, CODE_PURPOSE, code),
                    created_at=now,
                    expires_at=now + lifetime,
                    max_uses=max_uses,
                    label=label,
                )
                await audit.record(
                    scope,
                    at=now,
                    actor=actor,
                    action="device.enrollment_code",
                    target=user_id,
                    details={
                        "code": code_id,
                        "expires_at": (now + lifetime).isoformat(),
                        "max_uses": max_uses,
                    },
                )
                info = await codes.one(scope, code_id, now)
        return EnrollmentCode(code, now + lifetime, info)

    async def list_codes(self, tenant_id: str) -> list[dict[str, Any]]:
        """The tenant's enrollment codes, newest first (never a code itself)."""
        async with self._db.transaction() as conn:
            return await codes.listed(TenantScope(conn, tenant_id), self._clock())

    async def revoke_code(self, tenant_id: str, code_id: str, *, actor: str) -> dict[str, Any]:
        """Withdraw a code: it enrolls no more devices (those it enrolled stay); audited."""
        now = self._clock()
        async for txn in self._db.attempts():
            async with txn as conn:
                scope = TenantScope(conn, tenant_id)
                await audit.lock_chain(scope)  # first (README's lock order)
                info = await codes.revoke(scope, code_id, now)
                await audit.record(
                    scope, at=now, actor=actor, action="device.enrollment_code_revoke",
                    target=code_id,
                )
        return info

    async def enroll(self, code: str, name: str, public_key: str | None = None) -> TokenPair:
        now = self._clock()
        code_hash = token_hash(self._hmac_key, CODE_PURPOSE, code)
        async for txn in self._db.attempts():
            async with txn as conn:
                # The code itself names the tenant: this is the one lookup made before a tenant
                # is known, by an unguessable value. Then the tenant's chain lock (before any
                # write: README's lock order), then the claim, conditional, so it works once.
                found = (
                    await conn.execute(
                        select(enrollment_codes.c.tenant_id).where(
                            enrollment_codes.c.code_hash == code_hash
                        )
                    )
                ).first()
                row = None
                if found is not None:
                    scope = TenantScope(conn, found.tenant_id)
                    await audit.lock_chain(scope)
                    row = await codes.claim(scope, code_hash, now)
                if found is None or row is None:
                    raise Unauthenticated(
                        "enrollment code is unknown, used up, revoked or expired",
                        code=ErrorCode.INVALID_ENROLLMENT_CODE,
                    )
                result = await self._new_device(
                    scope, row.user_id, name, public_key, now, actor=None, by="code",
                    code_id=row.id,
                )
        return result

    async def refresh(self, refresh_token: str) -> TokenPair:
        now = self._clock()
        digest = token_hash(self._hmac_key, REFRESH_PURPOSE, refresh_token)
        reused: Any = None
        async for txn in self._db.attempts():
            async with txn as conn:
                presented = await rotation.find(conn, device_refresh_tokens, digest)
                scope, row = presented.scope, presented.row
                used = await rotation.use(
                    presented, device_refresh_tokens, now,
                    live=row.revoked_at is None and row.expires_at > now,
                    claim_if=(
                        device_refresh_tokens.c.revoked_at.is_(None),
                        device_refresh_tokens.c.expires_at > now,
                    ),
                )
                device = await scope.one(devices, devices.c.id == row.device_id)
                if (
                    used is rotation.Use.FRESH
                    and device is not None
                    and device.revoked_at is None
                ):
                    token = await self._new_refresh(scope, row.device_id, row.family_id, now)
                    return self._pair(row.tenant_id, device.user_id, row.device_id, token)
                reused = row if used is rotation.Use.REPLAYED else None
        if reused is not None:
            await self._revoke_family(reused, now)
        # Reached only on failure; any revocation has committed.
        raise rotation.not_valid()

    async def _revoke_family(self, token: Any, now: datetime) -> None:
        """A used refresh token came back: end its whole family, audited. A transaction of
        its own, chain lock first (the claim before may hold the token's row: README's lock
        order)."""
        async for txn in self._db.attempts():
            async with txn as conn:
                scope = TenantScope(conn, token.tenant_id)
                await audit.lock_chain(scope)
                await scope.update(
                    device_refresh_tokens,
                    device_refresh_tokens.c.family_id == token.family_id,
                    device_refresh_tokens.c.revoked_at.is_(None),
                    revoked_at=now,
                )
                await rotation.reused(
                    scope, now, kind="device", actor=f"device:{token.device_id}",
                    target=token.device_id, details={"family": token.family_id},
                )

    async def enroll_user(
        self, principal: Principal, name: str, public_key: str | None = None
    ) -> TokenPair:
        """A device for the signed-in person (login with 2FA instead of an enrollment code)."""
        now = self._clock()
        async for txn in self._db.attempts():
            async with txn as conn:
                scope = TenantScope(conn, principal.tenant_id)
                await audit.lock_chain(scope)  # first (README's lock order)
                result = await self._new_device(
                    scope, principal.user_id, name, public_key, now,
                    actor=f"user:{principal.user_id}", by="login",
                )
        return result

    async def _new_device(
        self,
        scope: TenantScope,
        user_id: str,
        name: str,
        public_key: str | None,
        now: datetime,
        *,
        actor: str | None,
        by: str,
        code_id: str | None = None,
    ) -> TokenPair:
        """A device row, its first refresh token and the audit entry, in the caller's
        transaction; `actor` None means the new device itself (enrollment by code). A
        deactivated person gets no device (their codes ended with them)."""
        if await scope.one(
            users, users.c.id == user_id, users.c.state == PersonState.DEACTIVATED
        ):
            raise Unauthenticated(
                "enrollment code is unknown, already used or expired",
                code=ErrorCode.INVALID_ENROLLMENT_CODE,
            )
        await caps.require_room(scope, user_id, self._device_cap)
        device_id = str(uuid.uuid4())
        await scope.insert(
            devices, id=device_id, user_id=user_id, name=name, created_at=now,
            public_key=public_key,
        )
        refresh = await self._new_refresh(scope, device_id, str(uuid.uuid4()), now)
        await audit.record(
            scope,
            at=now,
            actor=actor or f"device:{device_id}",
            action="device.enroll",
            target=user_id,
            details={
                "device_name": name,
                "device": device_id,
                "by": by,
                "custody_key": public_key is not None,
                **({"code": code_id} if code_id else {}),
            },
        )
        await outbox.enqueue(scope, outbox.DEVICE, device_id, now)  # its record in the bucket
        return self._pair(scope.tenant_id, user_id, device_id, refresh)

    async def set_cap(
        self, tenant_id: str, *, user_id: str | None, cap: int | None, actor: str
    ) -> dict[str, Any]:
        """Set or clear (None) the tenant's device cap, or one person's; audited."""
        async for txn in self._db.attempts():
            async with txn as conn:
                scope = TenantScope(conn, tenant_id)
                await audit.lock_chain(scope)  # first (README's lock order)
                state = await caps.set_cap(scope, user_id=user_id, cap=cap)
                await audit.record(
                    scope,
                    at=self._clock(),
                    actor=actor,
                    action="device.cap_set",
                    target=user_id or tenant_id,
                    details={"device_cap": cap, "scope": "person" if user_id else "tenant"},
                )
        return {**state, "default": self._device_cap}

    async def cap_of(self, tenant_id: str, user_id: str) -> dict[str, Any]:
        """A person's device cap as `shared.api.DeviceCap` gives it."""
        async with self._db.read() as conn:
            return await caps.describe(TenantScope(conn, tenant_id), user_id, self._device_cap)

    async def list_devices(self, tenant_id: str) -> list[dict[str, Any]]:
        """Every device with its person, state, agent, backlog, last upload, recent gaps."""
        async with self._db.transaction() as conn:
            return await fleet.listing(TenantScope(conn, tenant_id), self._clock())

    async def silent_devices(self, tenant_id: str) -> list[dict[str, Any]]:
        """The devices not revoked that went silent (the admin's start page)."""
        async with self._db.transaction() as conn:
            return await fleet.silent(TenantScope(conn, tenant_id), self._clock())

    async def revoke(self, tenant_id: str, device_id: str, *, actor: str) -> None:
        """The device's access and refresh tokens stop working at once."""
        now = self._clock()
        async for txn in self._db.attempts():
            async with txn as conn:
                scope = TenantScope(conn, tenant_id)
                await audit.lock_chain(scope)  # first (README's lock order)
                if await scope.one(devices, devices.c.id == device_id) is None:
                    raise NotFound("no such device")
                await scope.update(
                    devices, devices.c.id == device_id, devices.c.revoked_at.is_(None),
                    revoked_at=now,
                )
                await scope.update(
                    device_refresh_tokens,
                    device_refresh_tokens.c.device_id == device_id,
                    device_refresh_tokens.c.revoked_at.is_(None),
                    revoked_at=now,
                )
                await audit.record(
                    scope, at=now, actor=actor, action="device.revoke", target=device_id
                )
                await notify.publish(conn, Note(Topic.DEVICE_REVOKED, tenant_id, device_id))

    async def verify_device(self, principal: Principal) -> None:
        """`check_device` in a read transaction of its own (the request guard's call)."""
        async with self._db.read() as conn:
            await self.check_device(TenantScope(conn, principal.tenant_id), principal)

    async def describe_policy(self, tenant_id: str) -> dict[str, Any]:
        """The tenant's recording policy as an admin sees it (`broker.devices.policy`)."""
        async with self._db.transaction() as conn:
            return await policy.describe(TenantScope(conn, tenant_id))

    async def update_policy(
        self, tenant_id: str, change: PolicyUpdate, *, actor: str
    ) -> dict[str, Any]:
        """Set (or clear, with None) the keys `change` names; audited with old and new."""
        async for txn in self._db.attempts():
            async with txn as conn:
                result = await policy.update(
                    TenantScope(conn, tenant_id), change, now=self._clock(), actor=actor
                )
        return result

    async def check_device(self, scope: TenantScope, principal: Principal) -> None:
        """A device's access token works only while the device is not revoked."""
        await enrolled_device(scope, principal)

    async def _new_refresh(
        self, scope: TenantScope, device_id: str, family_id: str, now: datetime
    ) -> str:
        return await rotation.mint(
            scope, device_refresh_tokens, key=self._hmac_key, purpose=REFRESH_PURPOSE,
            prefix="brd_", now=now, expires_at=now + self._refresh_ttl,
            device_id=device_id, family_id=family_id,
        )

    def _pair(self, tenant_id: str, user_id: str, device_id: str, refresh: str) -> TokenPair:
        principal = Principal(
            kind="device", subject=device_id, tenant_id=tenant_id, user_id=user_id, role="device"
        )
        return TokenPair(
            device_id=device_id,
            access_token=self._signer.issue(principal),
            refresh_token=refresh,
            expires_in=self._signer.ttl,
        )
