"""One recording checked from the bucket alone: its manifest, device, segments and chain.

For each segment (in seq order, the union of what the bucket holds and what the manifest
lists) the checks are:
  - its custody metadata is there and well formed (else unsigned / altered) and names this
    place: tenant, person, recording, seq (else reordered);
  - the device signed it: the record rebuilt from the metadata verifies against the public key
    of the device record, which the broker signed (else forged; re-timed or altered when the
    signed manifest shows which fields changed);
  - its bytes: read and hashed, they have the signed size and SHA-256 (else altered; reordered
    when they are another segment's), and S3's stored checksum agrees;
  - the chain: its `prev` is the previous segment's record hash (GENESIS for seq 0), else
    reordered; a seq that is neither in the bucket nor accounted for by a gap the device signed
    is missing;
  - its signed times follow the previous segment's (no overlap, never backwards, up to
    `TIME_TOLERANCE_MS`), else re-timed;
  - it matches the manifest's entry, and the manifest's chain head is the last record's hash.
A recording without a manifest is still open, or was never closed by the broker: its end
cannot be confirmed, and the report says so (a note, not a problem).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from shared.bucket.metadata import UNSIGNED, SegmentMetadata
from shared.bucket.records import BucketFormatError, Manifest, ManifestGap, ManifestSegment
from shared.custody import GENESIS, GapRecord
from shared.custody import verify as verify_device_signature
from shared.vault.inventory import RecordingRef
from shared.vault.problems import Kind, Problem
from shared.vault.store import Fetched, Head, Store
from shared.vault.trust import DeviceState, Trust, read_document

# Segments follow one another in signed time up to this much overlap (frame rounding and
# capture jitter), as the broker accepts declarations (broker/recordings/bounds.py).
TIME_TOLERANCE_MS = 1000
_TIME_FIELDS = ("started_at_ms", "duration_ms")
_RECORD_FIELDS = ("size", "sha256", "prev")

Wanted = Callable[["SegmentSeen"], bool]  # read this segment's bytes? (its metadata is known)


@dataclass(slots=True, kw_only=True)
class SegmentSeen:
    seq: int
    key: str
    present: bool
    meta: SegmentMetadata | None = None
    entry: ManifestSegment | None = None  # the manifest's, when it has one
    signed: bool = False  # the device's signature verifies
    read: bool = False  # its bytes were read and hashed
    sha256: str | None = None  # of the bytes read (base64)
    record_hash: str | None = None
    linkable: bool = False  # its record can stand in the chain (signed, or not checkable)
    misplaced: bool = False  # its record is another place's
    problems: list[Problem] = field(default_factory=list)

    def _times(self) -> SegmentMetadata | ManifestSegment | None:
        """Whose times to believe: the metadata's when signed (or when nothing else has
        them), else the manifest's copy of the record."""
        if self.meta is not None and (self.signed or self.entry is None):
            return self.meta
        return self.entry

    @property
    def start_ms(self) -> int | None:
        source = self._times()
        return None if source is None else source.started_at_ms

    @property
    def duration_ms(self) -> int | None:
        source = self._times()
        return None if source is None else source.duration_ms


@dataclass(slots=True, kw_only=True)
class RecordingCheck:
    ref: RecordingRef
    manifest: Manifest | None = None
    manifest_trusted: bool = False
    device: DeviceState | None = None
    segments: list[SegmentSeen] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def all_problems(self) -> list[Problem]:
        found = list(self.problems)
        if self.device is not None:
            found.extend(self.device.problems)
        for seen in self.segments:
            found.extend(seen.problems)
        return found

    @property
    def started_at_ms(self) -> int | None:
        starts = [s.start_ms for s in self.segments if s.start_ms is not None]
        if self.manifest is not None and self.manifest_trusted:
            starts.append(self.manifest.started_at_ms)
        return min(starts) if starts else None

    @property
    def ended_at_ms(self) -> int | None:
        ends = [
            s.start_ms + s.duration_ms for s in self.segments
            if s.start_ms is not None and s.duration_ms is not None
        ]
        return max(ends) if ends else None


