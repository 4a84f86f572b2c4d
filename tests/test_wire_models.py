"""The wire models refuse bad bodies with a WireError that names the field and says, from the
field's own limits, what it must be (shared/model.py); the same limits are in the schema."""

from __future__ import annotations

import msgspec
import pytest

from shared.api import LoginRequest, StorageRequest
from shared.model import MAX_JSON_DEPTH, MalformedJSON, WireError
from shared.wire import Heartbeat, StartRecording, UploadRequest

BEAT = b'{"state": "recording", "spool_bytes": 0, "spool_segments": 0, "errors": 0'
GOOD_UPLOAD = {
    "size": 1, "sha256": "A" * 43 + "=", "md5": "A" * 22 + "==",
    "started_at": "2030-01-01T00:00:00Z", "duration_ms": 1,
}


@pytest.mark.parametrize(
    ("model", "raw", "field", "said"),
    [
        (LoginRequest, b'{"tenant": "", "email": "e", "password": "p"}', "tenant",
         "must be 1 to 200 characters long"),
        (LoginRequest, b'{"tenant": "t", "password": "p"}', "email", "is required"),
        (LoginRequest, b'{"tenant": 5, "email": "e", "password": "p"}', "tenant",
         "must be a string"),
        (Heartbeat, BEAT + b', "interval": 3601}', "interval",
         "must be at least 1 and at most 3600"),
        (Heartbeat, BEAT + b', "settings": {"fps": -1}}', "settings.fps", "must be at least 0"),
        (Heartbeat, BEAT + b', "last_upload": {"seq": true}}', "last_upload.seq",
         "must be an integer"),
        (UploadRequest, msgspec.json.encode({**GOOD_UPLOAD, "custody": {"prev": "x"}}),
         "custody.prev", "must be 64 lowercase hex digits (a SHA-256)"),
        (UploadRequest, msgspec.json.encode({**GOOD_UPLOAD, "size": 10**40}), "size",
         "must be at least 1 and at most 536870912"),
        (StartRecording, b'{"started_at": "9999-12-31T23:59:59-01:00"}', "started_at",
         "must be a time that exists in UTC"),
        (StartRecording, b'{"started_at": "2030-01-01T00:00:00"}', "started_at",
         "must be an RFC 3339 timestamp with a time zone (e.g. 'Z' or '+00:00')"),
        (StorageRequest, b'{"bucket": "b", "region": "r", "endpoint_url": "http://[::1"}',
         "endpoint_url", "must be an http or https URL"),
        (StorageRequest, b'{"bucket": "b", "region": "r", "endpoint_url": "ftp://h"}',
         "endpoint_url", "must be an http or https URL with a host"),
        (LoginRequest, b'{"tenant": "t", "email": "a\\u0000b", "password": "p"}', "email",
         "must not contain NUL characters"),
        (LoginRequest, b"[]", "body", "must be a JSON object"),
    ],
)
def test_a_bad_field_is_named_with_what_it_must_be(
    model: type[msgspec.Struct], raw: bytes, field: str, said: str
) -> None:
    with pytest.raises(WireError) as caught:
        model.decode(raw)  # type: ignore[attr-defined]
    assert (caught.value.field, caught.value.message) == (field, said)
    assert not isinstance(caught.value, MalformedJSON)


@pytest.mark.parametrize(
    "raw", [b"", b'{"tenant": ', b"\xff\xfe", b"[" * (MAX_JSON_DEPTH + 1) + b"]" * 40]
)
def test_what_is_not_json_is_malformed(raw: bytes) -> None:
    with pytest.raises(MalformedJSON):
        LoginRequest.decode(raw)


def test_good_bodies_round_trip_and_strings_may_hold_brackets() -> None:
    login = LoginRequest.decode(b'{"tenant": "[[[[", "email": "e", "password": "' + b"[" * 64
                                + b'"}')
    assert login.password == "[" * 64
    assert LoginRequest.from_json(login.to_json()) == login
    upload = UploadRequest.from_json(GOOD_UPLOAD)
    assert upload.to_json()["started_at"] == "2030-01-01T00:00:00Z"
