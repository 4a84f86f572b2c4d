"""The broker's upload and view URLs (DESIGN G4–G6), used against the strict S3 gate.

The tenant's storage endpoint is the gate, so every URL the real broker process signs is
checked the way S3 checks it: signature, method, expiry, key, body digests, and whether the
broker's access key is still active. Runs on SQLite and PostgreSQL (the `broker` fixture).
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from xml.etree import ElementTree

import pytest
import urllib3

from broker import admin
from tests.storage.factory import GateTenant, make_gate_tenant
from tests.support.api import (
    Api,
    Device,
    Operator,
    Segment,
    enroll,
    put_with_grant,
    random_segment,
    start_recording,
)
from tests.support.broker import BrokerProcess
from tests.support.s3gate import AccessKey, S3Gate

HTTP = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(total=30))


@pytest.fixture(scope="module")
def api(broker: BrokerProcess) -> Api:
    return Api(broker.url)


@pytest.fixture(scope="module")
def tenant(broker: BrokerProcess, s3_gate: S3Gate, setup_key: AccessKey) -> GateTenant:
    return make_gate_tenant(broker, s3_gate, setup_key)


@pytest.fixture(scope="module")
def device(api: Api, broker: BrokerProcess, tenant: GateTenant) -> Device:
    return enroll(api, broker, tenant)


def grant(api: Api, device: Device, recording_id: str, seq: int, segment: Segment
          ) -> dict[str, Any]:
    reply = api.call(
        "POST", f"/api/v1/recordings/{recording_id}/segments/{seq}/upload",
        segment.declaration(), token=device.access_token,
    )
    assert reply.status == 200, reply.body
    body: dict[str, Any] = reply.body
    return body


def fresh_grant(api: Api, device: Device, size: int = 32 * 1024
                ) -> tuple[str, Segment, dict[str, Any]]:
    recording_id = start_recording(api, device)
    segment = random_segment(size)
    return recording_id, segment, grant(api, device, recording_id, 0, segment)


def complete(api: Api, device: Device, recording_id: str, seq: int = 0) -> Any:
    return api.call(
        "POST", f"/api/v1/recordings/{recording_id}/segments/{seq}/complete",
        token=device.access_token,
    )


def object_key(url: str) -> str:
    return urlsplit(url).path.split("/", 2)[2]


def stored(gate: S3Gate, setup_key: AccessKey, bucket: str, key: str) -> bytes | None:
    """The object's bytes read with the tests' own key, or None when there is none."""
    client = gate.client(setup_key)
    listed = client.list_objects_v2(Bucket=bucket, Prefix=key).get("Contents", [])
    if key not in [item["Key"] for item in listed]:
        return None
    data: bytes = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return data


def code(response: urllib3.BaseHTTPResponse) -> str | None:
    return ElementTree.fromstring(response.data).findtext("Code")  # noqa: S314


def with_path(url: str, path: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=path))


# -- upload URLs ------------------------------------------------------------------------------


def test_put_url_works_once_then_412(
    api: Api, device: Device, tenant: GateTenant, s3_gate: S3Gate, setup_key: AccessKey
) -> None:
    recording_id, segment, body = fresh_grant(api, device)

    first = put_with_grant(body, segment.data)
    second = put_with_grant(body, segment.data)

    assert first.status == 200, first.data
    assert second.status == 412, "If-None-Match: * must make the grant single-use"
    assert code(second) == "PreconditionFailed"
    assert stored(s3_gate, setup_key, tenant.bucket, object_key(body["url"])) == segment.data
    assert (complete(api, device, recording_id).body) == {"state": "verified"}


@pytest.mark.parametrize("method", ["GET", "DELETE", "POST"])
def test_put_url_with_another_method_is_refused(
    api: Api, device: Device, tenant: GateTenant, s3_gate: S3Gate, setup_key: AccessKey,
    method: str,
) -> None:
    _, segment, body = fresh_grant(api, device)
    headers = body["headers"] if method == "POST" else {}

    reply = HTTP.request(method, body["url"], headers=headers,
                         body=segment.data if method == "POST" else None)

    assert reply.status == 403
    assert code(reply) in {"SignatureDoesNotMatch", "AccessDenied"}
    assert stored(s3_gate, setup_key, tenant.bucket, object_key(body["url"])) is None
    assert put_with_grant(body, segment.data).status == 200, "the grant itself is intact"


def test_put_url_after_expiry_is_refused(
    api: Api, device: Device, tenant: GateTenant, s3_gate: S3Gate, setup_key: AccessKey
) -> None:
    recording_id, segment, body = fresh_grant(api, device)
    ttl = int(dict(p.split("=", 1) for p in urlsplit(body["url"]).query.split("&"))[
        "X-Amz-Expires"])
    assert 30 <= ttl <= 300

    with s3_gate.advanced(ttl + 1):
        late = put_with_grant(body, segment.data)

    assert (late.status, code(late)) == (403, "AccessDenied")
    assert stored(s3_gate, setup_key, tenant.bucket, object_key(body["url"])) is None
    assert complete(api, device, recording_id).status == 409
    assert put_with_grant(body, segment.data).status == 200, "only the clock refused it"


def test_put_url_with_a_different_body_is_refused(
    api: Api, device: Device, tenant: GateTenant, s3_gate: S3Gate, setup_key: AccessKey
) -> None:
    recording_id, segment, body = fresh_grant(api, device)
    same_size = secrets.token_bytes(len(segment.data))
    bigger = segment.data + b"\0"

    swapped = put_with_grant(body, same_size)
    grown = HTTP.request("PUT", body["url"], body=bigger,
                         headers={**body["headers"], "Content-Length": str(len(bigger))})

    assert (swapped.status, code(swapped)) == (400, "BadDigest")
    assert (grown.status, code(grown)) == (403, "SignatureDoesNotMatch")
    assert stored(s3_gate, setup_key, tenant.bucket, object_key(body["url"])) is None
    reply = complete(api, device, recording_id)
    assert (reply.status, reply.body["error"]) == (409, "segment_not_uploaded")


def test_put_url_without_or_with_altered_segment_metadata_is_refused(
    api: Api, device: Device, tenant: GateTenant, s3_gate: S3Gate, setup_key: AccessKey
) -> None:
    """The segment's own proof (`x-amz-meta-*`, issue 18) is part of the signature: an agent
    cannot leave it off nor change it, and what lands carries it."""
    recording_id, segment, body = fresh_grant(api, device)
    meta = {k: v for k, v in body["headers"].items() if k.startswith("x-amz-meta-")}
    assert meta["x-amz-meta-recording"] == recording_id
    assert meta["x-amz-meta-custody"] == "unsigned"  # this device registered no custody key
    bare = {k: v for k, v in body["headers"].items() if k not in meta}
    edited = {**body["headers"], "x-amz-meta-seq": "7"}

    for headers in (bare, edited):
        reply = put_with_grant({**body, "headers": headers}, segment.data)
        assert (reply.status, code(reply)) == (403, "SignatureDoesNotMatch")
        assert stored(s3_gate, setup_key, tenant.bucket, object_key(body["url"])) is None
    assert put_with_grant(body, segment.data).status == 200
    head = s3_gate.client(setup_key).head_object(Bucket=tenant.bucket, Key=object_key(body["url"]))
    assert {f"x-amz-meta-{k}": v for k, v in head["Metadata"].items()} == meta
    assert complete(api, device, recording_id).body == {"state": "verified"}


def test_put_url_with_the_key_changed_in_the_path_is_refused(
    api: Api, device: Device, tenant: GateTenant, s3_gate: S3Gate, setup_key: AccessKey
) -> None:
    _, segment, body = fresh_grant(api, device)
    path = urlsplit(body["url"]).path
    last = tenant.tenant_id[-1]
    other_tenant = tenant.tenant_id[:-1] + ("1" if last != "1" else "2")
    others = [
        path.replace("000000.mp4", "000001.mp4"),
        path.replace(f"/{tenant.tenant_id}/", f"/{other_tenant}/"),
        path.replace(f"/{tenant.prefix}/", "/other/"),
        path + ".mp4",
    ]
    for other in others:
        assert other != path
        reply = put_with_grant({**body, "url": with_path(body["url"], other)}, segment.data)
        assert (reply.status, code(reply)) == (403, "SignatureDoesNotMatch"), other
        key = other.split("/", 2)[2]
        assert stored(s3_gate, setup_key, tenant.bucket, key) is None


def test_put_url_with_the_signature_altered_is_refused(
    api: Api, device: Device, tenant: GateTenant, s3_gate: S3Gate, setup_key: AccessKey
) -> None:
    _, segment, body = fresh_grant(api, device)
    url: str = body["url"]
    head, _, signature = url.rpartition("X-Amz-Signature=")
    assert len(signature) == 64
    altered = signature[:10] + ("a" if signature[10] != "a" else "b") + signature[11:]

    reply = put_with_grant({**body, "url": head + "X-Amz-Signature=" + altered}, segment.data)

    assert (reply.status, code(reply)) == (403, "SignatureDoesNotMatch")
    assert stored(s3_gate, setup_key, tenant.bucket, object_key(url)) is None


def test_urls_die_when_the_broker_key_is_deactivated(
    api: Api, broker: BrokerProcess, s3_gate: S3Gate, setup_key: AccessKey
) -> None:
    """G6: deactivating the key kills outstanding URLs, and the broker's own HeadObject."""
    own = make_gate_tenant(broker, s3_gate, setup_key)
    device = enroll(api, broker, own)
    done_id, done, done_grant = fresh_grant(api, device)
    assert put_with_grant(done_grant, done.data).status == 200
    assert complete(api, device, done_id).status == 200
    view = Operator(broker).run(admin.view_url, tenant=own.tenant_id, recording=done_id, seq=0)
    recording_id, segment, body = fresh_grant(api, device)

    s3_gate.keys.deactivate(own.key.key_id)
    put = put_with_grant(body, segment.data)
    get = HTTP.request("GET", view["url"])
    head = complete(api, device, recording_id)

    assert (put.status, code(put)) == (403, "InvalidAccessKeyId")
    assert (get.status, code(get)) == (403, "InvalidAccessKeyId")
    assert (head.status, head.body["error"]) == (503, "storage_unavailable")
    assert stored(s3_gate, setup_key, own.bucket, object_key(body["url"])) is None


