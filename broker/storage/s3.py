"""The broker's only door to a customer's bucket.

It presigns (a local computation) and reads object metadata (`HeadObject`). It has no method
that lists, deletes or reads object content (DESIGN G1–G3); the storage self-check
(`broker.storage.selfcheck`) is the only code that sends such requests, as probes that must be
refused. botocore's errors are translated here (and in `credentials`, `selfcheck`) only.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from broker.errors import StorageUnavailable
from broker.storage.config import StorageConfig
from broker.storage.credentials import BrokerIdentity, StorageAccessDenied, boto_session
from shared.keys import SEGMENT_CONTENT_TYPE

log = logging.getLogger(__name__)


def _log_operation(params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
    """Every S3 operation the broker calls or signs, by name, bucket and key or prefix (never
    a credential or a signature): operators can hold it against CloudTrail, and the test suite
    asserts the whole set (nothing lists or deletes outside the self-check)."""
    kind = "presign" if context.get("is_presign_request") else "call"
    where = params.get("Key") or params.get("Prefix") or ""
    fields = {
        "s3": kind,
        "s3_operation": model.name,
        "bucket": params.get("Bucket"),
        "key": params.get("Key"),
        "prefix": params.get("Prefix"),
    }
    log.info(
        "s3 %s %s %s/%s", kind, model.name, params.get("Bucket"), where, extra={"fields": fields}
    )


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
    def __init__(self, config: StorageConfig, identity: BrokerIdentity | None = None) -> None:
        self.config = config
        botocore_config = Config(
            signature_version="s3v4",  # never SigV2, whatever the region
            region_name=config.region,
            s3={"addressing_style": "path" if config.endpoint_url else "virtual"},
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=5,
            read_timeout=10,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        session = boto_session(config, identity or BrokerIdentity())
        self._client: Any = session.client(
            "s3",
            region_name=config.region,
            endpoint_url=config.endpoint_url,
            config=botocore_config,
        )
        self._client.meta.events.register("provide-client-params.s3", _log_operation)

    def presign_put(
        self, key: str, *, size: int, sha256_b64: str, md5_b64: str, ttl: int
    ) -> PresignedPut:
        """A PUT for exactly these bytes, once: every header below is part of the signature."""
        params = {
            "Bucket": self.config.bucket,
            "Key": key,
            "IfNoneMatch": "*",
            "ContentLength": size,
            "ContentMD5": md5_b64,
            "ChecksumAlgorithm": "SHA256",
            "ChecksumSHA256": sha256_b64,
            "ContentType": SEGMENT_CONTENT_TYPE,
        }
        url = self._client.generate_presigned_url(
            "put_object", Params=params, ExpiresIn=ttl, HttpMethod="PUT"
        )
        headers = {
            "Content-Length": str(size),
            "Content-MD5": md5_b64,
            "Content-Type": SEGMENT_CONTENT_TYPE,
            "If-None-Match": "*",
            "x-amz-checksum-sha256": sha256_b64,
            "x-amz-sdk-checksum-algorithm": "SHA256",
        }
        return PresignedPut(url=url, headers=headers)

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

    def _raw(self) -> Any:
        """The boto3 client, for the self-check's probes only (`broker.storage.selfcheck`)."""
        return self._client

    def head(self, key: str) -> ObjectHead | None:
        """The object's size and stored checksum, or None when there is no such object."""
        try:
            reply = self._client.head_object(
                Bucket=self.config.bucket, Key=key, ChecksumMode="ENABLED"
            )
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404:
                return None
            if status == 403:
                # A revoked key, or (on S3, without a list right) a missing object: HEAD
                # replies carry no error code to tell them apart; see StorageAccess.
                raise StorageAccessDenied(
                    "the bucket refused HeadObject with HTTP 403; check the broker's credentials"
                ) from None
            raise StorageUnavailable(
                f"the bucket refused HeadObject with HTTP {status}; check the broker's credentials"
            ) from None
        except BotoCoreError as exc:
            raise StorageUnavailable(f"the bucket did not answer: {type(exc).__name__}") from None
        return ObjectHead(
            size=int(reply["ContentLength"]),
            sha256=reply.get("ChecksumSHA256"),
            etag=reply.get("ETag"),
            server_side_encryption=reply.get("ServerSideEncryption"),
        )


class BucketClients:
    """One client per tenant, keyed by its whole configuration: saving new storage (keys or a
    role) replaces the tenant's client on the next request, without a restart."""

    def __init__(self, identity: BrokerIdentity | None = None) -> None:
        self.identity = identity or BrokerIdentity()
        self._lock = threading.Lock()
        self._clients: dict[str, BucketClient] = {}

    def get(self, config: StorageConfig) -> BucketClient:
        with self._lock:
            client = self._clients.get(config.tenant_id)
            if client is not None and client.config == config:
                return client
        client = BucketClient(config, self.identity)  # may call STS: outside the lock
        with self._lock:
            self._clients[config.tenant_id] = client
        return client

    def fresh(self, config: StorageConfig) -> BucketClient:
        """A client for a configuration that is not saved (yet), never cached."""
        return BucketClient(config, self.identity)
