"""The storage self-check: prove what the broker's principal can and cannot do in the bucket.

These probes are the only list, delete and ACL requests the broker ever sends, and each must
be refused (DESIGN G2/G3). All of them stay under `<prefix>/_bucketreel/selfcheck/` (the
prefix too, so the minimal identity policy on `B/P/*` covers the write):

  write   PutObject `…/selfcheck/<random>` with `If-None-Match: *`  → must succeed (the
          object stays: the broker cannot delete it; it is the tenant's canary, see below)
  list    ListObjectsV2 on `…/selfcheck/`, one key at most          → must be 403
  delete  DeleteObject of a random missing key, `If-Match` a bogus
          ETag (conditional: it could not remove anything anyway)  → must be 403
  acl     PutObjectAcl `private` on the probe object               → must be 403 (or ACLs
          disabled on the bucket: 400 AccessControlListNotSupported)
  head    HeadObject of a random missing key                       → must be 403: on S3 a
          404 there means the principal holds s3:ListBucket

Each probe that is not refused is a red, named finding. The probes run one after another on
one storage thread (`broker.storage.io`), each tried once with short timeouts, and none starts
after the self-check's deadline. For a tenant's custom endpoint that the operator did not
allow by name (`BUCKETREEL_ALLOWED_ENDPOINT_HOSTS`), outcomes say only
`reachable` (an HTTP success), `refused` (an HTTP error) or `unreachable` (no answer): never
the status, the XML error code or the error class, which would map an internal network.
The probes appear in the customer's CloudTrail (data events) like any request; the admin
guide says so.

The canary: the write probe's object is known to exist. A HeadObject on it answers 200 while
the broker's credentials work and 403 once they are revoked, which a HeadObject on a segment
that may be missing cannot tell apart on S3 (HEAD replies carry no error code).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from broker.errors import BrokerError
from broker.storage.s3 import BucketClient
from shared.wire import format_timestamp

SELFCHECK_DIR = "_bucketreel/selfcheck/"
BOGUS_ETAG = '"00000000000000000000000000000000"'

FINDINGS = {
    "cannot_write": "the broker cannot create objects in the bucket",
    "can_list": "the broker's principal can list the bucket (ListObjectsV2 was allowed)",
    "can_delete": "the broker's principal can delete objects (DeleteObject was allowed)",
    "can_change_acl": "the broker's principal can change object ACLs (PutObjectAcl allowed)",
    "missing_keys_answer_404": (
        "HeadObject on a missing key answered 404, not 403: the principal holds s3:ListBucket"
    ),
}


def selfcheck_prefix(prefix: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/{SELFCHECK_DIR}" if prefix else SELFCHECK_DIR


@dataclass(frozen=True, slots=True)
class Probe:
    name: str
    operation: str
    expected: str
    outcome: str  # "200", "403 AccessDenied", "error: EndpointConnectionError", …
    passed: bool


@dataclass(frozen=True, slots=True)
class Finding:
    name: str
    severity: str
    message: str
    outcome: str


@dataclass(frozen=True, slots=True)
class CheckReport:
    checked_at: datetime
    can_write: bool
    canary_key: str | None
    probes: list[Probe] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def finding_names(self) -> list[str]:
        return [f.name for f in self.findings]

    def as_json(self) -> dict[str, Any]:
        return {
            "checked_at": format_timestamp(self.checked_at),
            "can_write": self.can_write,
            "findings": [asdict(f) for f in self.findings],
            "probes": [asdict(p) for p in self.probes],
        }


def _outcome(call: Any) -> tuple[int | None, str]:
    """Run one probe: (HTTP status, outcome text); status None when no answer came."""
    try:
        reply = call()
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = exc.response.get("Error", {}).get("Code", "")
        return status, f"{status} {code}".strip()
    except BotoCoreError as exc:
        return None, f"error: {type(exc).__name__}"
    except BrokerError as exc:  # STS refused the role (from the credential provider)
        return None, f"error: {exc.message}"
    status = reply.get("ResponseMetadata", {}).get("HTTPStatusCode", 200)
    return status, str(status)


def coarse(status: int | None) -> str:
    """What a custom endpoint's answer may show: reachable, refused or unreachable."""
    if status is None:
        return "unreachable"
    return "reachable" if 200 <= status < 300 else "refused"


def run(bucket: BucketClient, now: datetime, *, deadline: float | None = None) -> CheckReport:
    """Every probe, in order; never raises for what the bucket answers. No probe starts
    after `deadline` (a `time.monotonic()` value): it is reported unreachable."""
    config = bucket.config
    client = bucket._raw()  # this module is its one allowed user
    base = selfcheck_prefix(config.prefix)
    canary = base + secrets.token_hex(16)
    missing = base + "missing-" + secrets.token_hex(16)
    probes: list[Probe] = []
    findings: list[Finding] = []

    def probe(name: str, operation: str, expected: str, call: Any,
              passes: Any, finding: str) -> int | None:
        if deadline is not None and time.monotonic() >= deadline:
            status, outcome = None, "error: the self-check ran out of time"
        else:
            status, outcome = _outcome(call)
        passed = bool(passes(status, outcome))
        if bucket.coarse:
            outcome = coarse(status)
        probes.append(Probe(name, operation, expected, outcome, passed))
        if not passed:
            findings.append(Finding(finding, "red", FINDINGS[finding], outcome))
        return status

    written = probe(
        "write", "PutObject", "200",
        lambda: client.put_object(
            Bucket=config.bucket, Key=canary, IfNoneMatch="*", ContentType="text/plain",
            Body=f"bucketreel self-check {format_timestamp(now)}\n".encode(),
        ),
        lambda status, _: status == 200, "cannot_write",
    )
    denied = lambda status, _: status == 403  # noqa: E731
    probe(
        "list", "ListObjectsV2", "403",
        lambda: client.list_objects_v2(Bucket=config.bucket, Prefix=base, MaxKeys=1),
        denied, "can_list",
    )
    probe(
        "delete", "DeleteObject", "403",
        lambda: client.delete_object(Bucket=config.bucket, Key=missing, IfMatch=BOGUS_ETAG),
        denied, "can_delete",
    )
    probe(
        "acl", "PutObjectAcl", "403",
        lambda: client.put_object_acl(
            Bucket=config.bucket, Key=canary if written == 200 else missing, ACL="private"
        ),
        lambda status, outcome: status == 403 or "AccessControlListNotSupported" in outcome,
        "can_change_acl",
    )
    probe(
        "head", "HeadObject", "403",
        lambda: client.head_object(Bucket=config.bucket, Key=missing),
        denied, "missing_keys_answer_404",
    )
    return CheckReport(
        checked_at=now,
        can_write=written == 200,
        canary_key=canary if written == 200 else None,
        probes=probes,
        findings=findings,
    )
