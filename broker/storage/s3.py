"""The broker's only door to a customer's bucket.

It presigns (a local computation), reads object metadata (`HeadObject`) and writes the
bucket's own records once (`put_once`: `If-None-Match: *`, JSON the broker made itself, never a
recording byte). It has no method that lists, deletes, overwrites or reads object content
(DESIGN G1–G3); the storage self-check
(`broker.storage.selfcheck`) is the only code that sends such requests, as probes that must be
refused. botocore's errors are translated here (and in `credentials`, `selfcheck`) only.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from broker.db.notify import Note, Topic
from broker.errors import StorageUnavailable
from broker.storage.config import KEYS, StorageConfig
from broker.storage.credentials import BrokerIdentity, StorageAccessDenied, boto_session
from broker.storage.endpoint import EndpointPolicy, PinnedEndpoint, pin
from broker.storage.http import BucketHTTP, NoAnswer, Reply
from broker.storage.io import StorageIO, StorageTimeout
from shared.bucket.metadata import HEADER_PREFIX as META_HEADER
from shared.keys import SEGMENT_CONTENT_TYPE

log = logging.getLogger(__name__)

# botocore's limits per request: short, so a bucket that accepts and never answers frees the
# storage thread soon (`broker.storage.io`); the async deadlines below bound the caller.
CONNECT_TIMEOUT = 3
READ_TIMEOUT = 5
ATTEMPTS = 2
SELFCHECK_CONNECT_TIMEOUT = 2
SELFCHECK_READ_TIMEOUT = 3
CLIENT_DEADLINE = 15.0  # making a client: DNS, and STS AssumeRole for a role
HEAD_DEADLINE = 2 * (CONNECT_TIMEOUT + READ_TIMEOUT) + 2.0
PUT_DEADLINE = 2 * (CONNECT_TIMEOUT + READ_TIMEOUT) + 2.0
PRESIGN_DEADLINE = 15.0  # local, unless an assumed role's session must be refreshed (STS)
HEAD_URL_TTL = 60  # the one presign that finds a client's object URL (`sign_head`)
JSON = "application/json"
_RETRIED = frozenset({429, 500, 502, 503, 504})  # botocore's standard mode retries these
REPIN_SECONDS = 300  # a custom endpoint's host is resolved (and checked) again this often


def _log_operation(params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
    """Every S3 operation the broker calls or signs, by name, bucket and key or prefix (never
    a credential or a signature): operators can hold it against CloudTrail, and the test suite
    asserts the whole set (nothing lists or deletes outside the self-check)."""
    presign = bool(context.get("is_presign_request"))
    if presign and model.name == "HeadObject":
        return  # signed only to be sent by the broker itself: logged as a call (`_head`)
    _log_s3(
        "presign" if presign else "call", model.name, params.get("Bucket"),
        key=params.get("Key"), prefix=params.get("Prefix"),
        write_once=params.get("IfNoneMatch") == "*",
    )


def _log_s3(
    kind: str, operation: str, bucket: object, *, key: object, prefix: object = None,
    write_once: bool = False,
) -> None:
    fields = {
        "s3": kind,
        "s3_operation": operation,
        "bucket": bucket,
        "key": key,
        "prefix": prefix,
        "write_once": write_once,
    }
    log.info("s3 %s %s %s/%s", kind, operation, bucket, key or prefix or "",
             extra={"fields": fields})


@dataclass(frozen=True, slots=True)
class PresignedPut:
    url: str
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class ObjectHead:
    size: int
    sha256: str | None  # base64, when the endpoint returns the stored checksum
    etag: str | None
    server_side_encryption: str | None


class BucketClient:
    """Blocking (DNS, STS, S3): made and used on the storage pool only (`BucketClients`)."""

    def __init__(
        self,
        config: StorageConfig,
        identity: BrokerIdentity | None = None,
        policy: EndpointPolicy | None = None,
        *,
        selfcheck: bool = False,
    ) -> None:
        self.config = config
        self.created = time.monotonic()
        # A custom endpoint: resolved once, checked, and every connection pinned to that
        # address (`broker.storage.endpoint`); its replies are reported coarsely.
        self.pinned: PinnedEndpoint | None = None
        if config.endpoint_url is not None:
            self.pinned = (policy or EndpointPolicy()).resolve(config.endpoint_url)
        # What a custom endpoint the operator did not allow answered is never shown in detail.
        self.coarse = self.pinned is not None and not self.pinned.trusted
        botocore_config = Config(
            signature_version="s3v4",  # never SigV2, whatever the region
            region_name=config.region,
            s3={"addressing_style": "path" if config.endpoint_url else "virtual"},
            # The self-check's probes are tried once, each briefly: it has one deadline.
            retries={"mode": "standard", "max_attempts": 1 if selfcheck else ATTEMPTS},
            connect_timeout=SELFCHECK_CONNECT_TIMEOUT if selfcheck else CONNECT_TIMEOUT,
            read_timeout=SELFCHECK_READ_TIMEOUT if selfcheck else READ_TIMEOUT,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            # A custom endpoint never through an environment proxy: the proxy would resolve
            # the host itself, past the check (and `pin` refuses any other host anyway).
            **({"proxies": {}} if self.pinned is not None else {}),
        )
        session = boto_session(config, identity or BrokerIdentity())
        self._credentials: Any = session.get_credentials()  # static, or refreshed from STS
        self._object_base: str | None = None  # the URL of an object, less its key (`sign_head`)
        self._client: Any = session.client(
            "s3",
            region_name=config.region,
            endpoint_url=config.endpoint_url,
            config=botocore_config,
        )
        if self.pinned is not None:
            pin(self._client, self.pinned)
        self._client.meta.events.register("provide-client-params.s3", _log_operation)

    def presign_put(
        self, key: str, *, size: int, sha256_b64: str, md5_b64: str, ttl: int,
        metadata: Mapping[str, str] | None = None,
    ) -> PresignedPut:
        """A PUT for exactly these bytes, once: every header below is part of the signature,
        the user metadata (`x-amz-meta-<name>`, `shared.bucket.metadata`) included."""
        headers = {
            "Content-Length": str(size),
            "Content-MD5": md5_b64,
            "Content-Type": SEGMENT_CONTENT_TYPE,
            "If-None-Match": "*",
            "x-amz-checksum-sha256": sha256_b64,
            "x-amz-sdk-checksum-algorithm": "SHA256",
        }
        for name, value in (metadata or {}).items():
            headers[META_HEADER + name] = value
        # Signed here (SigV4 in the query, every header above signed), as botocore's
        # `generate_presigned_url("put_object", …)` signs it, without its request pipeline.
        _log_s3("presign", "PutObject", self.config.bucket, key=key, write_once=True)
        request = AWSRequest(method="PUT", url=self._object_url(key), headers=dict(headers))
        S3SigV4QueryAuth(
            self._credentials.get_frozen_credentials(), "s3", self.config.region, expires=ttl
        ).add_auth(request)
        return PresignedPut(url=request.url, headers=headers)

    def presign_get(self, key: str, *, ttl: int) -> str:
        params = {
            "Bucket": self.config.bucket,
            "Key": key,
            "ResponseCacheControl": "no-store",
        }
        url: str = self._client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=ttl, HttpMethod="GET"
        )
        return url

    def put_once(self, key: str, body: bytes, *, content_type: str = JSON) -> bool:
        """Create `key` with `body` unless it exists (`If-None-Match: *`): True when written,
        False when the bucket already holds an object there (412: a retry, or another
        replica, wrote it first). Never overwrites; raises StorageAccessDenied on 403 and
        StorageUnavailable on anything else."""
        digest = base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")
        try:
            self._client.put_object(
                Bucket=self.config.bucket, Key=key, Body=body, IfNoneMatch="*",
                ContentType=content_type, ChecksumAlgorithm="SHA256", ChecksumSHA256=digest,
            )
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 412:
                return False
            raise self._refusal("PutObject", status) from None
        except BotoCoreError as exc:
            raise self._silence(exc) from None
        return True

    def _refusal(self, operation: str, status: object, *, hint: str = "") -> Exception:
        """A refusal of `operation`, translated (botocore's error stays here)."""
        if status == 403:
            return StorageAccessDenied(
                f"the bucket refused {operation} with HTTP 403; check the broker's credentials"
            )
        # A custom endpoint learns nothing of what answered there (no status, no class).
        detail = "" if self.coarse else f" with HTTP {status}"
        return StorageUnavailable(f"the bucket refused {operation}{detail}{hint}")

    def _silence(self, exc: BotoCoreError) -> StorageUnavailable:
        return self.silence(type(exc).__name__)

    def _raw(self) -> Any:
        """The boto3 client, for the self-check's probes only (`broker.storage.selfcheck`)."""
        return self._client

    def sign_head(self, key: str) -> tuple[str, dict[str, str]]:
        """URL and headers of `HEAD key` asking for the stored checksum (`x-amz-checksum-mode:
        ENABLED`), signed in the headers (SigV4) as botocore's `head_object` signs: the
        broker sends it at once (`BucketClients.head`). The URL is the client's own object
        URL (botocore's endpoint and addressing style, found once) with the key encoded as
        botocore encodes it. Local for static keys; an assumed role's session may have to be
        refreshed from STS first (then on the storage pool)."""
        request = AWSRequest(
            method="HEAD", url=self._object_url(key), headers={"x-amz-checksum-mode": "ENABLED"}
        )
        S3SigV4Auth(
            self._credentials.get_frozen_credentials(), "s3", self.config.region
        ).add_auth(request)
        return request.url, dict(request.headers.items())

    def _object_url(self, key: str) -> str:
        """The URL of `key` as botocore addresses it (its endpoint, addressing style and key
        encoding), without a query."""
        if self._object_base is None:
            # the client's URL for an object "k", presigned once (nothing sent, nothing
            # logged): everything before that "k" is every object's
            probe = urlsplit(self._client.generate_presigned_url(
                "head_object", Params={"Bucket": self.config.bucket, "Key": "k"},
                ExpiresIn=HEAD_URL_TTL, HttpMethod="HEAD",
            ))
            self._object_base = f"{probe.scheme}://{probe.netloc}{probe.path[:-1]}"
        return self._object_base + quote(key, safe="/~")

    def read_head(self, status: int, headers: Mapping[str, str]) -> ObjectHead | None:
        """The object's size and stored checksum from a HEAD reply, None for 404 (no such
        object); a refusal raises as botocore's would have been translated."""
        if status == 404:
            return None
        if status != 200:
            # 403: a revoked key, or (on S3, without a list right) a missing object: HEAD
            # replies carry no error code to tell them apart; see StorageAccess.
            raise self._refusal("HeadObject", status, hint="; check the broker's credentials")
        try:
            size = int(headers["Content-Length"])
        except (KeyError, ValueError):
            raise self._refusal("HeadObject", "200 without a Content-Length") from None
        return ObjectHead(
            size=size,
            sha256=headers.get("x-amz-checksum-sha256"),
            etag=headers.get("ETag"),
            server_side_encryption=headers.get("x-amz-server-side-encryption"),
        )

    def silence(self, what: str) -> StorageUnavailable:
        """The bucket did not answer (`what`: the failure's class name, unless coarse)."""
        detail = "" if self.coarse else f": {what}"
        return StorageUnavailable(f"the bucket did not answer{detail}")


class BucketClients:
    """One client per tenant, keyed by its whole configuration: saving new storage (keys or a
    role) replaces the tenant's client on the next request, without a restart.

    The async methods are the broker's way to its buckets: each runs on the storage pool
    (`broker.storage.io`) under a deadline. Call them with no database transaction open."""

    def __init__(
        self,
        identity: BrokerIdentity | None = None,
        policy: EndpointPolicy | None = None,
        io: StorageIO | None = None,
    ) -> None:
        self.identity = identity or BrokerIdentity()
        self.policy = policy or EndpointPolicy()
        self.io = io or StorageIO()
        self.http = BucketHTTP()  # its shared session: opened by the app (`opened`)
        self._lock = threading.Lock()
        self._clients: dict[str, BucketClient] = {}

    def get(self, config: StorageConfig) -> BucketClient:
        """Blocking: on the storage pool only (`client`)."""
        with self._lock:
            client = self._clients.get(config.tenant_id)
            if client is not None and client.config == config and not (
                client.pinned is not None and time.monotonic() - client.created > REPIN_SECONDS
            ):
                return client
        client = BucketClient(config, self.identity, self.policy)  # DNS, STS: outside the lock
        with self._lock:
            self._clients[config.tenant_id] = client
        return client

    def invalidate(self, note: Note) -> None:
        """A tenant's storage changed (`broker.db.notify`, from any replica): its client goes."""
        if note.topic is Topic.STORAGE:
            with self._lock:
                self._clients.pop(note.tenant_id, None)

    def forget_all(self) -> None:
        """Notes may have been missed: every client goes (each is made again on first use)."""
        with self._lock:
            self._clients.clear()
    def cached(self, config: StorageConfig) -> BucketClient | None:
        """The tenant's client for exactly `config` when it is made already and current (no
        re-pin due), else None; never blocks. A made client signs with static keys locally,
        so its presigns may run inline, even inside a transaction (`local_signer`)."""
        with self._lock:
            client = self._clients.get(config.tenant_id)
        if client is None or client.config != config or (
            client.pinned is not None and time.monotonic() - client.created > REPIN_SECONDS
        ):
            return None
        return client

    def local_signer(self, config: StorageConfig) -> BucketClient | None:
        """The cached client when presigning with it is pure computation: static keys (an
        assumed role's session may have to be refreshed from STS first). None: sign on the
        storage pool, outside any transaction (`presign_put`)."""
        if config.auth_mode != KEYS or config.secret_access_key is None:
            return None
        return self.cached(config)

    def fresh(self, config: StorageConfig) -> BucketClient:
        """A self-check's client, never cached (the configuration may not be saved yet)."""
        return BucketClient(config, self.identity, self.policy, selfcheck=True)

    async def client(self, config: StorageConfig) -> BucketClient:
        """The tenant's client; made on the storage pool only when it is not cached (no
        thread hop for a dictionary lookup)."""
        cached = self.cached(config)
        if cached is not None:
            return cached
        return await self.io.run(config.tenant_id, self.get, config, deadline=CLIENT_DEADLINE)

    async def presign_put(
        self, config: StorageConfig, key: str, *, size: int, sha256_b64: str, md5_b64: str,
        ttl: int, metadata: Mapping[str, str] | None = None,
    ) -> tuple[BucketClient, PresignedPut]:
        bucket = await self.client(config)

        def sign() -> PresignedPut:
            return bucket.presign_put(
                key, size=size, sha256_b64=sha256_b64, md5_b64=md5_b64, ttl=ttl,
                metadata=metadata,
            )

        put = await self.io.run(config.tenant_id, sign, deadline=PRESIGN_DEADLINE)
        return bucket, put

    async def presign_get(self, config: StorageConfig, key: str, *, ttl: int) -> str:
        bucket = await self.client(config)

        def sign() -> str:
            return bucket.presign_get(key, ttl=ttl)

        return await self.io.run(config.tenant_id, sign, deadline=PRESIGN_DEADLINE)

    async def put_once(self, bucket: BucketClient, key: str, body: bytes) -> bool:
        return await self.io.run(
            bucket.config.tenant_id, bucket.put_once, key, body, deadline=PUT_DEADLINE
        )

    async def head(self, bucket: BucketClient, key: str) -> ObjectHead | None:
        """The object's size and stored checksum, or None when there is no such object:
        signed by the tenant's client, sent on the event loop (`broker.storage.http`) within
        `HEAD_DEADLINE`, holding one of the tenant's storage slots; tried twice when the
        bucket does not answer or answers 5xx/429 (`ATTEMPTS`, as botocore's standard mode
        did)."""
        tenant_id = bucket.config.tenant_id
        if bucket.config.auth_mode == KEYS:
            url, headers = bucket.sign_head(key)  # static keys: pure computation
        else:  # an assumed role's session may be refreshed from STS first
            url, headers = await self.io.run(
                tenant_id, bucket.sign_head, key, deadline=PRESIGN_DEADLINE
            )
        pinned = bucket.pinned
        https = url.startswith("https:")

        async def send() -> Reply:
            return await self.http.head(
                url, headers,
                connect_to=None if pinned is None else pinned.address,
                server_hostname=pinned.host if pinned is not None and https else None,
                connect=CONNECT_TIMEOUT, read=READ_TIMEOUT,
            )

        _log_s3("call", "HeadObject", bucket.config.bucket, key=key)
        try:
            async with self.io.slot(tenant_id, deadline=HEAD_DEADLINE), asyncio.timeout(
                HEAD_DEADLINE
            ):
                try:
                    reply = await send()
                    retry = reply.status in _RETRIED
                except NoAnswer:
                    retry = True
                if retry:
                    try:
                        reply = await send()
                    except NoAnswer as exc:
                        raise bucket.silence(exc.reason) from None
        except TimeoutError:
            raise StorageTimeout(
                f"the tenant's bucket did not answer within {HEAD_DEADLINE:g} s"
            ) from None
        return bucket.read_head(reply.status, reply.headers)
