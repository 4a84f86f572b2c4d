"""The user metadata an upload grant signs into a segment's PUT (`shared.bucket.metadata`):
built from the rows the grant decided on, never from what the agent sends."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row

from shared.bucket.metadata import SegmentMetadata, custody_name
from shared.custody import timestamp_ms


def for_segment(tenant_id: str, recording: Row[Any], segment: Row[Any]) -> dict[str, str]:
    signed = segment.record_signature is not None and segment.record_prev is not None
    return SegmentMetadata(
        tenant_id=tenant_id, user_id=recording.user_id, device_id=recording.device_id,
        recording_id=recording.id, seq=segment.seq, size=segment.size, sha256=segment.sha256,
        started_at_ms=timestamp_ms(segment.started_at), duration_ms=segment.duration_ms,
        custody=custody_name(segment.record_version, signed),
        prev=segment.record_prev if signed else None,
        signature=segment.record_signature if signed else None,
    ).to_metadata()
