"""The tenant's recording policy: fps, segment length, idle timeout and quality level for
all its agents.

An admin sets it (CLI `admin set-policy`, `PATCH /api/v1/admin/policy`); every change is
audited with the values before and after. Each agent gets it in the reply to its heartbeat
and applies it from its next segment; the agent's own command-line flags still win. A key
that is not set (NULL) leaves that setting to each agent's own configuration.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, select

from broker.audit import log as audit
from broker.db import notify
from broker.db.notify import Note, Topic
from broker.db.schema import device_policies
from broker.db.scope import TenantScope
from shared.wire import Policy, PolicyUpdate, format_timestamp


def _policy(row: Row[Any] | None) -> Policy:
    if row is None:
        return Policy()
    return Policy(
        fps=row.fps, segment_seconds=row.segment_seconds, idle_seconds=row.idle_seconds,
        quality=row.quality,
    )


_KEYS = ("fps", "segment_seconds", "idle_seconds", "quality")


def returned() -> list[Any]:
    """The tenant's policy keys as columns of another statement (one scalar subquery each,
    NULL where unset or without a policy; the tenant bound as `tenant`): a statement on the
    device path returns the policy with its own answer, with no read of its own."""
    return [
        select(device_policies.c[key])
        .where(device_policies.c.tenant_id == bindparam("tenant"))
        .scalar_subquery()
        .label(f"policy_{key}")
        for key in _KEYS
    ]


def of_returned(row: Row[Any]) -> Policy:
    """The policy in a row with `returned()`'s columns."""
    return Policy(
        fps=row.policy_fps, segment_seconds=row.policy_segment_seconds,
        idle_seconds=row.policy_idle_seconds, quality=row.policy_quality,
    )


async def describe(scope: TenantScope) -> dict[str, Any]:
    """What an admin sees: every key (null where not set) and when it last changed."""
    row = await scope.one(device_policies)
    updated_at = format_timestamp(row.updated_at) if row is not None else None
    return {**_policy(row).values(), "updated_at": updated_at}


async def update(
    scope: TenantScope, change: PolicyUpdate, *, now: datetime, actor: str
) -> dict[str, Any]:
    """Apply `change` in the caller's transaction and audit it; returns `describe`'s view."""
    # one writer per tenant at a time, so two first saves cannot both insert: the tenant's
    # writer turn, taken first (README's lock order)
    await audit.lock_chain(scope)
    row = await scope.one(device_policies)
    old = _policy(row)
    new = change.applied_to(old)
    values = {**new.values(), "updated_at": now}
    if row is None:
        await scope.insert(device_policies, **values)
    else:
        await scope.update(device_policies, **values)
    await notify.publish(scope.conn, Note(Topic.POLICY, scope.tenant_id))
    await audit.record(
        scope, at=now, actor=actor, action="policy.set", target=scope.tenant_id,
        details={"old": old.values(), "new": new.values()},
    )
    return await describe(scope)
