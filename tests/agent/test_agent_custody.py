"""The device key file and the agent's custody chain (`agent.custody`), checked with the
broker's own verifier (`shared.custody.verify`)."""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.custody import CustodyChain, DeviceKey, sign_gap
from agent.encode import Segment
from agent.errors import CredentialError
from shared.custody import GENESIS, V2, CustodyRecord, GapRecord, timestamp_ms, verify
from shared.wire import GapReport, UploadRequest


def segment(seq: int, data: bytes) -> Segment:
    return Segment(seq=seq, data=data, started_at=datetime.now(UTC), duration_ms=1000,
                   frames=1, width=2, height=2)


def test_the_chain_links_signed_records_in_order() -> None:
    key = DeviceKey.generate()
    chain = CustodyChain(key, "rec-1")
    sealed = [chain.seal(segment(seq, bytes([seq]) * 10)) for seq in range(3)]

    prev = GENESIS
    for s in sealed:
        assert s.custody is not None
        assert s.custody.prev == prev
        # v2: the start and duration as the broker reads them from the request are signed
        declared = UploadRequest.from_json(s.upload_request().to_json())
        record = CustodyRecord(recording_id="rec-1", seq=s.seq, size=s.size,
                               sha256=s.sha256_b64(), prev=prev, version=V2,
                               started_at_ms=timestamp_ms(declared.started_at),
                               duration_ms=declared.duration_ms)
        assert verify(key.public_key, record, s.custody.signature)
        assert s.upload_request().to_json()["custody"] == s.custody.to_json()
        v1 = CustodyRecord(recording_id="rec-1", seq=s.seq, size=s.size,
                           sha256=s.sha256_b64(), prev=prev)
        assert not verify(key.public_key, v1, s.custody.signature), "never passes as v1"
        retimed = dataclasses.replace(record, duration_ms=record.duration_ms + 1)
        assert not verify(key.public_key, retimed, s.custody.signature)
        prev = record.digest()
    # a record does not verify for another seq, recording or key
    first = sealed[0]
    assert first.custody is not None
    moved = CustodyRecord(recording_id="rec-1", seq=1, size=first.size,
                          sha256=first.sha256_b64(), prev=GENESIS, version=V2,
                          started_at_ms=timestamp_ms(first.started_at),
                          duration_ms=first.duration_ms)
    assert not verify(key.public_key, moved, first.custody.signature)
    assert not verify(DeviceKey.generate().public_key, moved, first.custody.signature)

    with pytest.raises(ValueError, match="out of order"):
        chain.seal(segment(5, b"x"))


def test_gap_reports_are_signed_as_the_broker_reads_them() -> None:
    key = DeviceKey.generate()
    start = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    pause = GapReport(seqs=[], reason="idle", from_=start, to=start)
    signed = sign_gap(key, "rec-1", pause)
    assert signed.signature is not None
    received = GapReport.from_json(signed.to_json())
    record = GapRecord.of("rec-1", received.seqs, received.reason, received.from_, received.to)
    assert verify(key.public_key, record, signed.signature)
    moved = GapRecord.of("rec-1", [], "idle", start, start.replace(hour=5))
    assert not verify(key.public_key, moved, signed.signature)
    assert sign_gap(None, "rec-1", pause) == pause  # a device enrolled without a key


def test_the_key_file_is_private_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "device.key"
    assert DeviceKey.load(path) is None  # an older enrollment: no key
    key = DeviceKey.generate()
    key.save(path)
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = DeviceKey.load(path)
    assert loaded is not None
    assert loaded.public_key == key.public_key
    assert "PRIVATE" not in repr(loaded)

    os.chmod(path, 0o644)
    with pytest.raises(CredentialError, match="chmod 600"):
        DeviceKey.load(path)
    os.chmod(path, 0o600)
    path.write_bytes(b"not a key")
    with pytest.raises(CredentialError, match="does not hold a private key"):
        DeviceKey.load(path)
