"""The bucket's own format (shared/bucket): documents sign and verify with the broker key
they name, a signature never carries over to another kind or an edited field, and a
segment's metadata rebuilds the device's custody record."""

from __future__ import annotations

import base64
import hashlib
import json

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared import auditchain
from shared.bucket import keys as bucket_keys
from shared.bucket.metadata import MAX_METADATA_BYTES, SegmentMetadata
from shared.bucket.records import (
    AuditAnchor,
    BrokerKey,
    BrokerSigner,
    BucketFormatError,
    DeviceRecord,
    Manifest,
    ManifestGap,
    ManifestSegment,
    check_key_record,
    decode,
    encode,
    verify,
)
from shared.custody import GENESIS, V2, CustodyRecord, encode_public_key, sign

SHA = base64.b64encode(hashlib.sha256(b"bytes").digest()).decode()
TENANT, USER, DEVICE, REC = (f"{c * 8}-0000-4000-8000-{c * 12}" for c in "abcd")


def _signer() -> BrokerSigner:
    return BrokerSigner.from_seed(b"\x07" * 32)


def _device() -> DeviceRecord:
    return DeviceRecord(
        tenant_id=TENANT, device_id=DEVICE, user_id=USER, user_email="e@example.com",
        device_name="laptop", public_key="A" * 43 + "=", enrolled_at_ms=1_700_000_000_000,
    )


def _manifest() -> Manifest:
    seg = ManifestSegment(
        seq=0, key=f"p/{TENANT}/{USER}/{REC}/000000.mp4", size=5, sha256=SHA,
        started_at_ms=1, duration_ms=2, verified=True, custody="v2", prev=GENESIS,
        record_hash="1" * 64, signature="s",
    )
    gap = ManifestGap(seqs=(1,), reason="upload_failed", reported_at_ms=3)
    return Manifest(
        tenant_id=TENANT, user_id=USER, recording_id=REC, device_id=DEVICE, started_at_ms=1,
        finished_at_ms=9, ended="finished", segments=(seg,), gaps=(gap,),
        chain_head="1" * 64, written_at_ms=10,
    )


def test_the_key_record_names_itself_and_signed_documents_verify_with_it() -> None:
    signer = _signer()
    key = decode(encode(signer.record(5)), BrokerKey)
    assert check_key_record(key)
    assert not check_key_record(msgspec.structs.replace(key, key_id="0" * 16))
    keys = {key.key_id: key.public_key}
    for doc in (_device(), _manifest(), AuditAnchor(
        tenant_id=TENANT, seq=3, hash="2" * 64, mac="3" * 64, mac_key="v1",
        at="2030-01-01T00:00:00+00:00",
    )):
        signed = signer.sign(doc)
        assert signed.key_id == signer.key_id
        again = decode(encode(signed), type(doc))
        assert again == signed
        assert verify(again, keys)
        assert encode(signer.sign(doc)) == encode(signed)  # retries write identical bytes
        assert json.loads(encode(signed))["format"] == 1


def test_an_edited_field_another_key_or_another_kind_fails() -> None:
    signer = _signer()
    keys = {signer.key_id: signer.public_key}
    device = signer.sign(_device())
    assert not verify(msgspec.structs.replace(device, user_email="x@example.com"), keys)
    other = BrokerSigner(Ed25519PrivateKey.generate())
    forged = other.sign(_device())
    assert not verify(forged, keys)  # its key is not among the trusted
    # the same key id with another key's signature
    assert not verify(msgspec.structs.replace(forged, key_id=signer.key_id), keys)
    raw = json.loads(encode(device))
    raw["kind"] = "manifest"
    with pytest.raises(BucketFormatError):
        decode(json.dumps(raw).encode(), Manifest)
    with pytest.raises(BucketFormatError):
        decode(b"not json", DeviceRecord)


