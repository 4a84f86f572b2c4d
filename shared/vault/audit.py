"""`verify-audit`: the broker's audit export held against the anchors in the bucket.

The export (`GET /api/v1/admin/audit/export`, without filters: every entry, oldest first) is one
JSON object per line with the chain's hashes. Its hash chain is public
(`shared.auditchain.export_hash`): each entry's hash is recomputed and must be the one it
carries, and each `prev_hash` must be the entry before's. That alone shows an edited or
removed entry only to someone who trusts the export's last hash; the anchors the broker wrote
to the bucket, write-once and signed (`_bucketreel/audit/<tenant>/<seq>.json`), say what the
chain's head was at each of those moments, so:
  - an entry whose hash differs from an anchor's, or from what its content hashes to: altered;
  - a seq absent from the export (a gap in 1..n): missing;
  - an export that ends before the newest anchor: truncated.
The MACs need the broker's key and are not checked here (the broker's `admin verify-audit`
does); an anchor's MAC must be the export's for that entry.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.auditchain import GENESIS, export_hash
from shared.bucket.records import AuditAnchor
from shared.vault.errors import UsageError
from shared.vault.inventory import Inventory
from shared.vault.problems import Kind, Problem
from shared.vault.store import Store
from shared.vault.trust import Trust, read_document

_FIELDS = ("seq", "at", "actor", "action", "target", "details", "prev_hash", "hash")


@dataclass(slots=True, kw_only=True)
class AuditCheck:
    tenant_id: str
    entries: int = 0
    anchors: int = 0
    newest_anchor: int | None = None
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id, "entries": self.entries, "anchors": self.anchors,
            "newest_anchor": self.newest_anchor,
            "problems": [p.to_json() for p in self.problems], "notes": self.notes,
        }


def read_export(path: Path, tenant: str | None) -> dict[str, list[dict[str, Any]]]:
    """The export's entries by tenant, in file order. UsageError when it is not an export."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text: not an audit export") from None
    by_tenant: dict[str, list[dict[str, Any]]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            raise UsageError(f"{path}:{number} is not JSON: not an audit export") from None
        if not isinstance(entry, dict) or any(f not in entry for f in _FIELDS):
            raise UsageError(
                f"{path}:{number} lacks the export's fields ({', '.join(_FIELDS)})"
            )
        owner = entry.get("tenant_id") or tenant
        if owner is None:
            raise UsageError(
                f"{path}:{number} names no tenant (an older export): give --tenant"
            )
        if tenant is not None and owner != tenant:
            continue
        entry["tenant_id"] = owner
        by_tenant.setdefault(str(owner), []).append(entry)
    if not by_tenant:
        of = f" of tenant {tenant}" if tenant else ""
        raise UsageError(f"{path} holds no audit entry{of}")
    return by_tenant


def check_chain(
    tenant_id: str, entries: Iterable[dict[str, Any]], check: AuditCheck
) -> dict[int, dict[str, Any]]:
    """The export's own chain: every hash recomputed, every link and seq followed."""
    by_seq: dict[int, dict[str, Any]] = {}
    expected_seq, prev = 1, GENESIS
    for entry in entries:
        seq = entry["seq"]
        if not isinstance(seq, int) or seq < 1:
            check.problems.append(Problem(
                Kind.ALTERED, f"audit entry {seq!r}", "its seq is not a number"
            ))
            continue
        subject = f"audit entry {seq} of {tenant_id}"
        if seq < expected_seq or seq in by_seq:
            check.problems.append(Problem(
                Kind.ALTERED, subject, "it comes out of order or twice"
            ))
            continue
        if seq > expected_seq:
            gone = f"{expected_seq}" if seq == expected_seq + 1 else f"{expected_seq}-{seq - 1}"
            check.problems.append(Problem(
                Kind.MISSING, f"audit entries {gone} of {tenant_id}",
                f"the export skips from {expected_seq - 1} to {seq}",
            ))
        elif entry["prev_hash"] != prev:
            check.problems.append(Problem(
                Kind.ALTERED, subject,
                "its prev_hash is not the previous entry's hash",
            ))
        try:
            recomputed = export_hash(entry)
        except (KeyError, TypeError, ValueError):
            recomputed = None
        if recomputed != entry["hash"]:
            check.problems.append(Problem(
                Kind.ALTERED, subject,
                "its content does not hash to the hash it carries (edited)",
            ))
        by_seq[seq] = entry
        expected_seq, prev = seq + 1, entry["hash"]
    check.entries = len(by_seq)
    return by_seq


def check_anchors(
    tenant_id: str, by_seq: dict[int, dict[str, Any]], inventory: Inventory, store: Store,
    trust: Trust, check: AuditCheck,
) -> None:
    last = max(by_seq, default=0)
    listed = inventory.anchors.get(tenant_id, [])
    if not listed:
        check.notes.append(
            f"no audit anchor of tenant {tenant_id} in the bucket: only the export's own "
            "chain was checked"
        )
    for item in listed:
        anchor, unreadable = read_document(store, item.key, AuditAnchor)
        if anchor is None:
            check.problems.extend([unreadable] if unreadable else [])
            continue
        problem = trust.signature_problem(anchor, item.key)
        if problem is None and anchor.tenant_id != tenant_id:
            problem = Problem(Kind.ALTERED, item.key,
                              f"it is an anchor of tenant {anchor.tenant_id}")
        if problem is not None:
            check.problems.append(problem)
            continue
        check.anchors += 1
        check.newest_anchor = max(check.newest_anchor or 0, anchor.seq)
        entry = by_seq.get(anchor.seq)
        subject = f"audit entry {anchor.seq} of {tenant_id}"
        if entry is None and anchor.seq > last:
            continue  # named once below, as truncated
        if entry is None:
            check.problems.append(Problem(
                Kind.MISSING, subject,
                f"the broker anchored it ({item.key}) but the export does not hold it",
            ))
        elif entry["hash"] != anchor.hash or entry.get("mac") != anchor.mac or (
            entry["at"] != anchor.at
        ):
            check.problems.append(Problem(
                Kind.ALTERED, subject,
                f"it is not the entry the broker anchored at {anchor.at} ({item.key})",
            ))
    newest = check.newest_anchor
    if newest is not None and newest > last:
        check.problems.append(Problem(
            Kind.TRUNCATED, f"audit log of {tenant_id}",
            f"the export ends at entry {last}, but the broker anchored entry {newest}: "
            "entries were cut off (or the export was made before that anchor, or with filters)",
        ))
    elif newest is not None and last > newest:
        check.notes.append(
            f"entries {newest + 1}-{last} come after the newest anchor: only the export's own "
            "chain vouches for them"
        )


def verify_audit(
    path: Path, tenant: str | None, inventory: Inventory, store: Store, trust: Trust
) -> list[AuditCheck]:
    checks = []
    for tenant_id, entries in sorted(read_export(path, tenant).items()):
        check = AuditCheck(tenant_id=tenant_id)
        by_seq = check_chain(tenant_id, entries, check)
        check_anchors(tenant_id, by_seq, inventory, store, trust, check)
        checks.append(check)
    return checks
