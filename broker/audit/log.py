"""The audit log: append-only, per tenant, hash-chained and MACed under a key not in the database.

Each entry's `hash` covers its content and the previous entry's hash (SHA-256), so removing,
reordering or editing an entry breaks the chain from there on. Anyone with write access to
the database can recompute such a chain, so each entry also carries a `mac`: HMAC-SHA256 of
its hash under the audit key of version `mac_key`, derived (HKDF) from the broker's master
key of that version (`BUCKETREEL_MASTER_KEYS`), which never reaches the database. Without
the key, a rewritten chain cannot be given valid MACs, and `verify_chain` says where it broke.

Entries written before migration 0011 had no MAC; the migration gives them one
(`seal_unkeyed`, after checking their hash chain) when it runs with the broker's keys, as
the broker and its `migrate` command run it. After a master-key
rotation `remac` moves every entry to the newest key; the hash chain itself never changes.

`record` appends nothing at once: it queues the entry, and the transaction links its
entries just before it commits (`broker.db.database.before_commit`) under the tenant's chain
lock — on PostgreSQL a per-tenant advisory transaction lock taken as the transaction's last
statements (read the chain's head, insert the entries, commit), on SQLite the database's
write lock every writer holds — so the lock is held for a few milliseconds, never across a
request's other work, and its holder waits for nothing but its own inserts (it can be part
of no deadlock). Entries are in the same transaction as the change they record: both
commit, or neither (a process dying between them loses neither). Their order is the order
in which transactions commit, total per tenant, across any number of broker processes.

`lock_chain` is something else: a per-tenant *writer turn* (its own advisory lock class)
that the few paths which read and then write a tenant's shared rows (settings, people,
enrollment, recording start) take first, so that two of them never interleave. The device
path's hot routes do not take it. This module is the chain's one home.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from broker.db.database import AUDIT_KEYS_INFO, LOCAL_INFO, before_commit, transaction_state
from broker.db.schema import audit_log
from broker.db.scope import TenantScope
from broker.sealing import ChainKeys
from shared import auditchain

GENESIS = auditchain.GENESIS
_LOCKED_INFO = "bucketreel.audit_chain_locked"
_PENDING = "audit.pending"  # this transaction's entries, not linked yet
# pg_advisory_xact_lock(class, key): the tenant's audit chain ("BRal"), and the tenant's
# writer turn ("BRwt").
_CHAIN_LOCK_CLASS = 0x4252616C
_TURN_LOCK_CLASS = 0x42527774
_ADVISORY = text("SELECT pg_advisory_xact_lock(:cls, hashtext(:tenant))")
# PostgreSQL: the chain lock and then the head, in one round trip; the same and the insert,
# when the head is the one expected (migration 0016).
_LOCKED_HEAD = text("SELECT seq, hash FROM bucketreel_audit_chain_head(:cls, :tenant)")
_LINK = text(
    "SELECT linked, seq, hash FROM"
    " bucketreel_audit_link(:cls, :tenant, :seq, :hash, CAST(:entries AS jsonb))"
)
_HEADS = "audit.heads"  # `Database.local`: this process's `_Heads`
_HEAD = (
    select(audit_log.c.seq, audit_log.c.hash)
    .where(audit_log.c.tenant_id == bindparam("tenant"))
    .order_by(audit_log.c.seq.desc())
    .limit(1)
)


class ChainLockOrder(RuntimeError):
    """A transaction asked for the tenant's writer turn after it had written or locked rows:
    a bug (it could deadlock), never user input. See the lock order in README's design
    notes."""


@dataclass(frozen=True, slots=True)
class _Pending:
    scope: TenantScope
    at: datetime
    actor: str
    action: str
    target: str
    details: str


class AuditKeyMissing(RuntimeError):
    """The database handle has no audit keys: the broker was wired without its settings."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    seq: int
    at: datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any]
    prev_hash: str
    hash: str
    mac: str | None = None
    mac_key: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Head:
    """The newest entry of a tenant's chain: what employees see beside their receipts."""

    seq: int
    hash: str
    mac: str | None
    mac_key: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainReport:
    entries: int
    problems: list[str]
    key_versions: dict[str, int]  # entries per audit key version
    head: Head | None

    @property
    def intact(self) -> bool:
        return not self.problems


def entry_hash(
    *,
    tenant_id: str,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    target: str,
    details: str,
    prev_hash: str,
) -> str:
    """The entry's public chain hash (`shared.auditchain`, which the vault recomputes)."""
    return auditchain.entry_hash(
        tenant_id=tenant_id, seq=seq, at=at.isoformat(), actor=actor, action=action,
        target=target, details=details, prev_hash=prev_hash,
    )