def test_segment_metadata_rebuilds_the_signed_record() -> None:
    device_key = Ed25519PrivateKey.generate()
    public = encode_public_key(device_key.public_key())
    record = CustodyRecord(
        recording_id=REC, seq=4, size=5, sha256=SHA, prev=GENESIS, version=V2,
        started_at_ms=1_700_000_000_000, duration_ms=60_000,
    )
    meta = SegmentMetadata(
        tenant_id=TENANT, user_id=USER, device_id=DEVICE, recording_id=REC, seq=4, size=5,
        sha256=SHA, started_at_ms=record.started_at_ms or 0, duration_ms=60_000,
        custody="v2", prev=GENESIS, signature=sign(device_key, record),
    )
    as_sent = meta.to_metadata()
    assert sum(len(k) + len(v) for k, v in as_sent.items()) < MAX_METADATA_BYTES
    assert all(h.startswith("x-amz-meta-") for h in meta.headers())
    back = SegmentMetadata.from_metadata(as_sent)
    assert back == meta
    assert back.verify(public)
    assert not SegmentMetadata.from_metadata({**as_sent, "started-at-ms": "1"}).verify(public)
    unsigned = SegmentMetadata.from_metadata(
        {**as_sent, "custody": "unsigned", "prev": "unsigned", "signature": "unsigned"}
    )
    assert unsigned.record() is None
    assert not unsigned.verify(public)
    with pytest.raises(BucketFormatError, match="signature"):
        SegmentMetadata.from_metadata({k: v for k, v in as_sent.items() if k != "signature"})


def test_keys_of_the_layout() -> None:
    assert bucket_keys.device_key("p/", DEVICE) == f"p/_bucketreel/devices/{DEVICE}.json"
    assert bucket_keys.broker_key_key("", "ab") == "_bucketreel/keys/ab.json"
    anchor = bucket_keys.anchor_key("p", TENANT, 7)
    assert anchor == f"p/_bucketreel/audit/{TENANT}/000000000007.json"
    manifest = bucket_keys.manifest_key("p", TENANT, USER, REC)
    assert manifest == f"p/{TENANT}/{USER}/{REC}/manifest.json"
    assert bucket_keys.segment_seq("000042.mp4") == 42
    assert bucket_keys.segment_seq("manifest.json") is None


def test_an_exported_line_gives_back_its_chain_hash() -> None:
    details = {"size": 3, "b": "x"}
    digest = auditchain.entry_hash(
        tenant_id=TENANT, seq=1, at="2030-01-01T00:00:00+00:00", actor="user:u",
        action="segment.view", target="k", details=auditchain.details_text(details),
        prev_hash=auditchain.GENESIS,
    )
    line = json.loads(json.dumps({
        "tenant_id": TENANT, "seq": 1, "at": "2030-01-01T00:00:00+00:00", "actor": "user:u",
        "action": "segment.view", "target": "k", "details": details,
        "prev_hash": auditchain.GENESIS, "hash": digest,
    }, sort_keys=True))
    assert auditchain.export_hash(line) == digest
    assert auditchain.export_hash({**line, "target": "other"}) != digest


def test_the_broker_key_comes_from_its_setting_or_the_newest_master_key() -> None:
    from broker.bucket.signing import broker_signer
    from broker.settings import Settings, generate_secrets

    env = generate_secrets()
    chosen = broker_signer(Settings.from_env(env))
    assert chosen.key_id == BrokerSigner.from_seed(
        base64.b64decode(env["BUCKETREEL_SIGNING_KEY"])
    ).key_id
    del env["BUCKETREEL_SIGNING_KEY"]
    derived = broker_signer(Settings.from_env(env))
    assert derived.key_id != chosen.key_id
    assert broker_signer(Settings.from_env(env)).key_id == derived.key_id  # stable
    rotated = {**env, "BUCKETREEL_MASTER_KEYS": env["BUCKETREEL_MASTER_KEYS"] + ",v2:"
               + base64.b64encode(b"\x01" * 32).decode()}
    assert broker_signer(Settings.from_env(rotated)).key_id != derived.key_id
    assert repr(derived) == f"BrokerSigner(key_id={derived.key_id!r})"  # the key never shows
