"""The vault's only door to the bucket: list, head and read, with the customer's credentials.

Credentials come from the standard AWS chain (environment, shared config and credentials
files, a named profile, SSO, an instance role); the vault never asks for a secret itself. It
needs `s3:ListBucket` on the prefix and `s3:GetObject` under it, nothing more (README, "The
vault"). botocore's errors are translated here and nowhere else: a refused or missing
credential becomes `CredentialError`, anything else that keeps a request from an answer
`StoreError`; an object that is not there is `None`, which the checks name as missing.
"""

from __future__ import annotations

import base64
import hashlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, NoReturn

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from shared.vault.errors import CredentialError, StoreError, UsageError

CONNECT_TIMEOUT = 5
READ_TIMEOUT = 30
ATTEMPTS = 5  # botocore's "standard" mode backs off between attempts, on throttling too
FETCH_WINDOW = 4  # segments read at once by verify
MAX_JSON_BYTES = 4 * 1024 * 1024  # a manifest of two years of 60 s segments stays far below
_DENIED = frozenset({
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
    "InvalidToken", "TokenRefreshRequired", "AllAccessDisabled", "InvalidClientTokenId",
})
_ABSENT = frozenset({"NoSuchKey", "404", "NotFound"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Location:
    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None

    def key(self, *parts: str) -> str:
        """`<prefix>/<parts...>` (no leading slash, no empty prefix part)."""
        return "/".join(p for p in (self.prefix.strip("/"), *parts) if p)


@dataclass(frozen=True, slots=True, kw_only=True)
class Listed:
    key: str
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Fetched:
    """An object's bytes, its user metadata and the checksum S3 stored with it."""

    key: str
    data: bytes = field(repr=False)
    metadata: dict[str, str]
    stored_sha256: str | None  # base64, when the object was written with one

    def sha256_b64(self) -> str:
        return base64.b64encode(hashlib.sha256(self.data).digest()).decode("ascii")


@dataclass(frozen=True, slots=True, kw_only=True)
class Head:
    key: str
    size: int
    metadata: dict[str, str]
    stored_sha256: str | None


def client_config() -> Config:
    return Config(
        signature_version="s3v4",
        retries={"mode": "standard", "max_attempts": ATTEMPTS},
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        # The vault hashes every byte itself and names a mismatch; botocore raising on one
        # would turn a finding into a crash.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )


class Store:
    """Read-only access to one bucket (and prefix)."""

    def __init__(self, location: Location, *, client: Any | None = None) -> None:
        self.location = location
        if client is None:
            try:
                session = boto3.session.Session(profile_name=location.profile)
            except BotoCoreError as exc:  # e.g. ProfileNotFound
                raise CredentialError(str(exc)) from None
            config = client_config()
            if location.endpoint_url:
                config = config.merge(Config(s3={"addressing_style": "path"}))
            client = session.client(
                "s3", region_name=location.region, endpoint_url=location.endpoint_url,
                config=config,
            )
        self._client = client

    def keys(self, *parts: str) -> Iterator[Listed]:
        """Every object under `<prefix>/<parts...>/`, in key order (ListObjectsV2, paged)."""
        under = self.location.key(*parts)
        paginator = self._client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.location.bucket, Prefix=f"{under}/" if under else ""
        )
        with _translated(f"listing {under or 'the bucket'}/"):
            for page in pages:
                for item in page.get("Contents", []):
                    yield Listed(key=item["Key"], size=int(item["Size"]))

    def _reply(self, operation: str, key: str) -> dict[str, Any] | None:
        """GetObject or HeadObject of `key` (with its stored checksum), None when absent."""
        try:
            reply: dict[str, Any] = getattr(self._client, operation)(
                Bucket=self.location.bucket, Key=key, ChecksumMode="ENABLED"
            )
        except ClientError as exc:
            if _code(exc) in _ABSENT:
                return None
            raise
        return reply

    def fetch(self, key: str) -> Fetched | None:
        """The object's bytes and metadata (GetObject), None when it is not there."""
        with _translated(f"reading {key}"):
            reply = self._reply("get_object", key)
            if reply is None:
                return None
            data = reply["Body"].read()
        return Fetched(
            key=key, data=data, metadata=dict(reply.get("Metadata", {})),
            stored_sha256=reply.get("ChecksumSHA256"),
        )

    def head(self, key: str) -> Head | None:
        """The object's size and metadata (HeadObject), None when it is not there."""
        with _translated(f"reading {key}"):
            reply = self._reply("head_object", key)
        if reply is None:
            return None
        return Head(
            key=key, size=int(reply["ContentLength"]), metadata=dict(reply.get("Metadata", {})),
            stored_sha256=reply.get("ChecksumSHA256"),
        )

    def fetch_many(self, keys: list[str], window: int = FETCH_WINDOW
                   ) -> Iterator[Fetched | None]:
        """`fetch` of each key, in order, with up to `window` requests in flight (the boto3
        client is thread-safe); at most `window` objects are held in memory ahead."""
        with ThreadPoolExecutor(max_workers=window, thread_name_prefix="vault-fetch") as pool:
            todo = iter(keys)
            pending = deque(pool.submit(self.fetch, key) for key in islice(todo, window))
            try:
                while pending:
                    done = pending.popleft()
                    following = next(todo, None)
                    if following is not None:
                        pending.append(pool.submit(self.fetch, following))
                    yield done.result()
            finally:
                for future in pending:
                    future.cancel()

    def read_small(self, key: str, limit: int = MAX_JSON_BYTES) -> bytes | None:
        """A small object's bytes (a record, a manifest), None when it is not there."""
        fetched = self.fetch(key)
        if fetched is None:
            return None
        if len(fetched.data) > limit:
            raise StoreError(f"{key} is {len(fetched.data)} bytes, more than any record can be")
        return fetched.data


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextmanager
def _translated(what: str) -> Iterator[None]:
    """Turns botocore's errors into the vault's (the one place that knows botocore's)."""
    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        _raise_translated(exc, what)


def _raise_translated(exc: BotoCoreError | ClientError, what: str) -> NoReturn:
    if isinstance(exc, NoCredentialsError):
        raise CredentialError(
            "no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "AWS_PROFILE or --profile"
        ) from None
    if isinstance(exc, ClientError):
        code = _code(exc)
        if code in _DENIED or code == "403":
            raise CredentialError(
                f"the bucket refused these credentials ({code or 'denied'}) while "
                f"{what}: the vault needs s3:ListBucket on the prefix and "
                "s3:GetObject under it"
            ) from None
        if code == "NoSuchBucket":
            raise UsageError("no such bucket") from None
        answer = code or "an error"
        raise StoreError(f"S3 answered {answer} while {what}") from None
    if isinstance(exc, BotoCoreError):
        raise StoreError(f"cannot reach the bucket while {what}: {exc}") from None
    raise StoreError(f"{what} failed: {exc}") from None