def entry_mac(key: bytes, *, tenant_id: str, seq: int, digest: str, version: str) -> str:
    """The MAC of one entry: its chain hash (which covers everything before it), bound to
    its tenant, position and key version."""
    material = json.dumps([tenant_id, seq, digest, version], separators=(",", ":"))
    return hmac.new(key, material.encode(), hashlib.sha256).hexdigest()


def _row_hash(tenant_id: str, r: Any) -> str:
    return entry_hash(
        tenant_id=tenant_id, seq=r.seq, at=r.at, actor=r.actor, action=r.action,
        target=r.target, details=r.details, prev_hash=r.prev_hash,
    )


def _keys(scope: TenantScope) -> ChainKeys:
    keys = scope.conn.info.get(AUDIT_KEYS_INFO)
    if not isinstance(keys, ChainKeys):
        raise AuditKeyMissing("this database handle has no audit keys (Database.audit_keys)")
    return keys


async def lock_chain(scope: TenantScope) -> None:
    """Take the tenant's writer turn for the rest of the transaction; idempotent.

    For paths that read a tenant's shared rows and write on what they read (two first saves
    of a setting must not both insert). It must come before the transaction writes or locks
    any row (PostgreSQL: a per-tenant advisory transaction lock, which conflicts with
    nothing but itself, so foreign keys' KEY SHARE locks never meet it; the chain itself is
    linked at commit under a lock of its own). On SQLite every write transaction holds the
    database's write lock from `BEGIN IMMEDIATE` on, which serializes writers anyway.
    """
    sync = scope.conn.sync_connection
    transaction = sync.get_transaction() if sync is not None else None
    held = scope.conn.info.get(_LOCKED_INFO)
    if held is not None and held[0] is transaction and held[1] == scope.tenant_id:
        return
    if scope.conn.dialect.name == "postgresql":
        wrote = (await scope.execute(
            text("SELECT pg_current_xact_id_if_assigned() IS NOT NULL")
        )).scalar_one()
        if wrote:
            raise ChainLockOrder(
                "the tenant's writer turn must be taken before the transaction's first write"
            )
        await scope.execute(_ADVISORY.bindparams(cls=_TURN_LOCK_CLASS, tenant=scope.tenant_id))
    scope.conn.info[_LOCKED_INFO] = (transaction, scope.tenant_id)


async def _lock_links(scope: TenantScope) -> None:
    """The tenant's chain lock, until the transaction ends (PostgreSQL; SQLite's writers
    hold the database's write lock already)."""
    if scope.conn.dialect.name == "postgresql":
        await scope.execute(_ADVISORY.bindparams(cls=_CHAIN_LOCK_CLASS, tenant=scope.tenant_id))


