"""A small HTTP client for the broker's device API (urllib3, JSON).

Retries: connection failures and 5xx replies are transient and retried with bounded
exponential backoff and jitter; 429 waits for `Retry-After`; other 4xx are final. A call that
is not idempotent (enroll, token refresh, starting a recording) is retried only when the broker
cannot have acted on it: the connection was never made, or the reply was 429 or 503. A token
refresh is never replayed after it may have reached the broker: refresh tokens rotate and the
broker revokes the whole family when an old one is reused.

Device calls carry `Authorization: Bearer <access token>`. The access token is refreshed
when it has less than `REFRESH_MARGIN` seconds to live, and once after a 401 (then the call
is tried once more). The rotated credential is handed to `on_rotate` (which persists it)
before the new access token is used.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import urllib3

from agent.credentials import CredentialStore, DeviceCredential
from agent.errors import BrokerError, BrokerUnreachable, ConfigError, CredentialError
from agent.logs import redact
from agent.retry import RetryPolicy, parse_retry_after
from shared import version
from shared.api import LoginRequest, LoginStep, MfaRequest, RegisterDevice, Session
from shared.wire import (
    POLICY_KEYS,
    EnrollRequest,
    GapReport,
    Heartbeat,
    RecordingCreated,
    RefreshRequest,
    StartRecording,
    TokenPair,
    UploadGrant,
    UploadRequest,
    WireError,
)

log = logging.getLogger(__name__)
_T = TypeVar("_T")

REFRESH_MARGIN = 60.0  # seconds of life left below which the access token is refreshed
DEFAULT_TIMEOUT = urllib3.Timeout(connect=10.0, read=30.0)
_MAX_MESSAGE = 500

ENROLL_PATH = "/api/v1/devices/enroll"
LOGIN_PATH = "/api/v1/auth/login"
MFA_PATH = "/api/v1/auth/mfa"
REGISTER_PATH = "/api/v1/devices/register"
LOGOUT_PATH = "/api/v1/auth/logout"
TOKEN_PATH = "/api/v1/devices/token"  # noqa: S105 (a URL path)
RECORDINGS_PATH = "/api/v1/recordings"
HEARTBEAT_PATH = "/api/v1/devices/heartbeat"
BEAT_RATE_LIMIT_TRIES = 4  # a heartbeat refused with 429: tries in all
BEAT_RATE_LIMIT_WAIT = 5.0  # seconds, at most, between them (a beat seconds late is a beat)


def normalize_broker_url(url: str) -> str:
    """`url` checked (http or https, a host, no credentials, query or fragment), no trailing /."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"the broker URL must be an http:// or https:// URL, not {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ConfigError("the broker URL must not carry a user name or password")
    if parts.query or parts.fragment:
        raise ConfigError("the broker URL must not carry a query string or fragment")
    if parts.scheme == "http" and parts.hostname not in ("localhost", "127.0.0.1", "::1"):
        log.warning("the broker URL %s is plain http: tokens travel unencrypted", url)
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def parse_error_reply(
    status: int, body: bytes, headers: Mapping[str, str] | None = None
) -> BrokerError:
    """The `BrokerError` for a non-2xx reply: `{"error": code, "message": text}` when present."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "unexpected reply"
    code, message = f"http_{status}", reason
    try:
        data = json.loads(body) if body else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        data = None
    if isinstance(data, dict):
        if isinstance(data.get("error"), str) and data["error"]:
            code = data["error"]
        if isinstance(data.get("message"), str) and data["message"]:
            message = data["message"]
    retry_after = parse_retry_after(headers.get("Retry-After")) if headers else None
    return BrokerError(
        status, redact(code[:100]), redact(message[:_MAX_MESSAGE]), retry_after=retry_after
    )


def _may_retry(error: BrokerError, *, idempotent: bool) -> bool:
    if isinstance(error, BrokerUnreachable):
        return idempotent or not error.sent
    if error.status in (429, 503):
        return True
    return idempotent and error.status >= 500


class BrokerClient:
    """The broker's device API. Thread safe: the recorder's threads share one client."""

    def __init__(
        self,
        broker_url: str,
        *,
        credential: DeviceCredential | None = None,
        on_rotate: Callable[[DeviceCredential], None] | None = None,
        policy: RetryPolicy | None = None,
        timeout: urllib3.Timeout = DEFAULT_TIMEOUT,
        http: urllib3.PoolManager | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.base_url = normalize_broker_url(broker_url)
        self._credential = credential
        self._pending: DeviceCredential | None = None  # rotated but not yet persisted
        self._on_rotate = on_rotate
        self.policy = policy or RetryPolicy()
        self._timeout = timeout
        self._http = http or urllib3.PoolManager(num_pools=2, maxsize=4)
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.RLock()
        self._user_agent = f"bucketreel-agent/{version()}"

    @classmethod
    def from_store(cls, store: CredentialStore, **kwargs: Any) -> BrokerClient:
        """A client for the enrolled device in `store`; rotations are saved back to it."""
        credential = store.load()
        return cls(credential.broker_url, credential=credential, on_rotate=store.save, **kwargs)

    @property
    def credential(self) -> DeviceCredential | None:
        with self._lock:
            return self._credential

    def close(self) -> None:
        self._http.clear()

    # -- device lifecycle ---------------------------------------------------------------

    def enroll(self, code: str, name: str, public_key: str | None = None) -> TokenPair:
        """Trade a one-time enrollment code for the device's first token pair."""
        body = EnrollRequest(code=code, name=name, public_key=public_key).to_json()
        reply = self._send("POST", ENROLL_PATH, body, token=None, idempotent=False)
        return self._parse(TokenPair.from_json, reply, "enroll")

    # -- a person's session, only to enroll their own workstation (`enroll --email`) -------

    def login(self, tenant: str, email: str, password: str) -> LoginStep:
        """Step one of a person's sign-in: the MFA challenge (and the provisioning URI when
        two-factor sign-in is not set up yet)."""
        body = LoginRequest(tenant=tenant, email=email, password=password).to_json()
        reply = self._send("POST", LOGIN_PATH, body, token=None, idempotent=False, attempts=1)
        return self._parse(LoginStep.from_json, reply, "login")

    def mfa(self, challenge: str, code: str) -> Session:
        """Step two: the session tokens (and recovery codes on first enrollment)."""
        body = MfaRequest(challenge=challenge, code=code).to_json()
        reply = self._send("POST", MFA_PATH, body, token=None, idempotent=False, attempts=1)
        return self._parse(Session.from_json, reply, "sign-in")

    def register(self, user_token: str, name: str, public_key: str | None) -> TokenPair:
        """Enroll this workstation for the signed-in person."""
        body = RegisterDevice(name=name, public_key=public_key).to_json()
        reply = self._send("POST", REGISTER_PATH, body, token=user_token, idempotent=False)
        return self._parse(TokenPair.from_json, reply, "register")

    def logout(self, user_token: str) -> None:
        self._send("POST", LOGOUT_PATH, None, token=user_token, idempotent=False, attempts=1)

    def refresh(self) -> DeviceCredential:
        """Rotate the token pair now; the new credential is persisted before it is returned."""
        with self._lock:
            return self._refresh_locked()

    # -- recordings -----------------------------------------------------------------------

    def start_recording(self, started_at: datetime) -> str:
        """Open a recording; returns its id."""
        body = StartRecording(started_at=started_at).to_json()
        reply = self._call("POST", RECORDINGS_PATH, body, idempotent=False)
        return self._parse(RecordingCreated.from_json, reply, "recording").recording_id

    def request_upload(self, recording_id: str, seq: int, request: UploadRequest) -> UploadGrant:
        """A presigned PUT for segment `seq` (a new grant each call; the key never changes)."""
        path = f"{self._recording_path(recording_id)}/segments/{seq}/upload"
        reply = self._call("POST", path, request.to_json(), idempotent=True)
        return self._parse(UploadGrant.from_json, reply, "upload grant")

    def complete_segment(self, recording_id: str, seq: int) -> str:
        """Ask the broker to verify the uploaded object; returns the segment's state."""
        path = f"{self._recording_path(recording_id)}/segments/{seq}/complete"
        reply = self._call("POST", path, None, idempotent=True)
        state = reply.get("state")
        if not isinstance(state, str):
            raise BrokerError(200, "invalid_reply", "the broker's reply lacks 'state'")
        return state

    def finish_recording(self, recording_id: str) -> None:
        """Close the recording: no more segments will come."""
        self._call("POST", f"{self._recording_path(recording_id)}/finish", None, idempotent=True)

    def report_gap(self, recording_id: str, gap: GapReport) -> None:
        """Tell the broker which segments of a recording will never arrive, and why."""
        self._call(
            "POST", f"{self._recording_path(recording_id)}/gaps", gap.to_json(), idempotent=False
        )

    def heartbeat(self, beat: Heartbeat) -> dict[str, Any]:
        """Report this agent's status; tried once (the next heartbeat is the retry), except
        that a 429 is waited out (`Retry-After`, at most `BEAT_RATE_LIMIT_WAIT` s) up to
        `BEAT_RATE_LIMIT_TRIES` times: while a drain after an outage uses the device's whole
        request budget, beats would otherwise be refused for minutes and the broker would
        show a recording agent as silent.

        Returns the tenant's recording policy the reply carries: the keys set, values not
        checked yet (`agent.config.with_policy` does); {} when none is set (or the broker is
        older than policies).
        """
        for tried in range(1, BEAT_RATE_LIMIT_TRIES + 1):
            try:
                reply = self._call(
                    "POST", HEARTBEAT_PATH, beat.to_json(), idempotent=True, attempts=1
                )
                break
            except BrokerError as exc:
                if exc.status != 429 or tried == BEAT_RATE_LIMIT_TRIES:
                    raise
                self._sleep(min(exc.retry_after or 1.0, BEAT_RATE_LIMIT_WAIT))
        policy = reply.get("policy", {})
        if not isinstance(policy, dict):
            raise BrokerError(200, "invalid_reply", "bad heartbeat reply: policy: not an object")
        return {key: policy[key] for key in POLICY_KEYS if key in policy}

    # -- machinery ------------------------------------------------------------------------

    @staticmethod
    def _recording_path(recording_id: str) -> str:
        return f"{RECORDINGS_PATH}/{quote(recording_id, safe='')}"

    @staticmethod
    def _parse(parser: Callable[[object], _T], reply: dict[str, Any], what: str) -> _T:
        try:
            return parser(reply)
        except WireError as exc:
            raise BrokerError(200, "invalid_reply", f"bad {what} reply: {exc}") from None

    def _require_credential(self) -> DeviceCredential:
        if self._credential is None:
            raise CredentialError("this device is not enrolled")
        return self._credential

    def _persist_pending(self) -> None:
        """Save a rotated credential that is not on disk yet (raises if saving fails)."""
        if self._pending is not None:
            if self._on_rotate is not None:
                self._on_rotate(self._pending)
            self._pending = None

    def _access_token(self) -> str:
        with self._lock:
            self._persist_pending()
            credential = self._require_credential()
            if credential.expires_within(REFRESH_MARGIN, now=self._clock()):
                credential = self._refresh_locked()
            return credential.access_token

    def _refresh_after_401(self, rejected: str) -> None:
        with self._lock:
            self._persist_pending()
            if self._require_credential().access_token == rejected:
                self._refresh_locked()
            # else another thread already refreshed: use its token

    def _refresh_locked(self) -> DeviceCredential:
        self._persist_pending()
        current = self._require_credential()
        body = RefreshRequest(refresh_token=current.refresh_token).to_json()
        try:
            reply = self._send("POST", TOKEN_PATH, body, token=None, idempotent=False)
        except BrokerError as exc:
            if exc.status in (400, 401, 403):
                raise BrokerError(
                    exc.status,
                    exc.code,
                    "the broker no longer accepts this device's credential (revoked, or the "
                    "refresh token was already used): enroll this device again",
                ) from None
            raise
        pair: TokenPair = self._parse(TokenPair.from_json, reply, "token")
        rotated = current.rotated(pair, now=self._clock())
        # The old refresh token is dead from here on: keep the new one in memory whatever
        # happens, and persist it before anything uses the new access token.
        self._credential = rotated
        self._pending = rotated
        self._persist_pending()
        log.info("device %s: access token refreshed", rotated.device_id)
        return rotated

    def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        *,
        idempotent: bool,
        attempts: int | None = None,
    ) -> dict[str, Any]:
        """An authenticated device call: proactive refresh, and one refresh+retry on 401."""
        token = self._access_token()
        try:
            return self._send(
                method, path, body, token=token, idempotent=idempotent, attempts=attempts
            )
        except BrokerError as exc:
            if exc.status != 401:
                raise
            log.info("%s %s: access token refused, refreshing it once", method, path)
        self._refresh_after_401(token)
        return self._send(
            method, path, body, token=self._access_token(), idempotent=idempotent,
            attempts=attempts,
        )

    def _send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        *,
        token: str | None,
        idempotent: bool,
        attempts: int | None = None,
    ) -> dict[str, Any]:
        """One call with the retry policy applied to transient failures."""
        retry = 0
        limit = self.policy.attempts if attempts is None else attempts
        while True:
            try:
                return self._once(method, path, body, token)
            except BrokerError as exc:
                if not _may_retry(exc, idempotent=idempotent) or retry + 1 >= limit:
                    raise
                retry += 1
                delay = self.policy.delay(retry, self._rng, retry_after=exc.retry_after)
                log.warning(
                    "%s %s failed (%s); retry %d of %d in %.1f s",
                    method, path, exc, retry, limit - 1, delay,
                )
                self._sleep(delay)

    def _once(
        self, method: str, path: str, body: dict[str, Any] | None, token: str | None
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json", "User-Agent": self._user_agent}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        try:
            response = self._http.request(
                method,
                self.base_url + path,
                body=payload,
                headers=headers,
                timeout=self._timeout,
                retries=False,
                redirect=False,
            )
        except (urllib3.exceptions.ConnectTimeoutError, urllib3.exceptions.SSLError) as exc:
            # covers NewConnectionError and NameResolutionError: nothing was sent
            raise BrokerUnreachable(
                f"cannot connect to {self.base_url}: {_reason(exc)}", sent=False
            ) from None
        except urllib3.exceptions.HTTPError as exc:
            raise BrokerUnreachable(
                f"no reply from {self.base_url} to {method} {path}: {_reason(exc)}", sent=True
            ) from None
        log.debug("%s %s -> %d", method, path, response.status)
        if not 200 <= response.status < 300:
            raise parse_error_reply(response.status, response.data, response.headers)
        if not response.data:
            return {}
        try:
            data = json.loads(response.data)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise BrokerError(
                response.status, "invalid_reply", f"the reply to {method} {path} is not JSON"
            ) from None
        if not isinstance(data, dict):
            raise BrokerError(
                response.status, "invalid_reply", f"the reply to {method} {path} is not an object"
            )
        return data


def _reason(exc: BaseException) -> str:
    """A short, redacted description of a urllib3 failure."""
    inner = exc.__context__ or exc.__cause__
    reason = getattr(exc, "reason", None) or inner or exc
    return redact(str(reason))[:300] or type(exc).__name__
