"""DESIGN G2/G3: over a whole flow, the broker's key performs or authorises only PutObject,
GetObject and HeadObject — nothing that lists, nothing that deletes. The one exception is the
storage self-check when storage is saved: its probes (list, delete, ACL) under
`_bucketreel/selfcheck/`, which a right policy refuses (tests/storage/test_selfcheck.py).

The tests' own set-up uses another key than the broker's, so the gate's per-key log tells the
two apart. (The session-wide counterpart is in tests/storage/conftest.py: at the end of the
session every request any broker key authorised is checked the same way.)
"""

from __future__ import annotations

from urllib.parse import urlsplit

import urllib3

from broker import admin
from tests.storage.factory import (
    BROKER_OPERATIONS,
    PROBE_OPERATIONS,
    is_selfcheck_probe,
    make_gate_tenant,
)
from tests.support.api import (
    Api,
    Operator,
    enroll,
    put_with_grant,
    random_segment,
    start_recording,
)
from tests.support.broker import BrokerProcess
from tests.support.s3_operations import RECORDS
from tests.support.s3gate import AccessKey, S3Gate


def test_a_full_flow_uses_only_put_get_head_with_the_broker_key(
    broker: BrokerProcess, s3_gate: S3Gate, setup_key: AccessKey
) -> None:
    api = Api(broker.url)
    tenant = make_gate_tenant(broker, s3_gate, setup_key)
    saved = s3_gate.log.entries(tenant.key.key_id)
    device = enroll(api, broker, tenant)
    recording_id = start_recording(api, device)
    segments = [random_segment(16 * 1024) for _ in range(2)]

    for seq, segment in enumerate(segments):
        path = f"/api/v1/recordings/{recording_id}/segments/{seq}"
        grant = api.call("POST", f"{path}/upload", segment.declaration(),
                         token=device.access_token)
        assert grant.status == 200, grant.body
        assert put_with_grant(grant.body, segment.data).status == 200
        done = api.call("POST", f"{path}/complete", token=device.access_token)
        assert (done.status, done.body) == (200, {"state": "verified"})
    finished = api.call("POST", f"/api/v1/recordings/{recording_id}/finish",
                        token=device.access_token)
    assert finished.status == 200
    operator = Operator(broker)
    for seq, segment in enumerate(segments):
        view = operator.run(admin.view_url, tenant=tenant.tenant_id, recording=recording_id,
                            seq=seq)
        got = urllib3.PoolManager(retries=False).request("GET", view["url"])
        assert (got.status, got.data) == (200, segment.data)

    # saving the storage ran the self-check: its probes and nothing else
    assert {e.name for e in saved} == BROKER_OPERATIONS - {"GetObject"} | PROBE_OPERATIONS
    assert all(e.name in {"PutObject", "HeadObject"} or is_selfcheck_probe(e) for e in saved)
    assert all("/_bucketreel/selfcheck/" in e.path or e.name == "ListObjectsV2" for e in saved)

    broker_entries = s3_gate.log.entries(tenant.key.key_id)[len(saved):]
    performed = {entry.name for entry in broker_entries}
    assert performed <= BROKER_OPERATIONS, f"the broker's key did {performed}"
    assert performed == {"PutObject", "HeadObject", "GetObject"}, "the log saw the whole flow"
    assert all(entry.signed_ok and entry.error is None for entry in broker_entries)
    puts = [urlsplit(e.path).path for e in broker_entries if e.name == "PutObject"]
    assert len([p for p in puts if p.endswith(".mp4")]) == len(segments)
    # the other PUTs: the bucket's own records the broker writes once (issue 18), no more
    records = [p for p in puts if not p.endswith(".mp4")]
    assert all(RECORDS.search(p) for p in records), records
    # The broker's own (header-signed) calls are HeadObject requests, each naming a segment's
    # object under the tenant's prefix or the self-check's object (which the storage watch
    # asks about, broker/storage/monitor.py), and the write-once PUTs of its records under
    # `_bucketreel/` or beside the segments (manifest.json); never the bucket itself.
    prefix = f"/{tenant.bucket}/{tenant.prefix}/{tenant.tenant_id}/"
    canary = f"/{tenant.bucket}/{tenant.prefix}/_bucketreel/selfcheck/"
    own = f"/{tenant.bucket}/{tenant.prefix}/_bucketreel/"
    assert all(
        urlsplit(e.path).path.startswith((prefix, canary))
        or (e.name == "PutObject" and urlsplit(e.path).path.startswith(own))
        for e in broker_entries
    )
    setup_ops = s3_gate.log.operations(setup_key.key_id)
    assert "CreateBucket" in setup_ops, "the set-up key is told apart from the broker's"
    assert tenant.key.key_id != setup_key.key_id


def test_only_the_selfcheck_module_holds_list_delete_or_acl_calls() -> None:
    """The probes are the broker's only list/delete/ACL calls, and live in one module."""
    import re
    from pathlib import Path

    import broker

    root = Path(broker.__file__).parent
    calls = re.compile(r"\.(list_objects\w*|list_object_versions|delete_objects?|"
                       r"put_object_acl|put_bucket_\w+|delete_bucket\w*|_raw)\(")
    found = {
        path.relative_to(root).as_posix(): sorted(set(calls.findall(path.read_text())))
        for path in root.rglob("*.py")
        if calls.search(path.read_text())
    }
    assert found == {"storage/selfcheck.py": [
        "_raw", "delete_object", "list_objects_v2", "put_object_acl"]}
