"""The strict S3 gate itself: what botocore signs passes, anything else is refused as S3 would.

Every URL and request here is signed by botocore (the SDK the broker uses), not by the gate's
own code, so a bug in the gate's canonicalisation shows up as a refused good request.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit
from xml.etree import ElementTree

import pytest
import urllib3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.support.s3gate import AccessKey, Grant, S3Gate, operation_name

HTTP = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(total=30))


@dataclass(frozen=True)
class SignedPut:
    url: str
    headers: dict[str, str]
    data: bytes
    key: str


@pytest.fixture(scope="module")
def bucket(s3_gate: S3Gate, setup_key: AccessKey) -> str:
    return s3_gate.endpoint(setup_key).create_bucket()


@pytest.fixture
def key(s3_gate: S3Gate) -> AccessKey:
    """A fresh key for one test (tests deactivate and delete theirs)."""
    return s3_gate.keys.add(label="gate-test")


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def presign_put(
    gate: S3Gate, key: AccessKey, bucket: str, *, data: bytes | None = None,
    object_key: str | None = None, ttl: int = 120, md5: bool = True,
) -> SignedPut:
    """A presigned PUT as the broker makes it: If-None-Match, length, MD5, SHA-256 signed."""
    data = secrets.token_bytes(2048) if data is None else data
    object_key = object_key or f"seg/{secrets.token_hex(6)}.mp4"
    params: dict[str, Any] = {
        "Bucket": bucket, "Key": object_key, "IfNoneMatch": "*", "ContentLength": len(data),
        "ChecksumAlgorithm": "SHA256", "ChecksumSHA256": b64(hashlib.sha256(data).digest()),
        "ContentType": "video/mp4",
    }
    headers = {
        "Content-Length": str(len(data)), "Content-Type": "video/mp4", "If-None-Match": "*",
        "x-amz-checksum-sha256": params["ChecksumSHA256"],
        "x-amz-sdk-checksum-algorithm": "SHA256",
    }
    if md5:
        params["ContentMD5"] = headers["Content-MD5"] = b64(hashlib.md5(data).digest())  # noqa: S324
    url = gate.client(key).generate_presigned_url(
        "put_object", Params=params, ExpiresIn=ttl, HttpMethod="PUT"
    )
    return SignedPut(url, headers, data, object_key)


def presign_get(gate: S3Gate, key: AccessKey, bucket: str, object_key: str, ttl: int = 60) -> str:
    url: str = gate.client(key).generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": object_key,
                              "ResponseCacheControl": "no-store"},
        ExpiresIn=ttl, HttpMethod="GET",
    )
    return url


def send(method: str, url: str, *, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> urllib3.BaseHTTPResponse:
    return HTTP.request(method, url, body=body, headers=headers or {})


def put(signed: SignedPut, *, body: bytes | None = None, url: str | None = None,
        headers: dict[str, str] | None = None) -> urllib3.BaseHTTPResponse:
    return send("PUT", url or signed.url, body=signed.data if body is None else body,
                headers=signed.headers if headers is None else headers)


def error_code(response: urllib3.BaseHTTPResponse) -> str | None:
    root = ElementTree.fromstring(response.data)  # noqa: S314 - our own gate's answer
    assert root.tag == "Error"
    return root.findtext("Code")


def exists(gate: S3Gate, setup_key: AccessKey, bucket: str, object_key: str) -> bool:
    try:
        gate.client(setup_key).head_object(Bucket=bucket, Key=object_key)
    except ClientError as err:
        status = err.response["ResponseMetadata"]["HTTPStatusCode"]
    else:
        return True
    assert status == 404, f"HeadObject with the set-up key answered {status}"
    return False


def with_query(url: str, name: str, value: str) -> str:
    parts = urlsplit(url)
    pairs = [p if not p.startswith(f"{name}=") else f"{name}={value}"
             for p in parts.query.split("&")]
    return urlunsplit(parts._replace(query="&".join(pairs)))


def query_value(url: str, name: str) -> str:
    match = re.search(rf"(?:^|&){re.escape(name)}=([^&]*)", urlsplit(url).query)
    assert match, f"{name} not in {url}"
    return match.group(1)


# -- what must pass ---------------------------------------------------------------------------


def test_sdk_client_calls_pass_and_are_logged_per_key(
    s3_gate: S3Gate, key: AccessKey, bucket: str
) -> None:
    client = s3_gate.client(key)
    object_key = f"sdk/{secrets.token_hex(4)}"
    client.put_object(Bucket=bucket, Key=object_key, Body=b"hello gate")
    assert client.get_object(Bucket=bucket, Key=object_key)["Body"].read() == b"hello gate"
    assert client.head_object(Bucket=bucket, Key=object_key)["ContentLength"] == 10
    listed = client.list_objects_v2(Bucket=bucket, Prefix="sdk/")
    assert object_key in [item["Key"] for item in listed["Contents"]]
    client.delete_object(Bucket=bucket, Key=object_key)

    names = [entry.name for entry in s3_gate.log.entries(key.key_id)]
    assert names == ["PutObject", "GetObject", "HeadObject", "ListObjectsV2", "DeleteObject"]
    assert all(e.signed_ok and e.error is None and e.label == "gate-test"
               for e in s3_gate.log.entries(key.key_id))


@pytest.mark.parametrize(
    "object_key",
    ["plain.mp4", "a b/c+d=e&f.mp4", "ünï/çødé~tilde.mp4", "dots/x..y.mp4", "semi;colon,comma"],
)
def test_presigned_put_and_get_pass_for_any_key_spelling(
    s3_gate: S3Gate, key: AccessKey, setup_key: AccessKey, bucket: str, object_key: str
) -> None:
    signed = presign_put(s3_gate, key, bucket, object_key=f"{secrets.token_hex(3)}/{object_key}")

    first = put(signed)
    assert first.status == 200, first.data
    got = send("GET", presign_get(s3_gate, key, bucket, signed.key))
    assert (got.status, got.data) == (200, signed.data)
    assert got.headers["Cache-Control"] == "no-store"


def test_a_url_whose_lifetime_has_not_run_out_passes_on_a_skewed_clock(
    s3_gate: S3Gate, key: AccessKey, bucket: str
) -> None:
    signed = presign_put(s3_gate, key, bucket, ttl=120)
    with s3_gate.advanced(110):
        assert put(signed).status == 200


def test_unknown_paths_and_operations_are_named_as_s3_names_them() -> None:
    cases: list[tuple[str, str, list[tuple[str, str]], dict[str, str], str]] = [
        ("GET", "/", [], {}, "ListBuckets"),
        ("PUT", "/b", [], {}, "CreateBucket"),
        ("GET", "/b", [("list-type", "2")], {}, "ListObjectsV2"),
        ("GET", "/b", [], {}, "ListObjects"),
        ("GET", "/b", [("versions", "")], {}, "ListObjectVersions"),
        ("GET", "/b", [("uploads", "")], {}, "ListMultipartUploads"),
        ("POST", "/b", [("delete", "")], {}, "DeleteObjects"),
        ("DELETE", "/b", [], {}, "DeleteBucket"),
        ("PUT", "/b", [("policy", "")], {}, "PutBucketPolicy"),
        ("PUT", "/b", [("acl", "")], {}, "PutBucketAcl"),
        ("HEAD", "/b", [], {}, "HeadBucket"),
        ("PUT", "/b/k", [], {}, "PutObject"),
        ("PUT", "/b/k", [], {"x-amz-copy-source": "b/o"}, "CopyObject"),
        ("GET", "/b/k", [], {}, "GetObject"),
        ("HEAD", "/b/k", [], {}, "HeadObject"),
        ("DELETE", "/b/k", [], {}, "DeleteObject"),
        ("DELETE", "/b/k", [("versionId", "1")], {}, "DeleteObject"),
        ("PUT", "/b/k", [("acl", "")], {}, "PutObjectAcl"),
        ("PUT", "/b/k", [("retention", "")], {}, "PutObjectRetention"),
        ("PUT", "/b/k", [("legal-hold", "")], {}, "PutObjectLegalHold"),
        ("POST", "/b/k", [("uploads", "")], {}, "CreateMultipartUpload"),
        ("PUT", "/b/k", [("partNumber", "1"), ("uploadId", "u")], {}, "UploadPart"),
        ("DELETE", "/b/k", [("uploadId", "u")], {}, "AbortMultipartUpload"),
        ("GET", "/b/k", [("uploadId", "u")], {}, "ListParts"),
    ]
    import botocore.session

    real = set(botocore.session.get_session().get_service_model("s3").operation_names)
    for method, path, query, headers, expected in cases:
        assert operation_name(method, path, query, headers) == expected, (method, path, query)
        assert expected in real


# -- what must fail ---------------------------------------------------------------------------


def test_a_tampered_signature_is_refused(
    s3_gate: S3Gate, key: AccessKey, setup_key: AccessKey, bucket: str
) -> None:
    signed = presign_put(s3_gate, key, bucket)
    signature = query_value(signed.url, "X-Amz-Signature")
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]

    for bad in (flipped, signature[:-1], signature + "0", ""):
        reply = put(signed, url=with_query(signed.url, "X-Amz-Signature", bad))
        assert (reply.status, error_code(reply)) == (403, "SignatureDoesNotMatch")
    assert not exists(s3_gate, setup_key, bucket, signed.key)


def test_upper_case_hex_signature_is_the_same_signature(
    s3_gate: S3Gate, key: AccessKey, bucket: str
) -> None:
    signed = presign_put(s3_gate, key, bucket)
    upper = query_value(signed.url, "X-Amz-Signature").upper()
    assert put(signed, url=with_query(signed.url, "X-Amz-Signature", upper)).status == 200


def test_a_tampered_path_is_refused(
    s3_gate: S3Gate, key: AccessKey, setup_key: AccessKey, bucket: str
) -> None:
    signed = presign_put(s3_gate, key, bucket)
    parts = urlsplit(signed.url)
    other_key = f"seg/{secrets.token_hex(6)}.mp4"
    for path in (f"/{bucket}/{other_key}", f"/{bucket}/{signed.key}x",
                 f"/{bucket}//{signed.key}", f"/{bucket}/{quote(signed.key, safe='')}x"):
        reply = put(signed, url=urlunsplit(parts._replace(path=path)))
        assert (reply.status, error_code(reply)) == (403, "SignatureDoesNotMatch"), path
    assert not exists(s3_gate, setup_key, bucket, other_key)
    assert not exists(s3_gate, setup_key, bucket, signed.key)


def test_a_tampered_query_parameter_is_refused(
    s3_gate: S3Gate, key: AccessKey, bucket: str
) -> None:
    signed = presign_put(s3_gate, key, bucket, ttl=60)
    longer = put(signed, url=with_query(signed.url, "X-Amz-Expires", "3600"))
    extra = put(signed, url=signed.url + "&acl=")
    assert (longer.status, error_code(longer)) == (403, "SignatureDoesNotMatch")
    assert (extra.status, error_code(extra)) == (403, "SignatureDoesNotMatch")


def test_an_expired_url_is_refused(
    s3_gate: S3Gate, key: AccessKey, setup_key: AccessKey, bucket: str
) -> None:
    signed = presign_put(s3_gate, key, bucket, ttl=60)
    with s3_gate.advanced(61):
        reply = put(signed)
    assert (reply.status, error_code(reply)) == (403, "AccessDenied")
    assert b"Request has expired" in reply.data
    assert not exists(s3_gate, setup_key, bucket, signed.key)
    assert put(signed).status == 200  # the same URL, in its lifetime: only time refused it


def test_a_url_signed_in_the_future_is_refused(
    s3_gate: S3Gate, key: AccessKey, bucket: str
) -> None:
    signed = presign_put(s3_gate, key, bucket, ttl=60)
    with s3_gate.advanced(-16 * 60):
        reply = put(signed)
    assert (reply.status, error_code(reply)) == (403, "AccessDenied")


@pytest.mark.parametrize("method", ["GET", "DELETE", "POST", "HEAD"])
def test_another_method_is_refused(
    s3_gate: S3Gate, key: AccessKey, setup_key: AccessKey, bucket: str, method: str
) -> None:
    signed = presign_put(s3_gate, key, bucket)
    assert put(signed).status == 200

    with_body = method == "POST"
    headers = {k: v for k, v in signed.headers.items() if with_body or k != "Content-Length"}
    reply = send(method, signed.url, headers=headers, body=signed.data if with_body else None)

    assert reply.status == 403
    if method != "HEAD":  # S3 answers HEAD without a body
        assert error_code(reply) == "SignatureDoesNotMatch"
    assert exists(s3_gate, setup_key, bucket, signed.key), "DELETE must not have reached moto"


def test_a_get_url_cannot_put(s3_gate: S3Gate, key: AccessKey, bucket: str) -> None:
    signed = presign_put(s3_gate, key, bucket)
    url = presign_get(s3_gate, key, bucket, signed.key)
    reply = put(signed, url=url, headers={"Content-Length": str(len(signed.data))})
    assert (reply.status, error_code(reply)) == (403, "SignatureDoesNotMatch")
    reply = put(signed, url=url)  # with the PUT grant's x-amz-* headers, which it did not sign
    assert (reply.status, error_code(reply)) == (403, "AccessDenied")


def test_a_body_other_than_the_signed_digests_is_refused(
    s3_gate: S3Gate, key: AccessKey, setup_key: AccessKey, bucket: str
) -> None:
    signed = presign_put(s3_gate, key, bucket)
    same_length = secrets.token_bytes(len(signed.data))
    reply = put(signed, body=same_length)
    assert (reply.status, error_code(reply)) == (400, "BadDigest")

    longer = signed.data + b"x"
    reply = put(signed, body=longer, headers={**signed.headers, "Content-Length": str(len(longer))})
    assert (reply.status, error_code(reply)) == (403, "SignatureDoesNotMatch")
    assert not exists(s3_gate, setup_key, bucket, signed.key)


def test_the_sha256_checksum_alone_is_checked_against_the_body(
    s3_gate: S3Gate, key: AccessKey, setup_key: AccessKey, bucket: str
) -> None:
    signed = presign_put(s3_gate, key, bucket, md5=False)
    reply = put(signed, body=secrets.token_bytes(len(signed.data)))
    assert (reply.status, error_code(reply)) == (400, "BadDigest")
    assert b"SHA256" in reply.data
    assert not exists(s3_gate, setup_key, bucket, signed.key)


def test_a_malformed_content_md5_is_an_invalid_digest(
    s3_gate: S3Gate, key: AccessKey, bucket: str
) -> None:
    data = b"some bytes"
    client = s3_gate.client(key)
    with pytest.raises(ClientError) as caught:
        client.put_object(Bucket=bucket, Key="md5/bad", Body=data, ContentMD5="bm90LW1kNQ==")
    assert caught.value.response["Error"]["Code"] == "InvalidDigest"
    with pytest.raises(ClientError) as caught:
        client.put_object(Bucket=bucket, Key="md5/wrong", Body=data,
                          ContentMD5=b64(hashlib.md5(b"other").digest()))  # noqa: S324
    assert caught.value.response["Error"]["Code"] == "BadDigest"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_dropping_a_signed_header_or_adding_an_unsigned_amz_header_is_refused(
    s3_gate: S3Gate, key: AccessKey, bucket: str
) -> None:
    signed = presign_put(s3_gate, key, bucket)
    without = {k: v for k, v in signed.headers.items() if k != "If-None-Match"}
    reply = put(signed, headers=without)
    assert (reply.status, error_code(reply)) == (403, "SignatureDoesNotMatch")

    reply = put(signed, headers={**signed.headers, "x-amz-acl": "public-read"})
    assert (reply.status, error_code(reply)) == (403, "AccessDenied")
    assert b"not signed" in reply.data

    reply = put(signed, headers={**signed.headers, "If-None-Match": "\"etag\""})
    assert (reply.status, error_code(reply)) == (403, "SignatureDoesNotMatch")


def test_a_deactivated_key_is_refused_until_reactivated(
    s3_gate: S3Gate, key: AccessKey, setup_key: AccessKey, bucket: str
) -> None:
    signed = presign_put(s3_gate, key, bucket)
    s3_gate.keys.deactivate(key.key_id)
    reply = put(signed)
    assert (reply.status, error_code(reply)) == (403, "InvalidAccessKeyId")
    with pytest.raises(ClientError) as caught:
        s3_gate.client(key).head_object(Bucket=bucket, Key=signed.key)
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert not exists(s3_gate, setup_key, bucket, signed.key)

    s3_gate.keys.activate(key.key_id)
    assert put(signed).status == 200


def test_a_deleted_or_unknown_key_or_a_wrong_secret_is_refused(
    s3_gate: S3Gate, key: AccessKey, bucket: str
) -> None:
    signed = presign_put(s3_gate, key, bucket)
    s3_gate.keys.delete(key.key_id)
    reply = put(signed)
    assert (reply.status, error_code(reply)) == (403, "InvalidAccessKeyId")

    stranger = AccessKey("AKIA" + secrets.token_hex(8).upper(), "never-registered-secret")
    reply = put(presign_put(s3_gate, stranger, bucket))
    assert (reply.status, error_code(reply)) == (403, "InvalidAccessKeyId")

    impostor = s3_gate.keys.add(label="gate-test")
    wrong_secret = AccessKey(impostor.key_id, impostor.secret + "x")
    reply = put(presign_put(s3_gate, wrong_secret, bucket))
    assert (reply.status, error_code(reply)) == (403, "SignatureDoesNotMatch")
    with pytest.raises(ClientError) as caught:
        s3_gate.client(wrong_secret).list_objects_v2(Bucket=bucket)
    assert caught.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_an_anonymous_request_is_refused(s3_gate: S3Gate, bucket: str) -> None:
    reply = send("GET", f"{s3_gate.url}/{bucket}?list-type=2")
    assert (reply.status, error_code(reply)) == (403, "AccessDenied")
    names = {(e.key_id, e.name, e.error) for e in s3_gate.log.entries(None)}
    assert (None, "ListObjectsV2", "AccessDenied") in names


def _header_signed(gate: S3Gate, key: AccessKey, method: str, url: str, body: bytes
                   ) -> dict[str, str]:
    request = AWSRequest(method=method, url=url, data=body)
    S3SigV4Auth(Credentials(key.key_id, key.secret), "s3", gate.region).add_auth(request)
    return dict(request.headers.items())


def test_header_signed_body_must_match_its_payload_hash(
    s3_gate: S3Gate, key: AccessKey, setup_key: AccessKey, bucket: str
) -> None:
    url = f"{s3_gate.url}/{bucket}/header/{secrets.token_hex(4)}"
    headers = _header_signed(s3_gate, key, "PUT", url, b"signed body")
    assert len(headers["X-Amz-Content-SHA256"]) == 64  # a real payload hash, not UNSIGNED

    reply = send("PUT", url, body=b"other body!", headers=headers)
    assert (reply.status, error_code(reply)) == (400, "XAmzContentSHA256Mismatch")
    assert send("PUT", url, body=b"signed body", headers=headers).status == 200


def test_header_signed_request_too_far_off_in_time_is_refused(
    s3_gate: S3Gate, key: AccessKey, bucket: str
) -> None:
    url = f"{s3_gate.url}/{bucket}?list-type=2"
    headers = _header_signed(s3_gate, key, "GET", url, b"")
    with s3_gate.advanced(16 * 60):
        reply = send("GET", url, headers=headers)
    assert (reply.status, error_code(reply)) == (403, "RequestTimeTooSkewed")
    assert send("GET", url, headers=headers).status == 200


def test_header_signed_request_for_another_region_is_refused(
    s3_gate: S3Gate, key: AccessKey, bucket: str
) -> None:
    with pytest.raises(ClientError) as caught:
        s3_gate.client(key, region_name="us-west-2").head_object(Bucket=bucket, Key="x")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_refusals_are_logged_under_the_claimed_key(
    s3_gate: S3Gate, key: AccessKey, bucket: str
) -> None:
    signed = presign_put(s3_gate, key, bucket)
    send("DELETE", signed.url)
    entries = s3_gate.log.entries(key.key_id)
    assert [(e.name, e.status, e.signed_ok, e.error) for e in entries] == [
        ("DeleteObject", 403, False, "SignatureDoesNotMatch")
    ]
    assert s3_gate.log.operations(key.key_id, authorised_only=True) == set()
    assert s3_gate.log.operations(key.key_id) == {"DeleteObject"}


def test_a_granted_key_may_do_only_its_operations_under_its_prefix(
    s3_gate: S3Gate, setup_key: AccessKey, bucket: str
) -> None:
    owner = s3_gate.client(setup_key)
    owner.put_object(Bucket=bucket, Key="mine/a", Body=b"a")
    owner.put_object(Bucket=bucket, Key="theirs/b", Body=b"b")
    reader = s3_gate.keys.add(label="reader", may=Grant(
        operations=frozenset({"ListObjectsV2", "GetObject", "HeadObject"}), under="mine/",
    ))
    client = s3_gate.client(reader)
    assert client.get_object(Bucket=bucket, Key="mine/a")["Body"].read() == b"a"
    listed = client.list_objects_v2(Bucket=bucket, Prefix="mine/")["Contents"]
    assert [o["Key"] for o in listed] == ["mine/a"]
    denied = [
        lambda: client.get_object(Bucket=bucket, Key="theirs/b"),
        lambda: client.list_objects_v2(Bucket=bucket, Prefix="theirs/"),
        lambda: client.list_objects_v2(Bucket=bucket),
        lambda: client.put_object(Bucket=bucket, Key="mine/c", Body=b"c"),
        lambda: client.delete_object(Bucket=bucket, Key="mine/a"),
    ]
    for call in denied:
        with pytest.raises(ClientError) as refused:
            call()
        assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert owner.get_object(Bucket=bucket, Key="mine/a")["Body"].read() == b"a"
