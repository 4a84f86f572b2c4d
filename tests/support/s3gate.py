"""A strict S3 gate for tests: verifies AWS Signature Version 4 in front of moto's server.

moto's server accepts any signature, any expiry, any method and has no deactivated keys, so a
test against it alone cannot show that a presigned URL is refused when it should be. The gate
listens on a free loopback port, checks every request the way S3 does, and forwards the
request, unchanged, to moto when it passes (moto does not check signatures, so no re-signing).

Checked, for query-string (presigned) and `Authorization` header signatures:
  - the access key is registered and active (else 403 InvalidAccessKeyId);
  - the credential scope (date, region, `s3`, `aws4_request`) and the algorithm;
  - the signature over the canonical request (method, canonical URI, canonical query,
    canonical headers, signed headers, payload hash) with the derived signing key,
    compared in constant time (else 403 SignatureDoesNotMatch);
  - `x-amz-*` headers present but not signed (403 AccessDenied, as S3 does for presigned);
  - time: a presigned URL after `X-Amz-Date + X-Amz-Expires` (403 AccessDenied, "Request has
    expired"); a header-signed request more than 15 minutes off (403 RequestTimeTooSkewed);
  - the body against `x-amz-content-sha256` (400 XAmzContentSHA256Mismatch), `Content-MD5`
    (400 InvalidDigest / BadDigest) and `x-amz-checksum-sha256` (400 InvalidRequest / BadDigest);
  - a key given a `Grant` (an IAM-like allow list: operations under a key prefix) may do only
    that (403 AccessDenied): moto's own IAM cannot check presigned URLs, the gate can.
Only path-style addressing is understood (the suite's clients use it). Streaming (aws-chunked)
payloads are answered 501 by the gate: nothing in the product sends them.

`S3Gate.clock_skew` moves the gate's clock (seconds, may be negative) so expiry is tested
without sleeping. Every request is logged (`OperationLog`) with the access key it claimed,
the S3 operation it names (PutObject, ListObjectsV2, …), its status and whether its signature
was valid, so tests can assert which operations a given key performed or authorised.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import http.client
import secrets
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, unquote, urlsplit
from xml.sax.saxutils import escape

from .s3 import DEFAULT_REGION, S3Endpoint, s3_client

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
MAX_EXPIRES = 604_800  # seven days, S3's limit for X-Amz-Expires
MAX_SKEW = 15 * 60  # S3 refuses header-signed requests further off than this
# Headers a proxy must not pass on (RFC 9110 §7.6.1) plus Expect, which the gate answers.
_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "expect", "proxy-connection",
})


# -- access keys ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """What a key may do, like an IAM allow list: these S3 operations, on objects (or, for a
    listing, a prefix) under `under`. A key without one may do anything its signature says."""

    operations: frozenset[str]
    under: str

    def allows(self, name: str, path: str, query: Sequence[tuple[str, str]]) -> bool:
        if name not in self.operations:
            return False
        parts = unquote(path).lstrip("/").split("/", 1)
        if len(parts) == 2 and parts[1]:
            return parts[1].startswith(self.under)
        prefix = dict(query).get("prefix", "")
        return name.startswith("List") and prefix.startswith(self.under)


@dataclass
class AccessKey:
    key_id: str
    secret: str
    active: bool = True
    label: str = ""
    may: Grant | None = None


class KeyRegistry:
    """The access keys the gate accepts. Thread-safe; tests add, deactivate and delete."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, AccessKey] = {}

    def add(
        self, key_id: str | None = None, secret: str | None = None, *, label: str = "",
        may: Grant | None = None,
    ) -> AccessKey:
        """Register (or replace) a key; fresh random id and secret when not given; `may`
        limits what it is allowed (403 AccessDenied beyond it)."""
        key = AccessKey(
            key_id or "AKIA" + secrets.token_hex(8).upper(),
            secret or secrets.token_urlsafe(30),
            label=label,
            may=may,
        )
        with self._lock:
            self._keys[key.key_id] = key
        return replace(key)

    def deactivate(self, key_id: str) -> None:
        self._set_active(key_id, False)

    def activate(self, key_id: str) -> None:
        self._set_active(key_id, True)

    def delete(self, key_id: str) -> None:
        with self._lock:
            del self._keys[key_id]

    def get(self, key_id: str) -> AccessKey | None:
        """A copy of the key as it is now, or None when unknown."""
        with self._lock:
            key = self._keys.get(key_id)
            return None if key is None else replace(key)

    def _set_active(self, key_id: str, active: bool) -> None:
        with self._lock:
            self._keys[key_id].active = active


