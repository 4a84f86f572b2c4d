"""The S3 operations the broker performed or signed during the whole test run.

The broker's S3 adapter logs each one (`broker.storage.s3`: name, bucket, key or prefix).
Broker processes write those lines to their log files; set-up that runs the broker's own
admin functions inside the test process logs them to this process. At the end of the
session every one of them is held against DESIGN G1–G3: the broker may sign PutObject and
GetObject, may call HeadObject, and may call the self-check's probes (PutObject,
ListObjectsV2, DeleteObject, PutObjectAcl, HeadObject) only under `_bucketreel/selfcheck/`,
and may call PutObject with `If-None-Match: *` (write-once) for the bucket's own records
(issue 18: `_bucketreel/{keys,devices,audit}/…` and a recording's `manifest.json`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SELFCHECK = "_bucketreel/selfcheck/"
PRESIGNS = {"PutObject", "GetObject"}
CALLS = {"HeadObject"}
SELFCHECK_CALLS = {"PutObject", "ListObjectsV2", "DeleteObject", "PutObjectAcl", "HeadObject"}
RECORDS = re.compile(r"(?:^|/)_bucketreel/(?:keys|devices|audit)/|/manifest\.json$")


@dataclass(frozen=True)
class Operation:
    kind: str  # "call" or "presign"
    name: str
    where: str  # key or prefix
    write_once: bool = False  # sent with If-None-Match: *

    @classmethod
    def from_fields(cls, fields: dict[str, object]) -> Operation:
        where = fields.get("key") or fields.get("prefix") or ""
        return cls(
            str(fields["s3"]), str(fields["s3_operation"]), str(where),
            fields.get("write_once") is True,
        )


def violations(operations: Iterable[Operation]) -> list[Operation]:
    def allowed(op: Operation) -> bool:
        if op.kind == "presign":
            return op.name in PRESIGNS
        if op.name in CALLS:
            return True
        if op.name == "PutObject" and op.write_once and RECORDS.search(op.where):
            return True
        under_selfcheck = op.where.startswith(SELFCHECK) or f"/{SELFCHECK}" in op.where
        return op.name in SELFCHECK_CALLS and under_selfcheck

    return sorted({op for op in operations if not allowed(op)}, key=repr)


def from_broker_logs(directory: Path) -> list[Operation]:
    """Operations in every broker log (JSON lines) below `directory`."""
    found: list[Operation] = []
    for path in sorted(directory.rglob("broker-*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if '"s3_operation"' not in line:
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and "s3_operation" in entry:
                found.append(Operation.from_fields(entry))
    return found


class Recorder(logging.Handler):
    """Collects the operations logged in this process."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.operations: list[Operation] = []

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and "s3_operation" in fields:
            self.operations.append(Operation.from_fields(fields))
