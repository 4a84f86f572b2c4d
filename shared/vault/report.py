"""The custody report written beside an export, and its re-check (`verify --report`).

`<out>.custody.json` holds everything needed to check the exported file without trusting
the vault that made it: the broker keys, the signed device records and manifests, and for
every segment its signed custody record (size, SHA-256, times, prev, the device's
signature), where it sits in the file, how many packets it gave and the SHA-256 of those
packets' bytes (`packets_sha256`: a remux copies packets unchanged, so the file's packets in
that place must hash the same). `<out>.custody.txt` says the same for a person.

`verify --report` checks, offline: the file's SHA-256; each key record names itself; the
device records and manifests verify against those keys; each segment record verifies against
its device's key and follows the one before; each segment's packets in the file hash as
recorded. With `--bucket`, it also reads every segment from the bucket and checks that its
signed bytes give those packets.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import av
import msgspec

from shared.bucket import records
from shared.bucket.metadata import SegmentMetadata
from shared.bucket.records import BrokerKey, DeviceRecord, Manifest, ManifestSegment
from shared.vault.errors import UsageError
from shared.vault.problems import Kind, Problem
from shared.vault.remux import PacketDigest

REPORT_FORMAT = 1
BytesOf = Callable[[str], bytes | None]


class ReportSegment(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    user_id: str
    device_id: str | None
    recording_id: str
    seq: int
    key: str
    size: int
    sha256: str
    started_at_ms: int
    duration_ms: int
    custody: str
    prev: str | None
    signature: str | None
    placed_at_ms: int  # where its first packet sits in the file
    placed_duration_ms: int
    packets: int
    packets_sha256: str  # hex, over every packet's bytes in order

    def metadata(self) -> SegmentMetadata:
        return SegmentMetadata(
            tenant_id=self.tenant_id, user_id=self.user_id, device_id=self.device_id,
            recording_id=self.recording_id, seq=self.seq, size=self.size, sha256=self.sha256,
            started_at_ms=self.started_at_ms, duration_ms=self.duration_ms, custody=self.custody,
            prev=self.prev, signature=self.signature,
        )


class ReportProblem(msgspec.Struct, frozen=True, kw_only=True):
    kind: str
    subject: str
    message: str


class CustodyReport(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind",
                    tag="custody_report"):
    format: int = REPORT_FORMAT
    tool: str
    created_at: str
    bucket: str
    prefix: str
    person: str
    from_: str = msgspec.field(name="from")
    to: str
    file: str  # the exported file's name, beside the report
    file_size: int
    file_sha256: str  # hex
    duration_ms: int
    broker_keys: tuple[BrokerKey, ...]
    devices: tuple[DeviceRecord, ...]
    manifests: tuple[Manifest, ...]
    segments: tuple[ReportSegment, ...]
    problems: tuple[ReportProblem, ...]
    notes: tuple[str, ...]


def report_paths(out: Path) -> tuple[Path, Path]:
    stem = out.with_suffix("")
    return stem.with_name(stem.name + ".custody.json"), stem.with_name(stem.name + ".custody.txt")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def packet_digests(data: bytes | Path) -> Iterator[bytes]:
    """The bytes of every video packet, in file order."""
    source = io.BytesIO(data) if isinstance(data, bytes) else str(data)
    with av.open(source, mode="r") as container:
        if not container.streams.video:
            return
        for packet in container.demux(container.streams.video[0]):
            if packet.dts is None:
                continue
            yield bytes(packet)


def packets_hash(packets: Iterable[bytes]) -> tuple[int, str]:
    digest = PacketDigest()
    for payload in packets:
        digest.add(payload)
    return digest.count, digest.hexdigest()


def write(report: CustodyReport, out: Path, text: str) -> tuple[Path, Path]:
    json_path, text_path = report_paths(out)
    json_path.write_bytes(msgspec.json.format(msgspec.json.encode(report), indent=2) + b"\n")
    text_path.write_text(text, encoding="utf-8")
    return json_path, text_path


def read(path: Path) -> CustodyReport:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return msgspec.json.decode(raw, type=CustodyReport)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise UsageError(f"{path} is not a custody report: {exc}") from None


def check_offline(
    report: CustodyReport, report_path: Path, pinned: frozenset[str] | None
) -> list[Problem]:
    """Everything the report and its file prove without the bucket."""
    problems: list[Problem] = []
    keys = {
        k.key_id: k.public_key for k in report.broker_keys
        if records.check_key_record(k) and (pinned is None or k.key_id in pinned)
    }
    for k in report.broker_keys:
        if not records.check_key_record(k):
            problems.append(Problem(Kind.FORGED, f"report key {k.key_id}",
                                    "the key record does not name itself"))
    devices: dict[str, str | None] = {}
    for device in report.devices:
        subject = f"report device {device.device_id}"
        if not records.verify(device, keys):
            problems.append(Problem(Kind.FORGED, subject,
                                    "its record is not signed by a trusted broker key"))
            continue
        devices[device.device_id] = device.public_key
    entries: dict[tuple[str, int], ManifestSegment] = {}
    for manifest in report.manifests:
        if not records.verify(manifest, keys):
            problems.append(Problem(Kind.FORGED, f"report manifest {manifest.recording_id}",
                                    "it is not signed by a trusted broker key"))
            continue
        for entry in manifest.segments:
            entries[(manifest.recording_id, entry.seq)] = entry
    previous: ReportSegment | None = None
    for segment in report.segments:
        subject = f"{segment.recording_id} segment {segment.seq}"
        public_key = devices.get(segment.device_id or "")
        meta = segment.metadata()
        if public_key is None or not meta.verify(public_key):
            problems.append(Problem(Kind.FORGED, subject,
                                    "its record does not verify against its device's key"))
        listed = entries.get((segment.recording_id, segment.seq))
        if listed is not None and (listed.sha256, listed.prev) != (segment.sha256, segment.prev):
            problems.append(Problem(Kind.ALTERED, subject,
                                    "its record differs from its signed manifest's"))
        if previous is not None and previous.recording_id == segment.recording_id and (
            previous.seq == segment.seq - 1
        ):
            record = previous.metadata().record()
            if record is None or record.digest() != segment.prev:
                problems.append(Problem(Kind.REORDERED, subject,
                                        f"its record does not follow segment {previous.seq}'s"))
        previous = segment
    problems.extend(_check_file(report, report_path))
    return problems


def _check_file(report: CustodyReport, report_path: Path) -> list[Problem]:
    path = report_path.with_name(report.file)
    if not path.is_file():
        return [Problem(Kind.MISSING, str(path), "the exported file is not beside its report")]
    if file_sha256(path) != report.file_sha256:
        return [Problem(Kind.ALTERED, str(path),
                        "the file is not the one the report describes (SHA-256 differs)")]
    try:
        return _check_packets(report, path)
    except av.FFmpegError:
        return [Problem(Kind.ALTERED, str(path), "the file is not an MP4 the report describes")]


def _check_packets(report: CustodyReport, path: Path) -> list[Problem]:
    packets = packet_digests(path)
    problems: list[Problem] = []
    for segment in report.segments:
        taken = [payload for _, payload in zip(range(segment.packets), packets, strict=False)]
        count, digest = packets_hash(taken)
        if count != segment.packets or digest != segment.packets_sha256:
            problems.append(Problem(
                Kind.ALTERED, f"{report.file} at {segment.placed_at_ms / 1000:.3f} s",
                f"the frames there are not segment {segment.seq}'s of {segment.recording_id}",
            ))
    if next(packets, None) is not None:
        problems.append(Problem(Kind.ALTERED, report.file,
                                "the file holds frames that no segment of the report gave"))
    return problems


def check_against_bucket(report: CustodyReport, fetch: BytesOf) -> list[Problem]:
    """Each segment's signed bytes in the bucket give the packets the report names."""
    problems: list[Problem] = []
    for segment in report.segments:
        data = fetch(segment.key)
        subject = segment.key
        if data is None:
            problems.append(Problem(Kind.MISSING, subject, "not in the bucket any more"))
            continue
        sha = base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")
        if sha != segment.sha256:
            problems.append(Problem(Kind.ALTERED, subject,
                                    "the bucket's bytes are not the signed ones the report names"))
            continue
        try:
            count, digest = packets_hash(packet_digests(data))
        except av.FFmpegError:
            count, digest = 0, ""
        if (count, digest) != (segment.packets, segment.packets_sha256):
            problems.append(Problem(Kind.ALTERED, subject,
                                    "its packets are not those the report says the file holds"))
    return problems