# -- operation log ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    """One request the gate saw."""

    key_id: str | None  # the access key the request claimed; None when unsigned
    label: str  # that key's label in the registry when the request came ("" if unknown)
    name: str  # S3 operation, e.g. "PutObject"
    method: str
    path: str  # raw path, e.g. /bucket/key
    status: int  # what the client got
    signed_ok: bool  # the signature (and time) verified: the key authorised this request
    error: str | None  # the gate's error code when it refused, else None
    query: str = ""  # raw query string (presigned URLs: with their signature; tests only)


class OperationLog:
    """Every request through the gate, in order. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[Operation] = []

    def record(self, entry: Operation) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self, key_id: str | None = None) -> list[Operation]:
        with self._lock:
            return [e for e in self._entries if key_id is None or e.key_id == key_id]

    def operations(self, key_id: str, *, authorised_only: bool = False) -> set[str]:
        """The operation names requested with `key_id` (only validly signed ones if asked)."""
        return {
            e.name for e in self.entries(key_id) if e.signed_ok or not authorised_only
        }


# object-level sub-resources (query keys) → operation names by method
_OBJECT_SUBRESOURCES: dict[str, dict[str, str]] = {
    "acl": {"GET": "GetObjectAcl", "PUT": "PutObjectAcl"},
    "tagging": {"GET": "GetObjectTagging", "PUT": "PutObjectTagging",
                "DELETE": "DeleteObjectTagging"},
    "retention": {"GET": "GetObjectRetention", "PUT": "PutObjectRetention"},
    "legal-hold": {"GET": "GetObjectLegalHold", "PUT": "PutObjectLegalHold"},
    "attributes": {"GET": "GetObjectAttributes"},
    "torrent": {"GET": "GetObjectTorrent"},
    "restore": {"POST": "RestoreObject"},
    "select": {"POST": "SelectObjectContent"},
    "uploads": {"POST": "CreateMultipartUpload"},
}
# bucket-level sub-resources → the suffix of Get/Put/DeleteBucket<suffix>
_BUCKET_SUBRESOURCES: dict[str, str] = {
    "acl": "Acl", "policy": "Policy", "versioning": "Versioning", "tagging": "Tagging",
    "cors": "Cors", "lifecycle": "LifecycleConfiguration", "website": "Website",
    "logging": "Logging", "notification": "NotificationConfiguration",
    "encryption": "Encryption", "replication": "Replication", "ownershipControls":
    "OwnershipControls", "requestPayment": "RequestPayment", "accelerate":
    "AccelerateConfiguration", "analytics": "AnalyticsConfiguration", "inventory":
    "InventoryConfiguration", "metrics": "MetricsConfiguration", "intelligent-tiering":
    "IntelligentTieringConfiguration", "policyStatus": "PolicyStatus",
}


def operation_name(method: str, path: str, query: Sequence[tuple[str, str]],
                   headers: Mapping[str, str]) -> str:
    """The S3 operation a path-style request names, e.g. ("GET", "/b", list-type=2) →
    "ListObjectsV2". `headers` are lower-cased names. Unknown shapes give "Unknown<METHOD>"."""
    method = method.upper()
    params = {k for k, _ in query}
    parts = unquote(path).lstrip("/").split("/", 1)
    bucket, key = parts[0], (parts[1] if len(parts) > 1 else "")
    if not bucket:
        return "ListBuckets" if method == "GET" else f"Unknown{method}"
    if key:
        if "uploadId" in params:
            by_method = {
                "PUT": "UploadPartCopy" if "x-amz-copy-source" in headers else "UploadPart",
                "GET": "ListParts", "POST": "CompleteMultipartUpload",
                "DELETE": "AbortMultipartUpload",
            }
            return by_method.get(method, f"Unknown{method}")
        for sub, by_method in _OBJECT_SUBRESOURCES.items():
            if sub in params and method in by_method:
                return by_method[method]
        if method == "PUT":
            return "CopyObject" if "x-amz-copy-source" in headers else "PutObject"
        plain = {"GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}
        return plain.get(method, f"Unknown{method}")
    if method == "POST" and "delete" in params:
        return "DeleteObjects"
    if method == "GET":
        if "list-type" in params:
            return "ListObjectsV2"
        if "versions" in params:
            return "ListObjectVersions"
        if "uploads" in params:
            return "ListMultipartUploads"
        if "location" in params:
            return "GetBucketLocation"
        if "object-lock" in params:
            return "GetObjectLockConfiguration"
        if "publicAccessBlock" in params:
            return "GetPublicAccessBlock"
    if method == "PUT":
        if "object-lock" in params:
            return "PutObjectLockConfiguration"
        if "publicAccessBlock" in params:
            return "PutPublicAccessBlock"
    if method == "DELETE" and "publicAccessBlock" in params:
        return "DeletePublicAccessBlock"
    for sub, suffix in _BUCKET_SUBRESOURCES.items():
        if sub in params and method in {"GET", "PUT", "DELETE"}:
            verb = {"GET": "Get", "PUT": "Put", "DELETE": "Delete"}[method]
            return f"{verb}Bucket{suffix}"
    plain = {"GET": "ListObjects", "PUT": "CreateBucket", "HEAD": "HeadBucket",
             "DELETE": "DeleteBucket"}
    return plain.get(method, f"Unknown{method}")


# -- SigV4 verification -----------------------------------------------------------------------


class S3Error(Exception):
    """An error answer as S3 gives it."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class Incoming:
    """A request as received: raw path and query, headers (repeated names kept), body."""

    method: str
    path: str  # raw, percent-encoded as sent
    query: str  # raw, without '?'
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return ",".join(values) if values else None

    def all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def query_pairs(self) -> list[tuple[str, str]]:
        """Decoded (key, value) pairs; '+' is a literal plus, as S3 reads it."""
        pairs = []
        for item in self.query.split("&") if self.query else []:
            key, _, value = item.partition("=")
            pairs.append((unquote(key), unquote(value)))
        return pairs