async def record(
    scope: TenantScope,
    *,
    at: datetime,
    actor: str,
    action: str,
    target: str,
    details: dict[str, Any] | None = None,
) -> None:
    """Queue one entry in the caller's transaction: it is linked into the chain just before
    that transaction commits (and is gone with it if it rolls back)."""
    _keys(scope)  # a handle without keys fails here, not at the commit
    state = transaction_state(scope.conn)
    pending: list[_Pending] = state.values.setdefault(_PENDING, [])
    details_json = json.dumps(details or {}, sort_keys=True, separators=(",", ":"))
    at = at.replace(microsecond=(at.microsecond // 1000) * 1000)  # same on every backend
    pending.append(_Pending(scope, at, actor, action, target, details_json))
    before_commit(scope.conn, _link)


@dataclass(slots=True)
class _Heads:
    """Per tenant, in this process: the head its last link left (what its next link
    expects to find), and the turn for sending links, so that each expects the one before."""

    turns: dict[str, asyncio.Lock] = field(default_factory=dict)
    expected: dict[str, tuple[int, str]] = field(default_factory=dict)


def _heads(conn: AsyncConnection) -> _Heads:
    local = conn.info[LOCAL_INFO]
    heads = local.get(_HEADS)
    if not isinstance(heads, _Heads):
        heads = local[_HEADS] = _Heads()
    return heads


def _chained(
    tenant_id: str, entries: list[_Pending], keys: ChainKeys, seq: int, prev_hash: str
) -> list[dict[str, Any]]:
    """The entries' rows after the head (`seq`, `prev_hash`): hashed, chained, MACed."""
    version = keys.current
    rows = []
    for entry in entries:
        seq += 1
        digest = entry_hash(
            tenant_id=tenant_id, seq=seq, at=entry.at, actor=entry.actor,
            action=entry.action, target=entry.target, details=entry.details,
            prev_hash=prev_hash,
        )
        rows.append({
            "tenant_id": tenant_id, "seq": seq, "at": entry.at, "actor": entry.actor,
            "action": entry.action, "target": entry.target, "details": entry.details,
            "prev_hash": prev_hash, "hash": digest, "mac_key": version,
            "mac": entry_mac(
                keys.keys[version], tenant_id=tenant_id, seq=seq, digest=digest,
                version=version,
            ),
        })
        prev_hash = digest
    return rows


async def _link(conn: AsyncConnection) -> None:
    """The transaction's last statements: per tenant, the queued entries inserted after the
    chain's head under the chain lock, which the commit then releases."""
    pending: list[_Pending] = transaction_state(conn).values.pop(_PENDING, [])
    tenants: dict[str, list[_Pending]] = {}
    for entry in pending:
        tenants.setdefault(entry.scope.tenant_id, []).append(entry)
    for tenant_id, entries in tenants.items():
        scope = entries[0].scope
        if scope.conn.dialect.name == "postgresql":
            await _link_postgresql(scope, entries)
            continue
        # SQLite: the writer holds the database's write lock already
        last = (await scope.execute(_HEAD, {"tenant": tenant_id})).first()
        head = (last.seq, last.hash) if last else (0, GENESIS)
        rows = _chained(tenant_id, entries, _keys(scope), *head)
        await scope.execute(insert(audit_log), rows)


async def _link_postgresql(scope: TenantScope, entries: list[_Pending]) -> None:
    """One round trip when the head is the one this process's last link left (migration
    0016's `bucketreel_audit_link`); else lock and head, then the insert."""
    tenant_id, keys = scope.tenant_id, _keys(scope)
    heads = _heads(scope.conn)
    turn = heads.turns.setdefault(tenant_id, asyncio.Lock())
    # Held until the link statement answers, not until the commit. A transaction has one
    # tenant on PostgreSQL (`TenantScope` refuses a second), so it waits for one turn and
    # one chain lock, in that order, and no cycle of them can form.
    async with turn:
        expected = heads.expected.pop(tenant_id, None)
        rows: list[dict[str, Any]] = []
        linked = False
        if expected is not None:
            rows = _chained(tenant_id, entries, keys, *expected)
            answer = (await scope.execute(_LINK, {
                "cls": _CHAIN_LOCK_CLASS, "tenant": tenant_id, "seq": expected[0],
                "hash": expected[1], "entries": json.dumps(rows, default=_iso),
            })).one()
            linked, head = bool(answer.linked), (answer.seq, answer.hash)
        else:
            last = (await scope.execute(
                _LOCKED_HEAD, {"cls": _CHAIN_LOCK_CLASS, "tenant": tenant_id}
            )).first()
            head = (last.seq, last.hash) if last else (0, GENESIS)
        if not linked:  # the lock is held by now: link after the head as it is
            rows = _chained(tenant_id, entries, keys, *head)
            await scope.execute(insert(audit_log), rows)
        heads.expected[tenant_id] = (rows[-1]["seq"], rows[-1]["hash"])


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} in an audit entry")


def _entry(r: Any) -> Entry:
    return Entry(
        seq=r.seq,
        at=r.at,
        actor=r.actor,
        action=r.action,
        target=r.target,
        details=json.loads(r.details),
        prev_hash=r.prev_hash,
        hash=r.hash,
        mac=r.mac,
        mac_key=r.mac_key,
    )


async def entries(scope: TenantScope) -> list[Entry]:
    return [_entry(r) for r in await scope.all(audit_log, order_by=[audit_log.c.seq])]


async def head(scope: TenantScope) -> Head | None:
    rows = await scope.all(audit_log, order_by=[audit_log.c.seq.desc()], limit=1)
    if not rows:
        return None
    r = rows[0]
    return Head(seq=r.seq, hash=r.hash, mac=r.mac, mac_key=r.mac_key)


def _check(
    tenant_id: str, rows: list[Row[Any]], keys: ChainKeys, *, allow_unkeyed: bool = False
) -> tuple[list[str], dict[str, int]]:
    """Problems of a chain given as rows in seq order, and how many entries each key MACed.
    `allow_unkeyed`: entries without a MAC are checked by their hash alone (sealing them)."""
    problems: list[str] = []
    versions: dict[str, int] = {}
    prev = GENESIS
    for expected_seq, r in enumerate(rows, 1):
        if r.seq != expected_seq:
            problems.append(f"entry {expected_seq} is missing (found {r.seq})")
        digest = _row_hash(tenant_id, r)
        if r.prev_hash != prev or not hmac.compare_digest(r.hash, digest):
            problems.append(f"entry {r.seq} does not match the chain")
        prev = r.hash
        if r.mac is None or r.mac_key is None:
            if not allow_unkeyed:
                problems.append(
                    f"entry {r.seq} has no MAC: it was written or rewritten without the "
                    "broker's audit key"
                )
            continue
        key = keys.get(r.mac_key)
        if key is None:
            problems.append(
                f"entry {r.seq} is MACed under audit key {r.mac_key}, which is not in "
                "BUCKETREEL_MASTER_KEYS: it cannot be verified"
            )
            continue
        versions[r.mac_key] = versions.get(r.mac_key, 0) + 1
        want = entry_mac(key, tenant_id=tenant_id, seq=r.seq, digest=digest, version=r.mac_key)
        if not hmac.compare_digest(r.mac, want):
            problems.append(f"entry {r.seq} has a wrong MAC (rewritten without the audit key)")
    return problems, versions


async def verify_chain(scope: TenantScope) -> ChainReport:
    """Recompute the tenant's chain and every MAC; `intact` when nothing is wrong."""
    keys = _keys(scope)
    rows = await scope.all(audit_log, order_by=[audit_log.c.seq])
    problems, versions = _check(scope.tenant_id, rows, keys)
    return ChainReport(
        entries=len(rows), problems=problems, key_versions=versions, head=await head(scope)
    )


async def remac(scope: TenantScope) -> int:
    """After a master-key rotation: MAC every entry not under the current key anew, once the
    whole chain verifies as it is (so a new MAC never blesses a rewrite). Returns how many
    entries changed; raises `ChainBroken`, changing nothing, when the chain does not verify.
    Only `mac` and `mac_key` change: the hash chain, and so each entry's hash, stays."""
    keys = _keys(scope)
    await _lock_links(scope)  # no entry is linked meanwhile (it writes audit rows only)
    rows = await scope.all(audit_log, order_by=[audit_log.c.seq])
    problems, _ = _check(scope.tenant_id, rows, keys)
    if problems:
        raise ChainBroken("; ".join(problems))
    changed = 0
    key = keys.keys[keys.current]
    for r in rows:
        if r.mac_key == keys.current:
            continue
        await scope.execute(
            update(audit_log)
            .where(audit_log.c.tenant_id == scope.tenant_id, audit_log.c.id == r.id)
            .values(
                mac=entry_mac(
                    key, tenant_id=scope.tenant_id, seq=r.seq, digest=r.hash,
                    version=keys.current,
                ),
                mac_key=keys.current,
            )
        )
        changed += 1
    return changed


# What migration 0011 reads (named, so that later columns do not break the old migration).
_SEALED_COLUMNS = (
    "id", "seq", "at", "actor", "action", "target", "details", "prev_hash", "hash", "mac",
    "mac_key",
)


def seal_unkeyed(conn: Connection, keys: ChainKeys) -> dict[str, int]:
    """Migration 0011, run with the broker's keys: MAC the entries written before it (they
    have none), tenant by tenant, where the hash chain verifies. A tenant whose chain is
    broken already keeps its entries unkeyed, and `verify_chain` names them. Returns the
    number of entries sealed per tenant."""
    sealed: dict[str, int] = {}
    key = keys.keys[keys.current]
    tenant_ids = conn.execute(
        select(audit_log.c.tenant_id).where(audit_log.c.mac.is_(None)).distinct()
    ).scalars().all()
    for tenant_id in tenant_ids:
        rows = list(conn.execute(
            select(*(audit_log.c[name] for name in _SEALED_COLUMNS))
            .where(audit_log.c.tenant_id == tenant_id)
            .order_by(audit_log.c.seq)
        ).all())
        problems, _ = _check(tenant_id, rows, keys, allow_unkeyed=True)
        if problems:
            continue
        for r in rows:
            if r.mac is not None:
                continue
            conn.execute(
                update(audit_log).where(audit_log.c.id == r.id).values(
                    mac=entry_mac(
                        key, tenant_id=tenant_id, seq=r.seq, digest=r.hash,
                        version=keys.current,
                    ),
                    mac_key=keys.current,
                )
            )
        sealed[tenant_id] = sum(1 for r in rows if r.mac is None)
    return sealed


class ChainBroken(RuntimeError):
    """The chain does not verify, so it is not (re-)MACed: a new MAC would bless a rewrite."""
