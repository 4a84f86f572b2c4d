"""`export`: a person's segments between two times, checked and remuxed into one MP4, with a
custody report beside it (`shared.vault.report`).

Whole segments are exported (no re-encoding, so no cut inside a segment): every segment that
overlaps [from, to). Each is checked as `verify` checks it, its bytes read once and fed to the
remuxer as they arrive; a segment whose own checks fail is left out of the file and named in
the report. The file is written beside its final name and renamed into place at the end, so a
failed export leaves no half file under that name.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from shared import version
from shared.bucket.records import DeviceRecord, Manifest
from shared.vault import report as custody
from shared.vault.catalog import Summary, iso
from shared.vault.errors import ExportError, UsageError
from shared.vault.problems import Problem
from shared.vault.progress import Progress
from shared.vault.recording import RecordingCheck, RecordingChecker, SegmentSeen
from shared.vault.remux import Piece, Placed, remux
from shared.vault.store import Store
from shared.vault.trust import Trust


@dataclass(slots=True, kw_only=True)
class Exported:
    out: Path
    report_json: Path
    report_text: Path
    report: custody.CustodyReport
    checks: list[RecordingCheck] = field(default_factory=list)

    @property
    def problems(self) -> tuple[custody.ReportProblem, ...]:
        return self.report.problems


def export(
    store: Store, trust: Trust, summaries: list[Summary], *, person: str, start_ms: int,
    end_ms: int, out: Path, force: bool, progress: Progress,
) -> Exported:
    if out.exists() and not force:
        raise UsageError(f"{out} exists: choose another name, or give --force")
    if not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
        raise UsageError(f"cannot write {out}: {out.parent} is not a directory this user may "
                         "write to")
    if not summaries:
        raise UsageError(f"no recording of {person} overlaps that time range")
    json_path, _ = custody.report_paths(out)
    partial = out.with_name(f".{out.name}.partial")
    seen_in_file: list[SegmentSeen] = []
    checkers = [RecordingChecker(s.ref, store, trust) for s in summaries]
    progress.add(sum(len(s.ref.segments) for s in summaries))

    def wanted(seen: SegmentSeen) -> bool:
        start, duration = seen.start_ms, seen.duration_ms
        return start is not None and duration is not None and (
            start < end_ms and start + duration > start_ms
        )

    def pieces() -> Iterator[Piece]:
        first: int | None = None
        for checker in checkers:
            for seen, data in checker.run(wanted):
                progress.step(seen.key)
                if data is None or seen.start_ms is None or not checker.vouched(seen):
                    continue
                first = seen.start_ms if first is None else first
                seen_in_file.append(seen)
                yield Piece(label=seen.key, data=data, offset_ms=seen.start_ms - first)

    try:
        placed = remux(pieces(), partial, title=f"{person} {iso(start_ms)} - {iso(end_ms)}")
    except BaseException as exc:
        partial.unlink(missing_ok=True)
        if isinstance(exc, ExportError) and not seen_in_file:
            found = [p.line() for c in checkers for p in c.result.all_problems()][:5]
            raise ExportError(
                f"no segment of {person} in that range passed its checks (or none overlaps it)"
                + (": " + "; ".join(found) if found else "")
            ) from None
        raise
    finally:
        progress.close()
    os.replace(partial, out)
    checks = [c.result for c in checkers]
    report = _report(store, trust, checks, seen_in_file, placed, person=person,
                     start_ms=start_ms, end_ms=end_ms, out=out)
    json_path, text_path = custody.write(report, out, text(report, json_path))
    return Exported(out=out, report_json=json_path, report_text=text_path, report=report,
                    checks=checks)


def _report(
    store: Store, trust: Trust, checks: list[RecordingCheck], in_file: list[SegmentSeen],
    placed: list[Placed], *, person: str, start_ms: int, end_ms: int, out: Path,
) -> custody.CustodyReport:
    if len(placed) != len(in_file):
        raise ExportError("the remuxer placed another number of segments than it was given")
    segments = []
    for seen, where in zip(in_file, placed, strict=True):
        meta = seen.meta
        if meta is None:
            raise ExportError(f"{seen.key} has no metadata yet was exported")
        segments.append(custody.ReportSegment(
            tenant_id=meta.tenant_id, user_id=meta.user_id, device_id=meta.device_id,
            recording_id=meta.recording_id, seq=meta.seq, key=seen.key, size=meta.size,
            sha256=meta.sha256, started_at_ms=meta.started_at_ms, duration_ms=meta.duration_ms,
            custody=meta.custody, prev=meta.prev, signature=meta.signature,
            placed_at_ms=where.start_ms, placed_duration_ms=where.duration_ms,
            packets=where.packets, packets_sha256=where.packets_sha256,
        ))
    used = {s.meta.recording_id for s in in_file if s.meta is not None}
    problems: list[Problem] = [p for c in checks for p in c.all_problems()]
    problems += [
        Problem(p.kind, p.subject, p.message) for p in trust.problems
    ]
    left_out = [s.key for c in checks for s in c.segments if s.problems and s.present]
    notes = [n for c in checks for n in c.notes if c.ref.recording_id in used]
    if left_out:
        notes.append("left out of the file, their checks having failed: " + ", ".join(left_out))
    devices: dict[str, DeviceRecord] = {}
    for c in checks:
        if c.device is not None and c.device.record is not None:
            devices[c.device.device_id] = c.device.record
    manifests: list[Manifest] = [
        c.manifest for c in checks if c.manifest is not None and c.ref.recording_id in used
    ]
    keys = [trust.records[k] for k in sorted(trust.records)]
    duration = placed[-1].start_ms + placed[-1].duration_ms if placed else 0
    return custody.CustodyReport(
        tool=f"bucketreel-vault {version()}",
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        bucket=store.location.bucket, prefix=store.location.prefix, person=person,
        from_=iso(start_ms) or "", to=iso(end_ms) or "", file=out.name,
        file_size=out.stat().st_size, file_sha256=custody.file_sha256(out),
        duration_ms=duration, broker_keys=tuple(keys), devices=tuple(devices.values()),
        manifests=tuple(manifests), segments=tuple(segments),
        problems=tuple(custody.ReportProblem(**p.to_json()) for p in problems),
        notes=tuple(notes),
    )


def text(report: custody.CustodyReport, json_path: Path) -> str:
    """The report for a person to read."""
    emails = sorted({d.user_email for d in report.devices})
    devices = sorted({f"{d.device_name} ({d.device_id})" for d in report.devices})
    recordings = sorted({s.recording_id for s in report.segments})
    lines = [
        f"Custody report for {report.file}",
        "",
        f"The file holds {len(report.segments)} segments of the screen recording of "
        f"{', '.join(emails) or report.person}, from {report.from_} to {report.to} "
        f"({report.duration_ms / 1000:.1f} s of video), taken from bucket {report.bucket}"
        + (f", prefix {report.prefix}" if report.prefix else "") + ".",
        f"Recordings: {', '.join(recordings) or 'none'}. Devices: {', '.join(devices) or 'none'}.",
        f"The file's SHA-256 is {report.file_sha256} ({report.file_size} bytes).",
        "",
        "Each segment was signed by its device's key when it was recorded; the device's key was "
        "registered by the broker, which signed its record with a key published in the bucket "
        f"({', '.join(k.key_id for k in report.broker_keys) or 'none'}). The segments were "
        "copied into the file without re-encoding.",
        "",
    ]
    if report.problems:
        count = len(report.problems)
        lines.append(f"{count} PROBLEM{'S' if count > 1 else ''} found when it was made:")
        lines += [f"  - {p.kind.upper()}: {p.subject}: {p.message}" for p in report.problems]
    else:
        lines.append("No problem was found when it was made: no segment missing, altered, "
                     "reordered, forged, unsigned or re-timed.")
    lines += [f"Note: {n}" for n in report.notes]
    lines += [
        "",
        f"Made by {report.tool} on {report.created_at}. Anyone can check it again with:",
        f"  bucketreel-vault verify --report {json_path.name}",
        f"  bucketreel-vault --bucket {report.bucket}"
        + (f" --prefix {report.prefix}" if report.prefix else "")
        + f" verify --report {json_path.name}   (also against the bucket)",
        "",
    ]
    return "\n".join(lines)