@dataclass(frozen=True)
class Verified:
    key_id: str
    signed_headers: tuple[str, ...]


def uri_encode(value: str, *, keep_slash: bool = False) -> str:
    """SigV4 URI encoding: unreserved characters kept, everything else %XX (upper case)."""
    return quote(value, safe="-_.~/" if keep_slash else "-_.~")


def canonical_uri(raw_path: str) -> str:
    """S3's canonical URI: the decoded path, encoded once (no dot-segment normalisation)."""
    return uri_encode(unquote(raw_path or "/"), keep_slash=True)


def canonical_query(pairs: Sequence[tuple[str, str]], *, drop: str | None = None) -> str:
    encoded = sorted((uri_encode(k), uri_encode(v)) for k, v in pairs if k != drop)
    return "&".join(f"{k}={v}" for k, v in encoded)


def canonical_headers(request: Incoming, signed: Sequence[str]) -> str:
    lines = []
    for name in signed:
        values = request.all(name)
        if not values:
            raise S3Error(403, "SignatureDoesNotMatch",
                          f"the signed header {name!r} is missing from the request")
        lines.append(f"{name}:{','.join(' '.join(v.split()) for v in values)}\n")
    return "".join(lines)


def signing_key(secret: str, date: str, region: str, service: str = "s3") -> bytes:
    key = hmac.new(f"AWS4{secret}".encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def string_to_sign(amz_date: str, scope: str, canonical_request: str) -> str:
    digest = hashlib.sha256(canonical_request.encode()).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def _parse_amz_date(value: str, *, presigned: bool) -> float:
    try:
        return datetime.strptime(value, AMZ_DATE_FORMAT).replace(tzinfo=UTC).timestamp()
    except ValueError:
        code = "AuthorizationQueryParametersError" if presigned else "AccessDenied"
        status = 400 if presigned else 403
        raise S3Error(status, code, f"X-Amz-Date {value!r} is not of the form "
                      "yyyyMMddTHHmmssZ") from None


def _parse_authorization(value: str) -> dict[str, str]:
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise S3Error(400, "InvalidArgument", f"unsupported authorization type {algorithm!r}")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, val = part.strip().partition("=")
        if sep:
            fields[name] = val
    if not {"Credential", "SignedHeaders", "Signature"} <= fields.keys():
        raise S3Error(400, "AuthorizationHeaderMalformed",
                      "the authorization header needs Credential, SignedHeaders and Signature")
    return fields


class SigV4Verifier:
    """Checks a request's SigV4 signature against a key registry, S3's way."""

    def __init__(self, keys: KeyRegistry, region: str) -> None:
        self.keys = keys
        self.region = region

    def claimed_key(self, request: Incoming) -> str | None:
        """The access key id the request names, before anything is verified."""
        auth = request.header("authorization")
        if auth and auth.startswith(ALGORITHM):
            credential = _parse_authorization(auth).get("Credential", "")
            return credential.split("/", 1)[0] or None
        for key, value in request.query_pairs():
            if key == "X-Amz-Credential":
                return value.split("/", 1)[0] or None
        return None

    def verify(self, request: Incoming, now: float) -> Verified:
        params = dict(request.query_pairs())
        auth = request.header("authorization")
        if auth is not None and "X-Amz-Signature" in params:
            raise S3Error(400, "InvalidArgument",
                          "only one auth mechanism allowed; header and query both given")
        if auth is not None:
            return self._verify_header(request, auth, now)
        if "X-Amz-Signature" in params or "X-Amz-Credential" in params:
            return self._verify_query(request, params, now)
        if "Signature" in params or "AWSAccessKeyId" in params:
            raise S3Error(400, "InvalidRequest",
                          "the authorization mechanism you have provided is not supported; "
                          "please use AWS4-HMAC-SHA256")
        raise S3Error(403, "AccessDenied", "Access Denied (anonymous request)")

    # query string (presigned) -----------------------------------------------------------

    def _verify_query(self, request: Incoming, params: dict[str, str], now: float) -> Verified:
        required = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
                    "X-Amz-SignedHeaders", "X-Amz-Signature")
        missing = [name for name in required if name not in params]
        if missing:
            raise S3Error(400, "AuthorizationQueryParametersError",
                          f"query-string authentication requires {', '.join(missing)}")
        if params["X-Amz-Algorithm"] != ALGORITHM:
            raise S3Error(400, "AuthorizationQueryParametersError",
                          "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"")
        try:
            expires = int(params["X-Amz-Expires"])
        except ValueError:
            expires = -1
        if not 1 <= expires <= MAX_EXPIRES:
            raise S3Error(400, "AuthorizationQueryParametersError",
                          f"X-Amz-Expires must be between 1 and {MAX_EXPIRES} seconds")
        amz_date = params["X-Amz-Date"]
        signed_at = _parse_amz_date(amz_date, presigned=True)
        key, scope = self._credential(params["X-Amz-Credential"], amz_date, presigned=True)
        signed = self._signed_header_names(params["X-Amz-SignedHeaders"], request)
        canonical = "\n".join([
            request.method.upper(),
            canonical_uri(request.path),
            canonical_query(request.query_pairs(), drop="X-Amz-Signature"),
            canonical_headers(request, signed),
            ";".join(signed),
            UNSIGNED_PAYLOAD,
        ])
        self._compare(key, amz_date, scope, canonical, params["X-Amz-Signature"])
        if now > signed_at + expires:
            raise S3Error(403, "AccessDenied", "Request has expired")
        if signed_at > now + MAX_SKEW:
            raise S3Error(403, "AccessDenied", "Request is not valid yet")
        return Verified(key.key_id, tuple(signed))

    # Authorization header -----------------------------------------------------------------

    def _verify_header(self, request: Incoming, auth: str, now: float) -> Verified:
        fields = _parse_authorization(auth)
        amz_date = request.header("x-amz-date")
        if amz_date is None:
            raise S3Error(403, "AccessDenied",
                          "AWS authentication requires a valid Date or x-amz-date header")
        signed_at = _parse_amz_date(amz_date, presigned=False)
        key, scope = self._credential(fields["Credential"], amz_date, presigned=False)
        signed = self._signed_header_names(fields["SignedHeaders"], request)
        payload_hash = request.header("x-amz-content-sha256")
        if payload_hash is None:
            raise S3Error(400, "InvalidRequest",
                          "Missing required header for this request: x-amz-content-sha256")
        if "x-amz-content-sha256" not in signed or "x-amz-date" not in signed:
            raise S3Error(403, "AccessDenied",
                          "x-amz-date and x-amz-content-sha256 must be signed")
        canonical = "\n".join([
            request.method.upper(),
            canonical_uri(request.path),
            canonical_query(request.query_pairs()),
            canonical_headers(request, signed),
            ";".join(signed),
            payload_hash,
        ])
        self._compare(key, amz_date, scope, canonical, fields["Signature"])
        if abs(now - signed_at) > MAX_SKEW:
            raise S3Error(403, "RequestTimeTooSkewed",
                          "The difference between the request time and the current time is "
                          "too large.")
        if payload_hash.startswith("STREAMING-"):
            raise S3Error(501, "NotImplemented",
                          f"the test gate does not verify streaming payloads ({payload_hash})")
        if payload_hash != UNSIGNED_PAYLOAD and not hmac.compare_digest(
            payload_hash, hashlib.sha256(request.body).hexdigest()
        ):
            raise S3Error(400, "XAmzContentSHA256Mismatch",
                          "The provided 'x-amz-content-sha256' header does not match what was "
                          "computed.")
        return Verified(key.key_id, tuple(signed))

    # shared -------------------------------------------------------------------------------

    def _credential(self, credential: str, amz_date: str, *, presigned: bool) -> tuple[
        AccessKey, str
    ]:
        parts = credential.split("/")
        malformed_code = (
            "AuthorizationQueryParametersError" if presigned else "AuthorizationHeaderMalformed"
        )
        if len(parts) != 5:
            raise S3Error(400, malformed_code, f"malformed credential {credential!r}")
        key_id, date, region, service, terminator = parts
        key = self.keys.get(key_id)
        if key is None or not key.active:
            raise S3Error(403, "InvalidAccessKeyId",
                          "The AWS Access Key Id you provided does not exist in our records.")
        if date != amz_date[:8]:
            raise S3Error(403, "SignatureDoesNotMatch",
                          "the credential's date does not match X-Amz-Date")
        if region != self.region:
            raise S3Error(400, malformed_code,
                          f"the region {region!r} is wrong; expecting {self.region!r}")
        if service != "s3" or terminator != "aws4_request":
            raise S3Error(400, malformed_code, f"malformed credential scope {credential!r}")
        return key, "/".join(parts[1:])

    @staticmethod
    def _signed_header_names(value: str, request: Incoming) -> list[str]:
        names = value.split(";")
        if names != sorted(set(names)) or any(n != n.lower() or not n for n in names):
            raise S3Error(403, "SignatureDoesNotMatch",
                          "signed headers must be lower case, sorted and unique")
        if "host" not in names:
            raise S3Error(403, "AccessDenied", "the host header must be signed")
        unsigned = sorted({
            name.lower() for name, _ in request.headers
            if name.lower().startswith("x-amz-") and name.lower() not in names
        })
        if unsigned:
            raise S3Error(403, "AccessDenied",
                          "There were headers present in the request which were not signed: "
                          + ", ".join(unsigned))
        return names

    @staticmethod
    def _compare(
        key: AccessKey, amz_date: str, scope: str, canonical: str, signature: str
    ) -> None:
        date, region, service, _ = scope.split("/")
        expected = hmac.new(
            signing_key(key.secret, date, region, service),
            string_to_sign(amz_date, scope, canonical).encode(),
            hashlib.sha256,
        ).hexdigest()
        if not hmac.compare_digest(expected.encode(), signature.strip().lower().encode()):
            raise S3Error(403, "SignatureDoesNotMatch",
                          "The request signature we calculated does not match the signature "
                          "you provided. Check your key and signing method.")


def check_body(request: Incoming) -> None:
    """Content-Length, Content-MD5 and x-amz-checksum-sha256 against the bytes received."""
    length = request.header("content-length")
    if length is not None and length.strip() != str(len(request.body)):
        raise S3Error(400, "IncompleteBody",
                      "You did not provide the number of bytes specified by the Content-Length "
                      "HTTP header.")
    md5 = request.header("content-md5")
    if md5 is not None:
        given = _b64(md5, 16)
        if given is None:
            raise S3Error(400, "InvalidDigest",
                          "The Content-MD5 you specified is not valid.")
        actual = hashlib.md5(request.body).digest()  # noqa: S324 - S3's integrity digest
        if not hmac.compare_digest(given, actual):
            raise S3Error(400, "BadDigest",
                          "The Content-MD5 you specified did not match what we received.")
    sha = request.header("x-amz-checksum-sha256")
    if sha is not None:
        given = _b64(sha, 32)
        if given is None:
            raise S3Error(400, "InvalidRequest",
                          "Value for x-amz-checksum-sha256 header is invalid.")
        if not hmac.compare_digest(given, hashlib.sha256(request.body).digest()):
            raise S3Error(400, "BadDigest",
                          "The SHA256 you specified did not match the calculated checksum.")


def _b64(value: str, size: int) -> bytes | None:
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == size else None


def error_xml(error: S3Error, resource: str, request_id: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(error.code)}</Code><Message>{escape(error.message)}</Message>"
        f"<Resource>{escape(resource)}</Resource><RequestId>{request_id}</RequestId></Error>"
    ).encode()


