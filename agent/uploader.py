"""Uploads one segment: grant from the broker, PUT straight to S3, completion at the broker.

The PUT sends exactly the grant's headers and exactly the segment's bytes; the broker signed
`If-None-Match: *`, the length and the SHA-256, so S3 accepts these bytes once and nothing
else (G4). A 412 means the object already exists — a previous PUT of ours succeeded and its
reply was lost — so we go straight to completion, where the broker checks size and checksum.

Transient failures (no reply, 5xx, 403 from an expired URL or rotated credentials, S3's
`RequestTimeout`, a segment the broker does not see yet) start over with a fresh grant after
a backoff, a bounded number of times. Other refusals raise `UploadError` for that segment.
A broker refusal that no other segment could escape either (the device is revoked, the
recording is gone or finished) is raised as the `BrokerError` itself.

Only the path of a presigned URL is ever logged; its query string carries the signature.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import urllib3

from agent.broker_client import BrokerClient
from agent.cpu import STAGES
from agent.encode import Segment
from agent.errors import BrokerError, UploadError
from agent.logs import redact, url_path
from agent.retry import RetryPolicy
from shared.errors import ErrorCode
from shared.wire import UploadGrant

log = logging.getLogger(__name__)

DEFAULT_POLICY = RetryPolicy(attempts=8, base_delay=1.0, max_delay=60.0)
PUT_TIMEOUT = urllib3.Timeout(connect=10.0, read=120.0)

# S3 error codes that a new grant and another try can cure
_TRANSIENT_S3_CODES = frozenset(
    {"RequestTimeout", "ExpiredToken", "TokenRefreshRequired", "SlowDown", "InternalError"}
)
# Broker refusals that condemn the whole recording, not just this segment
_FATAL_BROKER_STATUSES = frozenset({401, 403, 404})
_FATAL_BROKER_CODES = frozenset({ErrorCode.RECORDING_FINISHED.value})
_S3_CODE = re.compile(rb"<Code>([A-Za-z0-9.]{1,64})</Code>")


@dataclass(frozen=True, slots=True, kw_only=True)
class UploadResult:
    seq: int
    key_path: str  # the object's URL path (no query string)
    size: int
    duration_ms: int
    attempts: int
    state: str  # as the broker reported it after completion ("verified")


@dataclass(slots=True)
class UploadProgress:
    """What the attempts on one segment achieved so far."""

    key_path: str | None = None
    stored: bool = False  # the PUT succeeded (or found the object there): only complete
    attempts: int = 0


class UploadDeferred(Exception):
    """This attempt failed in a way a later one may cure (no reply, 5xx, expired URL, ...)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _TryAgain(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def _s3_error_code(body: bytes) -> str | None:
    match = _S3_CODE.search(body[:4096])
    return match.group(1).decode("ascii") if match else None


class Uploader:
    """Uploads segments of recordings with one broker client. Thread safe."""

    def __init__(
        self,
        broker: BrokerClient,
        *,
        http: urllib3.PoolManager | None = None,
        policy: RetryPolicy = DEFAULT_POLICY,
        timeout: urllib3.Timeout = PUT_TIMEOUT,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.broker = broker
        self._http = http or urllib3.PoolManager(num_pools=4, maxsize=2)
        self.policy = policy
        self._timeout = timeout
        self._sleep = sleep
        self._rng = rng or random.Random()

    def close(self) -> None:
        self._http.clear()

    def upload(self, recording_id: str, segment: Segment) -> UploadResult:
        """Store `segment` in the bucket and have the broker verify it (bounded retries)."""
        progress = UploadProgress()
        while True:
            try:
                return self.try_once(recording_id, segment, progress)
            except UploadDeferred as again:
                if progress.attempts >= self.policy.attempts:
                    raise UploadError(
                        segment.seq, f"gave up after {progress.attempts} attempts: {again.reason}"
                    ) from None
                delay = self.policy.delay(
                    progress.attempts, self._rng, retry_after=again.retry_after
                )
                log.warning(
                    "segment %d: %s; trying again in %.1f s (attempt %d of %d)",
                    segment.seq, again.reason, delay, progress.attempts + 1, self.policy.attempts,
                )
                self._sleep(delay)

    def try_once(
        self, recording_id: str, segment: Segment, progress: UploadProgress
    ) -> UploadResult:
        """One attempt: grant, PUT and completion (only completion once the PUT succeeded).

        Raises `UploadDeferred` for a failure that a later attempt may cure (the caller
        decides when), `UploadError` for a refusal no attempt can pass, and the `BrokerError`
        itself for a refusal that condemns the whole recording. `progress` carries what
        earlier attempts achieved; pass the same object for every attempt on a segment.
        """
        progress.attempts += 1
        try:
            return self._attempt(recording_id, segment, progress.attempts, progress)
        except _TryAgain as again:
            raise UploadDeferred(again.reason, again.retry_after) from None

    def _attempt(
        self, recording_id: str, segment: Segment, attempt: int, progress: UploadProgress
    ) -> UploadResult:
        if not progress.stored:
            try:
                grant = self.broker.request_upload(
                    recording_id, segment.seq, segment.upload_request()
                )
            except BrokerError as exc:
                raise self._broker_failure(segment.seq, exc, "upload grant") from None
            if grant.method.upper() != "PUT":
                raise UploadError(
                    segment.seq, f"the broker granted a {grant.method!r}, not a PUT"
                )
            progress.key_path = url_path(grant.url)
            status = self._put(segment, grant, progress.key_path)
            if status == 412:
                log.info(
                    "segment %d: %s already stored (412); completing",
                    segment.seq, progress.key_path,
                )
            # stored: should completion fail transiently, the next try only completes
            # (a new grant for a verified segment would be refused)
            progress.stored = True
        try:
            state = self.broker.complete_segment(recording_id, segment.seq)
        except BrokerError as exc:
            if exc.code == ErrorCode.SEGMENT_NOT_UPLOADED:
                progress.stored = False  # S3 does not have it after all: upload again
            raise self._broker_failure(segment.seq, exc, "completion") from None
        if state != "verified":
            log.warning(
                "segment %d: the broker reports state %r after completion", segment.seq, state
            )
        return UploadResult(
            seq=segment.seq,
            key_path=progress.key_path or "?",
            size=segment.size,
            duration_ms=segment.duration_ms,
            attempts=attempt,
            state=state,
        )

    def _put(self, segment: Segment, grant: UploadGrant, key_path: str) -> int:
        """PUT the bytes; returns 2xx or 412, raises `_TryAgain` or `UploadError` otherwise."""
        try:
            with STAGES.stage("upload"):
                response = self._http.request(
                    "PUT",
                    grant.url,
                    body=segment.data,
                    headers=dict(grant.headers),
                    timeout=self._timeout,
                    retries=False,
                    redirect=False,
                )
        except urllib3.exceptions.HTTPError as exc:
            raise _TryAgain(
                f"PUT {key_path} failed: {redact(type(exc).__name__)}: {_short(exc)}"
            ) from None
        status = response.status
        if 200 <= status < 300 or status == 412:
            return status
        code = _s3_error_code(response.data) or "no error code"
        reason = f"S3 answered {status} ({code}) to PUT {key_path}"
        if status >= 500 or status in (403, 408, 409, 429) or code in _TRANSIENT_S3_CODES:
            raise _TryAgain(reason)
        raise UploadError(segment.seq, reason)

    def _broker_failure(self, seq: int, exc: BrokerError, what: str) -> Exception:
        if exc.transient or exc.code == ErrorCode.SEGMENT_NOT_UPLOADED:
            return _TryAgain(f"{what}: {exc}", exc.retry_after)
        if exc.status in _FATAL_BROKER_STATUSES or exc.code in _FATAL_BROKER_CODES:
            return exc
        return UploadError(seq, f"{what} refused: {exc}")


def _short(exc: BaseException) -> str:
    # urllib3's messages name the pool (host and port), never the request URL
    return redact(str(exc))[:300]
