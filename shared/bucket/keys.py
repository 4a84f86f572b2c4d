"""Object keys of what the broker writes beside the recordings (layout: `shared.bucket`)."""

from __future__ import annotations

import re

from shared.keys import SEQ_DIGITS, SEQ_MAX

CONTROL = "_bucketreel"
MANIFEST_NAME = "manifest.json"
ANCHOR_DIGITS = 12
_SEGMENT_RE = re.compile(rf"^(?P<seq>\d{{{SEQ_DIGITS}}})\.mp4$")


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


def control_prefix(prefix: str) -> str:
    """`<prefix>/_bucketreel/`: keys, devices, audit anchors (never a tenant id)."""
    return _join(prefix, CONTROL) + "/"


def broker_key_key(prefix: str, key_id: str) -> str:
    return _join(prefix, CONTROL, "keys", f"{key_id}.json")


def device_key(prefix: str, device_id: str) -> str:
    return _join(prefix, CONTROL, "devices", f"{device_id}.json")


def anchor_key(prefix: str, tenant_id: str, seq: int) -> str:
    if seq < 0 or seq >= 10**ANCHOR_DIGITS:
        raise ValueError(f"audit seq {seq} is outside 0..{10**ANCHOR_DIGITS - 1}")
    return _join(prefix, CONTROL, "audit", tenant_id, f"{seq:0{ANCHOR_DIGITS}d}.json")


def recording_prefix(prefix: str, tenant_id: str, user_id: str, recording_id: str) -> str:
    return _join(prefix, tenant_id, user_id, recording_id) + "/"


def manifest_key(prefix: str, tenant_id: str, user_id: str, recording_id: str) -> str:
    return recording_prefix(prefix, tenant_id, user_id, recording_id) + MANIFEST_NAME


def segment_seq(name: str) -> int | None:
    """The seq of a segment object's last key part (`000042.mp4` → 42), or None."""
    match = _SEGMENT_RE.match(name)
    if match is None:
        return None
    seq = int(match["seq"])
    return seq if seq <= SEQ_MAX else None


def is_segment(key: str) -> bool:
    """Whether an object key names a segment (`…/<seq:06d>.mp4`)."""
    return segment_seq(key.rsplit("/", 1)[-1]) is not None