# -- the HTTP server --------------------------------------------------------------------------


class S3Gate:
    """The running gate: its URL, key registry, operation log and clock."""

    def __init__(self, url: str, upstream: str, region: str) -> None:
        self.url = url
        self.upstream = upstream
        self.region = region
        self.keys = KeyRegistry()
        self.log = OperationLog()
        self.verifier = SigV4Verifier(self.keys, region)
        self._skew_lock = threading.Lock()
        self._clock_skew = 0.0

    @property
    def clock_skew(self) -> float:
        with self._skew_lock:
            return self._clock_skew

    @clock_skew.setter
    def clock_skew(self, seconds: float) -> None:
        with self._skew_lock:
            self._clock_skew = seconds

    def now(self) -> float:
        return time.time() + self.clock_skew

    @contextmanager
    def advanced(self, seconds: float) -> Iterator[None]:
        """Within the block the gate's clock runs `seconds` ahead (restored afterwards)."""
        before = self.clock_skew
        self.clock_skew = before + seconds
        try:
            yield
        finally:
            self.clock_skew = before

    def endpoint(self, key: AccessKey) -> S3Endpoint:
        """An S3Endpoint (tests.support.s3) that reaches moto through the gate with `key`."""
        return S3Endpoint(url=self.url, region=self.region, access_key_id=key.key_id,
                          secret_access_key=key.secret)

    def client(self, key: AccessKey, **overrides: Any) -> Any:
        """A boto3 S3 client signing with `key`, through the gate."""
        return s3_client(self.endpoint(key), **overrides)

    # request handling ---------------------------------------------------------------------

    def handle(self, request: Incoming) -> tuple[int, list[tuple[str, str]], bytes]:
        """Verify, then forward; returns (status, headers, body) for the client."""
        request_id = uuid.uuid4().hex[:16].upper()
        headers_lower = {k.lower(): v for k, v in request.headers}
        name = operation_name(request.method, request.path, request.query_pairs(), headers_lower)
        try:
            claimed = self.verifier.claimed_key(request)
        except S3Error:
            claimed = None
        known = self.keys.get(claimed) if claimed else None
        label = known.label if known else ""
        signed_ok = False
        try:
            self.verifier.verify(request, self.now())
            signed_ok = True
            check_body(request)
            if known is not None and known.may is not None and not known.may.allows(
                name, request.path, request.query_pairs()
            ):
                raise S3Error(403, "AccessDenied", "Access Denied")
        except S3Error as err:
            self.log.record(Operation(claimed, label, name, request.method, request.path,
                                      err.status, signed_ok, err.code, request.query))
            body = b"" if request.method == "HEAD" else error_xml(
                err, unquote(request.path), request_id)
            return err.status, [
                ("Content-Type", "application/xml"), ("x-amz-request-id", request_id),
            ], body
        status, headers, body = self._forward(request)
        self.log.record(Operation(claimed, label, name, request.method, request.path, status,
                                  True, None, request.query))
        return status, headers, body

    def _forward(self, request: Incoming) -> tuple[int, list[tuple[str, str]], bytes]:
        parts = urlsplit(self.upstream)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
        try:
            target = request.path + (f"?{request.query}" if request.query else "")
            conn.putrequest(request.method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in request.headers:
                if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                    conn.putheader(name, value)
            if request.body or request.method in {"PUT", "POST"}:
                conn.putheader("Content-Length", str(len(request.body)))
            conn.endheaders(request.body or None)
            response = conn.getresponse()
            body = response.read()
            headers = [(k, v) for k, v in response.getheaders()
                       if k.lower() not in _HOP_BY_HOP]
            if request.method != "HEAD":
                headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
                headers.append(("Content-Length", str(len(body))))
            return response.status, headers, body
        finally:
            conn.close()


def _handler_class(gate: S3Gate) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 15  # a client that sends less than its Content-Length is cut off

        def _serve(self) -> None:
            path, _, query = self.path.partition("?")
            headers = _header_pairs(self.headers)
            if self.headers.get("Transfer-Encoding"):
                self._reply(501, [("Content-Type", "application/xml")], error_xml(
                    S3Error(501, "NotImplemented",
                            "the test gate needs Content-Length, not Transfer-Encoding"),
                    path, "GATE"))
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, out_headers, out_body = gate.handle(
                Incoming(self.command, path, query, headers, body)
            )
            self._reply(status, out_headers, out_body)

        def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response_only(status)
            names = {k.lower() for k, _ in headers}
            for name, value in headers:
                if name.lower() not in {"server", "date"}:
                    self.send_header(name, value)
            if "content-length" not in names:
                self.send_header("Content-Length", str(len(body)))
            self.send_header("Server", "bucketreel-s3gate")
            self.send_header("Date", self.date_time_string())
            self.end_headers()
            if self.command != "HEAD" and body:
                self.wfile.write(body)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the OperationLog is the gate's log

    return Handler


def _header_pairs(message: Message) -> list[tuple[str, str]]:
    return [(name, value) for name, value in message.items()]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False


@contextmanager
def run_s3_gate(upstream: S3Endpoint | str, *, region: str | None = None) -> Iterator[S3Gate]:
    """Run a gate in front of `upstream` (moto's URL) on a free loopback port until the block
    ends; the server thread is stopped and joined by its own handle."""
    upstream_url = upstream if isinstance(upstream, str) else upstream.url
    if region is None:
        region = upstream.region if isinstance(upstream, S3Endpoint) else DEFAULT_REGION
    gate = S3Gate("", upstream_url, region)
    server = _Server(("127.0.0.1", 0), _handler_class(gate))  # port 0: the kernel picks one
    gate.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="s3-gate", daemon=True)
    thread.start()
    try:
        yield gate
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


__all__ = [
    "AccessKey", "Incoming", "KeyRegistry", "Operation", "OperationLog", "S3Error", "S3Gate",
    "SigV4Verifier", "canonical_query", "canonical_uri", "check_body",
    "operation_name", "run_s3_gate", "signing_key", "string_to_sign",
]
