"""Object key naming. The broker alone chooses keys; the agent never does (DESIGN G4)."""

SEGMENT_EXTENSION = "mp4"
SEGMENT_CONTENT_TYPE = "video/mp4"
SEQ_DIGITS = 6
SEQ_MAX = 999_999  # a 60 s segment each: almost two years of one recording


def segment_key(prefix: str, tenant_id: str, user_id: str, recording_id: str, seq: int) -> str:
    """`<prefix>/<tenant>/<user>/<recording>/<seq>.mp4`, seq zero-padded so keys sort in order."""
    if not 0 <= seq <= SEQ_MAX:
        raise ValueError(f"segment number {seq} is outside 0..{SEQ_MAX}")
    parts = [p for p in (prefix.strip("/"), tenant_id, user_id, recording_id) if p]
    return "/".join([*parts, f"{seq:0{SEQ_DIGITS}d}.{SEGMENT_EXTENSION}"])
