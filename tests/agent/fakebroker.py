"""A FAKE of the broker and of S3's presigned PUT, for the agent's unit tests.

`FakeBroker` is a FAKE of the broker and of S3's presigned PUT: a tiny real HTTP server
(http.server, 127.0.0.1, an ephemeral port) that speaks the broker's device API from
`shared.wire` and stores PUT bodies in memory. The broker is a separate service and S3 a
separate system; this stand-in lets the agent's own code (HTTP client, retries, token
rotation, uploader, recorder, CLI) run for real without them, and lets a test inject the
failures (5xx, 429, 401, lost replies, 412) that a real broker or bucket will not produce on
cue. The lead's end-to-end tests run the agent against the real broker and a real S3 API.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from shared.errors import ErrorCode
from shared.keys import segment_key
from shared.wire import (
    EnrollRequest,
    RefreshRequest,
    StartRecording,
    TokenPair,
    UploadGrant,
    UploadRequest,
    WireError,
)

SIGNATURE = "SECRETSIGNATURE0123456789abcdef"


@dataclass
class Scripted:
    """A reply to send instead of the normal one, for requests matching method and path."""

    method: str
    path_prefix: str
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1
    drop: bool = False  # do the normal work, then close the connection without a reply
    no_reply: bool = False  # close the connection without doing anything


@dataclass
class Logged:
    method: str
    path: str  # with query string
    headers: dict[str, str]
    body: bytes
    status: int = 0


class FakeBroker:
    """The fake broker + fake bucket. Thread safe; everything is in memory."""

    def __init__(self, *, expires_in: int = 900) -> None:
        self.expires_in = expires_in
        self.lock = threading.Lock()
        self.codes: set[str] = set()
        self.access: dict[str, str] = {}  # access token -> device id
        self.refresh: dict[str, str] = {}  # current refresh token -> device id
        self.dead_refresh: dict[str, str] = {}  # rotated refresh token -> device id
        self.devices = 0
        self.revoked: set[str] = set()  # device ids (family revoked)
        self.recordings: dict[str, dict[str, Any]] = {}
        self.heartbeats: list[Any] = []  # the heartbeat bodies received
        self.objects: dict[str, bytes] = {}  # key -> bytes
        self.declared: dict[tuple[str, int], UploadRequest] = {}
        self.grants: list[tuple[str, int]] = []
        self.script: list[Scripted] = []
        self.log: list[Logged] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # -- set-up helpers ---------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def issue_code(self) -> str:
        code = f"code-{secrets.token_hex(4)}"
        self.codes.add(code)
        return code

    def new_device(self, device_id: str = "dev-1") -> TokenPair:
        with self.lock:
            return self._pair(device_id)

    def fail(self, method: str, path_prefix: str, status: int, **kwargs: Any) -> None:
        """Script the next matching request(s) to get `status` instead of the normal reply."""
        if "error" in kwargs:
            error = kwargs.pop("error")
            kwargs["body"] = json.dumps({"error": error, "message": f"scripted {error}"}).encode()
        self.script.append(Scripted(method, path_prefix, status, **kwargs))

    def requests(self, method: str | None = None, prefix: str = "") -> list[Logged]:
        with self.lock:
            return [
                r for r in self.log
                if (method is None or r.method == method) and r.path.startswith(prefix)
            ]

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- behaviour --------------------------------------------------------------------

    def _pair(self, device_id: str) -> TokenPair:
        access = f"at-{secrets.token_hex(8)}"
        refresh = f"rt-{secrets.token_hex(8)}"
        self.access[access] = device_id
        self.refresh[refresh] = device_id
        return TokenPair(
            device_id=device_id,
            access_token=access,
            refresh_token=refresh,
            expires_in=self.expires_in,
        )

    def _take_script(self, method: str, path: str) -> Scripted | None:
        with self.lock:
            for item in self.script:
                if item.method == method and path.startswith(item.path_prefix):
                    item.times -= 1
                    if item.times <= 0:
                        self.script.remove(item)
                    return item
        return None

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[
        int, dict[str, str], bytes
    ]:
        try:
            if path.startswith("/s3/"):
                return self._s3(method, path, headers, body)
            return self._api(method, path, headers, body)
        except WireError as exc:
            return _json(400, {"error": ErrorCode.INVALID_FIELD, "message": str(exc)})

    def _device(self, headers: dict[str, str]) -> str | None:
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return None
        with self.lock:
            device = self.access.get(auth.removeprefix("Bearer "))
            return None if device in self.revoked else device

    def _api(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[
        int, dict[str, str], bytes
    ]:
        if method != "POST":
            return _json(405, {"error": ErrorCode.METHOD_NOT_ALLOWED, "message": "POST only"})
        data = json.loads(body) if body else None
        parts = path.split("/")
        if path == "/api/v1/devices/enroll":
            req = EnrollRequest.from_json(data)
            with self.lock:
                if req.code not in self.codes:
                    return _json(
                        401, {"error": ErrorCode.INVALID_ENROLLMENT_CODE, "message": "bad code"}
                    )
                self.codes.remove(req.code)
                self.devices += 1
                pair = self._pair(f"dev-{self.devices}")
            return _json(201, pair.to_json())
        if path == "/api/v1/devices/token":
            rreq = RefreshRequest.from_json(data)
            with self.lock:
                device = self.refresh.pop(rreq.refresh_token, None)
                if device is None or device in self.revoked:
                    if rreq.refresh_token in self.dead_refresh:
                        # reuse of a rotated token: revoke the family, as the real broker does
                        self.revoked.add(self.dead_refresh[rreq.refresh_token])
                    return _json(401, {"error": ErrorCode.INVALID_TOKEN, "message": "no"})
                self.dead_refresh[rreq.refresh_token] = device
                for token, dev in list(self.access.items()):
                    if dev == device:
                        del self.access[token]
                pair = self._pair(device)
            return _json(200, pair.to_json())
        device = self._device(headers)
        if device is None:
            return _json(401, {"error": ErrorCode.UNAUTHENTICATED, "message": "who are you"})
        if path == "/api/v1/devices/heartbeat":
            with self.lock:
                self.heartbeats.append(data)
            interval = data.get("interval", 60) if isinstance(data, dict) else 60
            return _json(
                200, {"received_at": "2099-01-01T00:00:00Z", "interval": interval, "policy": {}}
            )
        if path == "/api/v1/recordings":
            start = StartRecording.from_json(data)
            rid = f"rec-{len(self.recordings) + 1}"
            with self.lock:
                self.recordings[rid] = {
                    "device": device, "started_at": start.started_at, "finished": False,
                    "verified": set(),
                }
            return _json(201, {"recording_id": rid})
        if len(parts) >= 5 and parts[:4] == ["", "api", "v1", "recordings"]:
            rid = unquote(parts[4])
            rec = self.recordings.get(rid)
            if rec is None or rec["device"] != device:
                return _json(404, {"error": ErrorCode.NOT_FOUND, "message": "no such recording"})
            if parts[5:] == ["finish"]:
                rec["finished"] = True
                return _json(200, {"state": "finished"})
            if len(parts) == 8 and parts[5] == "segments":
                seq = int(parts[6])
                key = segment_key("rec", "t1", device, rid, seq)
                if parts[7] == "upload":
                    if rec["finished"]:
                        return _json(
                            409, {"error": ErrorCode.RECORDING_FINISHED, "message": "finished"}
                        )
                    ureq = UploadRequest.from_json(data)
                    with self.lock:
                        self.declared[(rid, seq)] = ureq
                        self.grants.append((rid, seq))
                    query = f"X-Amz-Signature={SIGNATURE}&n={len(self.grants)}"
                    grant = UploadGrant(
                        url=f"{self.url}/s3/bucket/{key}?{query}",
                        method="PUT",
                        headers={
                            "If-None-Match": "*",
                            "Content-Length": str(ureq.size),
                            "x-amz-checksum-sha256": ureq.sha256,
                            "Content-Type": "video/mp4",
                        },
                        expires_at="2099-01-01T00:00:00Z",
                    )
                    return _json(200, grant.to_json())
                if parts[7] == "complete":
                    declared = self.declared.get((rid, seq))
                    stored = self.objects.get(f"bucket/{key}")
                    if declared is None or stored is None:
                        return _json(
                            409, {"error": ErrorCode.SEGMENT_NOT_UPLOADED, "message": "no object"}
                        )
                    sha = base64.b64encode(hashlib.sha256(stored).digest()).decode()
                    if len(stored) != declared.size or sha != declared.sha256:
                        return _json(409, {"error": ErrorCode.SEGMENT_MISMATCH, "message": "!="})
                    rec["verified"].add(seq)
                    return _json(200, {"state": "verified"})
        return _json(404, {"error": ErrorCode.NOT_FOUND, "message": "no such route"})

    def _s3(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[
        int, dict[str, str], bytes
    ]:
        parts = urlsplit(path)
        if f"X-Amz-Signature={SIGNATURE}" not in parts.query:
            return _s3_error(403, "AccessDenied")
        key = parts.path.removeprefix("/s3/")
        if method != "PUT":
            return _s3_error(405, "MethodNotAllowed")
        if headers.get("if-none-match") != "*":
            return _s3_error(403, "SignatureDoesNotMatch")
        if headers.get("content-length") != str(len(body)):
            return _s3_error(400, "IncompleteBody")
        sha = base64.b64encode(hashlib.sha256(body).digest()).decode()
        if headers.get("x-amz-checksum-sha256") != sha:
            return _s3_error(400, "BadDigest")
        with self.lock:
            if key in self.objects:
                return _s3_error(412, "PreconditionFailed")
            self.objects[key] = body
        return 200, {"ETag": '"x"'}, b""

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        broker = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                entry = Logged(self.command, self.path, headers, body)
                with broker.lock:
                    broker.log.append(entry)
                scripted = broker._take_script(self.command, self.path)
                if scripted is not None and scripted.no_reply:
                    self.close_connection = True
                    return
                if scripted is not None and not scripted.drop:
                    status, extra, payload = scripted.status, scripted.headers, scripted.body
                else:
                    status, extra, payload = broker.handle(
                        self.command, self.path, headers, body
                    )
                    if scripted is not None:  # drop: work done, reply lost
                        entry.status = status
                        self.close_connection = True
                        return
                entry.status = status
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        return Handler


def _json(status: int, data: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(data).encode()


def _s3_error(status: int, code: str) -> tuple[int, dict[str, str], bytes]:
    body = f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>m</Message></Error>"
    return status, {"Content-Type": "application/xml"}, body.encode()