class RecordingChecker:
    """Checks one recording; `run` yields each segment as it is checked (with its bytes when
    they were read) so an export can remux while the checks go on."""

    def __init__(self, ref: RecordingRef, store: Store, trust: Trust) -> None:
        self.ref = ref
        self._store = store
        self._trust = trust
        self.result = RecordingCheck(ref=ref)
        self._load_manifest()

    # -- the manifest and the device ---------------------------------------------------

    def _load_manifest(self) -> None:
        ref, result = self.ref, self.result
        if ref.manifest is None:
            result.notes.append(
                "no manifest: the recording is still open or was never closed by the broker, "
                "so its end cannot be confirmed"
            )
            return
        key = ref.manifest.key
        manifest, unreadable = read_document(self._store, key, Manifest)
        if manifest is None:
            result.problems.extend([unreadable] if unreadable else [])
            return
        problem = self._trust.signature_problem(manifest, key)
        if problem is None and (manifest.tenant_id, manifest.user_id, manifest.recording_id) != (
            ref.tenant_id, ref.user_id, ref.recording_id
        ):
            problem = Problem(
                Kind.REORDERED, key,
                f"it is the manifest of {manifest.tenant_id}/{manifest.user_id}/"
                f"{manifest.recording_id}, copied here",
            )
        result.manifest = manifest
        if problem is not None:
            result.problems.append(problem)
            return
        result.manifest_trusted = True

    def _device(self, meta: SegmentMetadata | None) -> DeviceState | None:
        """The recording's device: the trusted manifest's, else the first segment's."""
        result = self.result
        if result.device is not None:
            return result.device
        device_id: str | None = None
        if result.manifest is not None and result.manifest_trusted:
            device_id = result.manifest.device_id
        elif meta is not None:
            device_id = meta.device_id
        if device_id is None:
            return None
        state = self._trust.device(device_id)
        record = state.record
        if record is not None and state.trusted and (record.tenant_id, record.user_id) != (
            self.ref.tenant_id, self.ref.user_id
        ):
            state.problems.append(Problem(
                Kind.REORDERED, self.ref.name,
                f"device {device_id} belongs to {record.tenant_id}/{record.user_id}, "
                "not to the person this recording sits under",
            ))
        result.device = state
        return state

    def _device_key(self) -> str | None:
        """The device's public key, when its record is to be believed."""
        state = self.result.device
        if state is None or state.record is None or not state.trusted:
            return None
        return state.record.public_key

    def _device_known(self) -> bool:
        state = self.result.device
        return state is not None and state.record is not None and state.trusted

    # -- the segments ---------------------------------------------------------------------

    def run(self, wanted: Wanted | None = None) -> Iterator[tuple[SegmentSeen, bytes | None]]:
        """Check every segment; read the bytes of all (`wanted` None) or of those `wanted`
        picks once their metadata is known, and yield each with its bytes (None: not read)."""
        entries: dict[int, ManifestSegment] = {}
        if self.result.manifest is not None and self.result.manifest_trusted:
            entries = {s.seq: s for s in self.result.manifest.segments}
        seqs = sorted(set(self.ref.segments) | set(entries))
        # verify reads every segment: a few requests in flight ahead of the checks, in order
        ahead = None if wanted is not None else self._store.fetch_many(
            [self.ref.segments[seq].key for seq in seqs if seq in self.ref.segments]
        )
        previous: SegmentSeen | None = None
        for seq in seqs:
            seen, data = self._segment(seq, entries.get(seq), wanted, ahead)
            self._link(previous, seen)
            self.result.segments.append(seen)
            previous = seen
            yield seen, data
        self._finish(entries)

    def vouched(self, seen: SegmentSeen) -> bool:
        """Whether a checked segment may go into an export: its own checks passed, and its
        device signed it (or, for an older agent's device that signs nothing, the broker's
        trusted manifest lists it as it is)."""
        if seen.problems or not seen.read:
            return False
        if seen.signed:
            return True
        return (
            self._device_known() and self._device_key() is None
            and seen.entry is not None and self.result.manifest_trusted
        )

    def check(self, wanted: Wanted | None = None) -> RecordingCheck:
        for _ in self.run(wanted):
            pass
        return self.result

    def _segment(
        self, seq: int, entry: ManifestSegment | None, wanted: Wanted | None,
        ahead: Iterator[Fetched | None] | None,
    ) -> tuple[SegmentSeen, bytes | None]:
        listed = self.ref.segments.get(seq)
        key = listed.key if listed is not None else (entry.key if entry else f"seq {seq}")
        seen = SegmentSeen(seq=seq, key=key, present=listed is not None, entry=entry)
        if listed is None:
            seen.problems.append(Problem(
                Kind.MISSING, key,
                f"segment {seq} is in the signed manifest but not in the bucket",
            ))
            self._device(None)
            seen.record_hash = entry.record_hash if entry else None
            return seen, None
        got: Fetched | Head | None
        if ahead is not None:
            got = next(ahead)
        else:
            got = self._store.head(key) if wanted is not None else self._store.fetch(key)
        if got is None:
            seen.present = False
            seen.problems.append(Problem(Kind.MISSING, key, "listed, then gone"))
            return seen, None
        self._metadata(seen, got.metadata)
        data: bytes | None = None
        if isinstance(got, Fetched):
            data = got.data
        elif wanted is not None and wanted(seen):
            fetched = self._store.fetch(key)
            if fetched is None:
                seen.problems.append(Problem(Kind.MISSING, key, "gone"))
                return seen, None
            if fetched.metadata != got.metadata:  # changed between the two requests
                seen.problems.clear()
                seen.signed = False
                self._metadata(seen, fetched.metadata)
            got, data = fetched, fetched.data
        if isinstance(got, Fetched):
            self._bytes(seen, got)
        if entry is None and self.result.manifest_trusted:
            seen.problems.append(Problem(
                Kind.FORGED, key,
                f"segment {seq} is not in the recording's signed manifest (added after "
                "the recording was closed)",
            ))
        return seen, data

    def _metadata(self, seen: SegmentSeen, raw: dict[str, str]) -> None:
        key, seq, ref = seen.key, seen.seq, self.ref
        try:
            meta = SegmentMetadata.from_metadata(raw)
        except BucketFormatError as exc:
            if not any(k.lower().startswith("bucketreel") for k in raw):
                kind, why = Kind.UNSIGNED, "it carries no custody metadata"
            else:
                kind, why = Kind.ALTERED, f"its custody metadata is malformed ({exc})"
            seen.problems.append(Problem(kind, key, why))
            self._device(None)
            seen.record_hash = seen.entry.record_hash if seen.entry else None
            return
        seen.meta = meta
        state = self._device(meta)
        if (meta.tenant_id, meta.user_id, meta.recording_id, meta.seq) != (
            ref.tenant_id, ref.user_id, ref.recording_id, seq
        ):
            seen.misplaced = True
            seen.problems.append(Problem(
                Kind.REORDERED, key,
                f"it holds the record of segment {meta.seq} of {meta.tenant_id}/"
                f"{meta.user_id}/{meta.recording_id}, not of segment {seq} of this recording",
            ))
        if state is not None and meta.device_id != state.device_id:
            seen.problems.append(Problem(
                Kind.ALTERED, key,
                f"it names device {meta.device_id}, the recording's is {state.device_id}",
            ))
        public_key = self._device_key()
        record = meta.record()
        if not self._device_known():
            # The device record is missing or not to be believed (named once, on it): the
            # chain is followed on the metadata as it stands, its signatures unchecked.
            seen.linkable = record is not None
            seen.record_hash = record.digest() if record is not None else None
            return
        if meta.custody == UNSIGNED:
            if public_key is not None:
                seen.problems.append(Problem(
                    Kind.UNSIGNED, key,
                    "its metadata says unsigned, but its device signs every segment",
                ))
            elif not seen.misplaced:  # an older agent's: only the broker's manifest vouches
                self._against_manifest(seen, meta)
            return
        if public_key is None:  # an older agent's device, which signs nothing
            seen.problems.append(Problem(
                Kind.FORGED, key,
                "it carries a signature, but its device has no key",
            ))
            return
        if meta.verify(public_key):
            seen.signed = True
            if seen.misplaced:  # another place's record: this place's is the manifest's
                seen.record_hash = seen.entry.record_hash if seen.entry else None
                return
            seen.linkable = True
            seen.record_hash = record.digest() if record is not None else None
            self._against_manifest(seen, meta)
            return
        seen.problems.append(self._why_unverified(seen, meta, public_key))
        seen.record_hash = seen.entry.record_hash if seen.entry else None

    def _why_unverified(
        self, seen: SegmentSeen, meta: SegmentMetadata, public_key: str
    ) -> Problem:
        """Name what changed, from the manifest's copy of the record when it verifies."""
        entry = seen.entry
        if entry is not None and self._entry_signed(entry, public_key):
            retimed = [f for f in _TIME_FIELDS if getattr(meta, f) != getattr(entry, f)]
            altered = [f for f in _RECORD_FIELDS if getattr(meta, f) != getattr(entry, f)]
            if altered:
                return Problem(
                    Kind.ALTERED, seen.key,
                    f"its metadata's {', '.join(altered)} differ from what the device "
                    "signed",
                )
            if retimed:
                shown = ", ".join(
                    f"{f} {getattr(entry, f)} -> {getattr(meta, f)}" for f in retimed
                )
                return Problem(
                    Kind.RETIMED, seen.key,
                    f"its signed times were changed ({shown})",
                )
        return Problem(
            Kind.FORGED, seen.key,
            "its device signature does not verify against the device's key",
        )

    def _entry_signed(self, entry: ManifestSegment, public_key: str) -> bool:
        if entry.signature is None or entry.prev is None:
            return False
        meta = SegmentMetadata(
            tenant_id=self.ref.tenant_id, user_id=self.ref.user_id, device_id=None,
            recording_id=self.ref.recording_id, seq=entry.seq, size=entry.size,
            sha256=entry.sha256, started_at_ms=entry.started_at_ms,
            duration_ms=entry.duration_ms, custody=entry.custody, prev=entry.prev,
            signature=entry.signature,
        )
        return meta.verify(public_key)

    def _against_manifest(self, seen: SegmentSeen, meta: SegmentMetadata) -> None:
        entry = seen.entry
        if entry is None:
            return
        differ = [
            f for f in (*_RECORD_FIELDS, *_TIME_FIELDS) if getattr(meta, f) != getattr(entry, f)
        ]
        if not seen.signed:  # nothing signed by the device: the manifest is the only record
            if differ:
                retimed = set(differ) <= set(_TIME_FIELDS)
                seen.problems.append(Problem(
                    Kind.RETIMED if retimed else Kind.ALTERED, seen.key,
                    f"its metadata's {', '.join(differ)} differ from the broker's manifest",
                ))
            return
        if differ or (entry.record_hash is not None and entry.record_hash != seen.record_hash):
            seen.problems.append(Problem(
                Kind.ALTERED, seen.key,
                "it is signed by its device but differs from the manifest's record "
                f"({', '.join(differ) or 'record hash'}): the device signed two records for "
                "one place",
            ))

    def _bytes(self, seen: SegmentSeen, got: Fetched) -> None:
        seen.read = True
        seen.sha256 = got.sha256_b64()
        expected = seen.meta if seen.meta is not None else seen.entry
        if expected is None:
            return
        if seen.sha256 != expected.sha256 or len(got.data) != expected.size:
            owner = self._whose(seen.sha256)
            if owner is not None:
                seen.problems.append(Problem(
                    Kind.REORDERED, seen.key,
                    f"its bytes are those signed for segment {owner}",
                ))
            else:
                seen.problems.append(Problem(
                    Kind.ALTERED, seen.key,
                    f"its bytes ({len(got.data)} bytes, SHA-256 {seen.sha256}) are not "
                    f"the ones signed ({expected.size} bytes, SHA-256 {expected.sha256})",
                ))
        if got.stored_sha256 is not None and got.stored_sha256 != seen.sha256:
            seen.problems.append(Problem(
                Kind.ALTERED, seen.key,
                "S3's stored checksum is not the SHA-256 of the bytes it returned",
            ))

    def _whose(self, sha256: str) -> int | None:
        """The seq of another segment of this recording signed with these bytes, if any."""
        for other in self.result.segments:
            if other.meta is not None and other.meta.sha256 == sha256:
                return other.seq
        if self.result.manifest is not None and self.result.manifest_trusted:
            for entry in self.result.manifest.segments:
                if entry.sha256 == sha256:
                    return entry.seq
        return None

    # -- between segments -----------------------------------------------------------------

    def _link(self, previous: SegmentSeen | None, seen: SegmentSeen) -> None:
        meta = seen.meta
        if meta is None or not seen.linkable:
            return
        if previous is None or previous.seq != seen.seq - 1:
            if seen.seq == 0 and meta.prev != GENESIS:
                seen.problems.append(Problem(
                    Kind.REORDERED, seen.key,
                    "it is segment 0 but its record follows another",
                ))
            return  # across a gap: the records in between are not in the bucket
        if previous.record_hash is not None and meta.prev != previous.record_hash:
            seen.problems.append(Problem(
                Kind.REORDERED, seen.key,
                f"its record does not follow segment {previous.seq}'s (chain broken)",
            ))
        before_start, before_duration = previous.start_ms, previous.duration_ms
        if before_start is None or before_duration is None or seen.misplaced or previous.misplaced:
            return
        end = before_start + before_duration
        if meta.started_at_ms < end - TIME_TOLERANCE_MS:
            seen.problems.append(Problem(
                Kind.RETIMED, seen.key,
                f"it starts {(end - meta.started_at_ms) / 1000:.3f} s before segment "
                f"{previous.seq} ends (signed times overlap or run backwards)",
            ))
        elif meta.started_at_ms > end + TIME_TOLERANCE_MS:
            self.result.notes.append(self._pause(previous.seq, end, meta.started_at_ms))

    def _pause(self, seq: int, end: int, start: int) -> str:
        """A note on the time between two segments: the pause the device reported, or none."""
        gaps = self.result.manifest.gaps if self.result.manifest_trusted and (
            self.result.manifest is not None
        ) else ()
        why = sorted({
            g.reason for g in gaps if g.from_ms is not None and g.to_ms is not None
            and g.from_ms < start and g.to_ms > end
        })
        told = f"a pause the device reported ({', '.join(why)})" if why else "no pause reported"
        return (f"{(start - end) / 1000:.1f} s between segments {seq} and {seq + 1}: {told}")

    def _finish(self, entries: dict[int, ManifestSegment]) -> None:
        result = self.result
        manifest = result.manifest if result.manifest_trusted else None
        gaps = manifest.gaps if manifest is not None else ()
        accounted = self._signed_gaps(gaps)
        seen_seqs = {s.seq for s in result.segments}
        last = max(seen_seqs, default=-1)
        missing = [
            seq for seq in range(last + 1) if seq not in seen_seqs and seq not in accounted
        ]
        for seq in missing:
            result.problems.append(Problem(
                Kind.MISSING, f"{result.ref.name} seq {seq}",
                f"segment {seq} is not in the bucket and no gap the device signed "
                "accounts for it",
            ))
        if accounted & set(range(last + 1)):
            result.notes.append(
                "segments never recorded or never sent, as the device reported: "
                + ", ".join(str(s) for s in sorted(accounted) if s <= last)
            )
        if manifest is not None and entries:
            head_seq = max(entries)
            head = next((s for s in result.segments if s.seq == head_seq), None)
            if manifest.chain_head is not None and head is not None and head.signed and (
                head.record_hash != manifest.chain_head
            ):
                result.problems.append(Problem(
                    Kind.ALTERED, head.key,
                    "the manifest's chain head is not this last segment's record",
                ))

    def _signed_gaps(self, gaps: tuple[ManifestGap, ...]) -> set[int]:
        """The seqs that gaps account for; a gap the device should have signed and did not,
        or whose signature fails, is named and accounts for nothing."""
        accounted: set[int] = set()
        public_key = self._device_key()
        subject = self.ref.manifest.key if self.ref.manifest is not None else self.ref.name
        for gap in gaps:
            if not self._device_known():  # the device's record is named; nothing to check with
                accounted.update(gap.seqs)
                continue
            record = GapRecord(
                recording_id=self.ref.recording_id, seqs=tuple(gap.seqs), reason=gap.reason,
                from_ms=gap.from_ms, to_ms=gap.to_ms,
            )
            if gap.signature is None:
                if public_key is not None and gap.reason != "agent_died":
                    self.result.problems.append(Problem(
                        Kind.UNSIGNED, subject,
                        f"its gap {list(gap.seqs)} ({gap.reason}) is not signed by the "
                        "device",
                    ))
                    continue
            elif public_key is None or not verify_device_signature(
                public_key, record, gap.signature
            ):
                self.result.problems.append(Problem(
                    Kind.FORGED, subject,
                    f"its gap {list(gap.seqs)} ({gap.reason}) carries a signature that "
                    "does not verify against the device's key",
                ))
                continue
            accounted.update(gap.seqs)
        return accounted