# -- view URLs --------------------------------------------------------------------------------


def test_view_url_gets_exactly_the_bytes_and_cannot_put(
    api: Api, broker: BrokerProcess, device: Device, tenant: GateTenant, s3_gate: S3Gate,
    setup_key: AccessKey,
) -> None:
    recording_id, segment, body = fresh_grant(api, device)
    assert put_with_grant(body, segment.data).status == 200
    assert complete(api, device, recording_id).status == 200

    view = broker.admin("view-url", "--tenant", tenant.tenant_id, "--recording", recording_id,
                        "--seq", "0")
    url: str = view["url"]
    got = HTTP.request("GET", url)
    replacement = random_segment(len(segment.data))
    as_put = HTTP.request("PUT", url, body=replacement.data,
                          headers={"Content-Length": str(len(replacement.data))})
    as_agent_put = put_with_grant({**body, "url": url}, replacement.data)

    assert (got.status, got.data) == (200, segment.data)
    assert urlsplit(url).path == urlsplit(body["url"]).path
    assert (as_put.status, code(as_put)) == (403, "SignatureDoesNotMatch")
    assert as_agent_put.status == 403
    assert stored(s3_gate, setup_key, tenant.bucket, object_key(url)) == segment.data


def test_view_url_expires(
    api: Api, broker: BrokerProcess, device: Device, tenant: GateTenant, s3_gate: S3Gate
) -> None:
    recording_id, segment, body = fresh_grant(api, device)
    assert put_with_grant(body, segment.data).status == 200
    assert complete(api, device, recording_id).status == 200
    url = Operator(broker).run(
        admin.view_url, tenant=tenant.tenant_id, recording=recording_id, seq=0
    )["url"]
    ttl = int(urlsplit(url).query.split("X-Amz-Expires=")[1].split("&")[0])
    assert 10 <= ttl <= 120

    with s3_gate.advanced(ttl + 1):
        late = HTTP.request("GET", url)

    assert (late.status, code(late)) == (403, "AccessDenied")
    assert HTTP.request("GET", url).data == segment.data
