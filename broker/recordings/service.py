"""Recordings and their segments, one service put together from the stages a segment
takes: `lifecycle` (start, gaps, finish), `uploads` (grant, verified completion), `reads`
(info, view URLs, custody). What they share is in `common`.
"""

from __future__ import annotations

from broker.recordings.common import FINISHED, PENDING, RECORDING, VERIFIED, recording_info
from broker.recordings.lifecycle import Lifecycle
from broker.recordings.reads import Reads, ViewUrl
from broker.recordings.uploads import Uploads


class RecordingService(Lifecycle, Uploads, Reads):
    """Every operation on recordings; each stage's methods live in its own module."""


__all__ = [
    "FINISHED", "PENDING", "RECORDING", "VERIFIED", "RecordingService", "ViewUrl",
    "recording_info",
]
