"""Recordings by person and day, from the bucket alone (`list`, and the selections of
`verify` and `export`).

A recording's person is the user id its keys sit under, named by the e-mail address of its
device record (the broker wrote it at enrollment). Its times come from its manifest when it
has one, else from the signed metadata of its first and last segments (HeadObject: nothing is
downloaded). Nothing here is a verdict: `verify` checks signatures.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from shared.bucket.metadata import SegmentMetadata
from shared.bucket.records import BucketFormatError, Manifest
from shared.vault.inventory import Inventory, RecordingRef
from shared.vault.store import Store
from shared.vault.trust import Trust, read_document


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    ref: RecordingRef
    email: str | None
    device_id: str | None
    started_at_ms: int | None
    ended_at_ms: int | None
    closed: bool  # it has a manifest

    @property
    def person(self) -> str:
        return self.email or self.ref.user_id

    def is_of(self, person: str) -> bool:
        wanted = person.strip().casefold()
        return wanted in {self.ref.user_id.casefold(), (self.email or "").casefold()}

    def overlaps(self, start_ms: int, end_ms: int) -> bool:
        if self.started_at_ms is None:
            return False
        end = self.ended_at_ms if self.ended_at_ms is not None else self.started_at_ms
        return self.started_at_ms < end_ms and end >= start_ms

    def to_json(self) -> dict[str, object]:
        return {
            "tenant_id": self.ref.tenant_id, "user_id": self.ref.user_id, "email": self.email,
            "device_id": self.device_id, "recording_id": self.ref.recording_id,
            "started_at": iso(self.started_at_ms), "ended_at": iso(self.ended_at_ms),
            "segments": len(self.ref.segments), "closed": self.closed,
        }


def iso(ms: int | None, zone: ZoneInfo | None = None) -> str | None:
    if ms is None:
        return None
    moment = datetime.fromtimestamp(ms / 1000, tz=zone or ZoneInfo("UTC"))
    return moment.isoformat(timespec="milliseconds")


def day_range(day: date, zone: ZoneInfo) -> tuple[int, int]:
    """[start, end) of a calendar day in `zone`, Unix ms."""
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def summarize(ref: RecordingRef, store: Store, trust: Trust) -> Summary:
    device_id: str | None = None
    started = ended = None
    if ref.manifest is not None:
        manifest, _ = read_document(store, ref.manifest.key, Manifest)
        if manifest is not None:
            device_id, started, ended = (
                manifest.device_id, manifest.started_at_ms, manifest.finished_at_ms
            )
    if started is None and ref.segments:
        first = _metadata(store, ref.segments[min(ref.segments)].key)
        last = _metadata(store, ref.segments[max(ref.segments)].key)
        if first is not None:
            device_id, started = first.device_id, first.started_at_ms
        if last is not None:
            ended = last.started_at_ms + last.duration_ms
    email = None
    if device_id is not None:
        record = trust.device(device_id).record
        if record is not None and record.user_id == ref.user_id:
            email = record.user_email
    return Summary(
        ref=ref, email=email, device_id=device_id, started_at_ms=started, ended_at_ms=ended,
        closed=ref.manifest is not None,
    )


def _metadata(store: Store, key: str) -> SegmentMetadata | None:
    head = store.head(key)
    if head is None:
        return None
    try:
        return SegmentMetadata.from_metadata(head.metadata)
    except BucketFormatError:
        return None


def catalog(
    inventory: Inventory, store: Store, trust: Trust, *, person: str | None = None,
    between: tuple[int, int] | None = None,
) -> list[Summary]:
    """The recordings (of `person`, overlapping `between`), oldest first."""
    refs = inventory.recordings
    if person is not None:  # only their recordings are read: by user id, or their devices'
        wanted = person.strip().casefold()
        users = {wanted} | {
            d.record.user_id.casefold() for d in trust.devices()
            if d.record is not None and d.record.user_email.casefold() == wanted
        }
        refs = [r for r in refs if r.user_id.casefold() in users]
    found = [summarize(ref, store, trust) for ref in refs]
    if person is not None:
        found = [s for s in found if s.is_of(person)]
    if between is not None:
        found = [s for s in found if s.overlaps(*between)]
    return sorted(found, key=lambda s: (s.started_at_ms or 0, s.ref.name))
