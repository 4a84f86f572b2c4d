"""The audit chain's public hash (`broker.audit.log`), for anyone holding the export.

Each entry's `hash` is the SHA-256 of a compact JSON array of its tenant, seq, time (ISO
8601 text), actor, action, target, details (sorted compact JSON text) and the previous
entry's hash (`GENESIS` for the first). The export (`/api/v1/admin/audit/export`, one JSON
object per line) carries every one of these, `details` as an object: `export_hash` rebuilds
the hash from one exported line. The entry's MAC needs the broker's key, which only the broker
holds; an audit anchor in the bucket (`shared.bucket.records.AuditAnchor`) carries it signed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

GENESIS = "0" * 64


def details_text(details: Mapping[str, Any]) -> str:
    """The details as the chain hashes them."""
    return json.dumps(dict(details), sort_keys=True, separators=(",", ":"))


def entry_hash(
    *, tenant_id: str, seq: int, at: str, actor: str, action: str, target: str,
    details: str, prev_hash: str,
) -> str:
    material = json.dumps(
        [tenant_id, seq, at, actor, action, target, details, prev_hash], separators=(",", ":")
    )
    return hashlib.sha256(material.encode()).hexdigest()


def export_hash(line: Mapping[str, Any]) -> str:
    """The chain hash of one exported entry (a decoded export line), recomputed."""
    return entry_hash(
        tenant_id=str(line["tenant_id"]), seq=int(line["seq"]), at=str(line["at"]),
        actor=str(line["actor"]), action=str(line["action"]), target=str(line["target"]),
        details=details_text(line["details"]), prev_hash=str(line["prev_hash"]),
    )
