"""`export`: a person's segments remuxed into one MP4 (no re-encoding) with a custody report
that `verify --report` re-checks, offline and against the bucket. ffprobe (not PyAV) judges
the file: it plays, and lasts as long as its segments."""

from __future__ import annotations

import hashlib
import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import av

from shared.bucket import keys
from tests.vault.bucketwriter import FPS
from tests.vault.conftest import VAULT, VaultBucket, kinds

MONDAY = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def ffprobe(path: Path) -> dict[str, Any]:
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration:stream=codec_name,nb_frames",
         "-of", "json", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def decodes_cleanly(path: Path) -> None:
    done = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr


def test_export_remuxes_a_persons_range_and_the_report_rechecks(
    vault_bucket: VaultBucket, tmp_path: Path
) -> None:
    writer = vault_bucket.writer()
    ann = writer.enroll("ann@example.test")
    morning = writer.record(ann, segments=3, start=MONDAY)
    later = writer.record(ann, segments=2, start=MONDAY + timedelta(minutes=5))
    writer.record(writer.enroll("bob@example.test"), segments=2, start=MONDAY)
    out = tmp_path / "ann.mp4"
    doc = vault_bucket.json(
        "export", "--person", "ann@example.test", "--from", "2026-03-02T08:00",
        "--to", "2026-03-02T09:04", "-o", str(out),
    )
    assert doc["clean"], doc
    assert doc["segments"] == 3  # the later recording is outside the range
    probe = ffprobe(out)
    [stream] = probe["streams"]
    assert stream["codec_name"] == "h264"
    assert abs(float(probe["format"]["duration"]) * 1000 - sum(morning.durations)) <= 1000 / FPS
    decodes_cleanly(out)
    report = json.loads((tmp_path / "ann.custody.json").read_text())
    assert [s["seq"] for s in report["segments"]] == [0, 1, 2]
    assert {s["recording_id"] for s in report["segments"]} == {morning.recording_id}
    assert "ann@example.test" in (tmp_path / "ann.custody.txt").read_text()

    report_path = str(tmp_path / "ann.custody.json")
    against = vault_bucket.vault("--json", "verify", "--report", report_path)
    assert against.returncode == 0, against.stdout + against.stderr
    assert json.loads(against.stdout)["against_bucket"] is True
    offline = subprocess.run(  # no bucket, no credentials: the report and the file alone
        [VAULT, "--json", "verify", "--report", report_path], capture_output=True, text=True,
        timeout=120, check=False, env={"PATH": "/usr/bin:/bin"},
    )
    assert offline.returncode == 0, offline.stdout + offline.stderr
    assert json.loads(offline.stdout)["against_bucket"] is False

    whole = tmp_path / "whole.mp4"
    vault_bucket.json("export", "--person", ann[0], "--from", "2026-03-02T08:00",
                      "--to", "2026-03-02T10:00", "-o", str(whole))
    # the five-minute pause between the two recordings is kept on the file's clock
    first, last = morning.segments[0], later.segments[-1]
    span = last.started_at_ms + last.duration_ms - first.started_at_ms
    assert abs(float(ffprobe(whole)["format"]["duration"]) * 1000 - span) <= 1000 / FPS


def test_a_report_whose_file_was_changed_fails_its_recheck(
    vault_bucket: VaultBucket, tmp_path: Path
) -> None:
    writer = vault_bucket.writer()
    ann = writer.enroll()
    writer.record(ann, segments=2, start=MONDAY)
    out = tmp_path / "a.mp4"
    vault_bucket.json("export", "--person", ann[1], "--from", "2026-03-02T09:00",
                      "--to", "2026-03-02T09:10", "-o", str(out))
    report = tmp_path / "a.custody.json"
    # Re-encoded frames in a file of the same shape: the packets no longer hash as recorded.
    with av.open(str(out)) as source, av.open(str(tmp_path / "b.mp4"), "w") as target:
        stream = target.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for frame in source.decode(video=0):
            for packet in stream.encode(frame.reformat(format="yuv420p")):
                target.mux(packet)
        for packet in stream.encode(None):
            target.mux(packet)
    (tmp_path / "b.mp4").replace(out)
    done = vault_bucket.vault("--json", "verify", "--report", str(report))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "altered" in kinds(json.loads(done.stdout))
    # Told the file's new hash, the report still names every segment's frames as not its own.
    doc = json.loads(report.read_text())
    doc["file_sha256"] = hashlib.sha256(out.read_bytes()).hexdigest()
    report.write_text(json.dumps(doc))
    again = vault_bucket.vault("--json", "verify", "--report", str(report))
    found = json.loads(again.stdout)["problems"]
    assert {p["kind"] for p in found} == {"altered"}
    assert any("are not segment 0's" in p["message"] for p in found)


def test_a_tampered_segment_is_left_out_of_the_export_and_named(
    vault_bucket: VaultBucket, tmp_path: Path
) -> None:
    writer = vault_bucket.writer()
    ann = writer.enroll()
    written = writer.record(ann, segments=3, start=MONDAY)
    key = written.keys[1]
    vault_bucket.replace_bytes(key, b"not a video")
    out = tmp_path / "a.mp4"
    doc = vault_bucket.json("export", "--person", ann[1], "--from", "2026-03-02T09:00",
                            "--to", "2026-03-02T09:10", "-o", str(out), expect=1)
    assert kinds(doc) == {"altered"}
    assert doc["segments"] == 2
    text = (tmp_path / "a.custody.txt").read_text()
    assert "ALTERED" in text
    assert key in text


def test_export_refuses_to_overwrite_and_needs_a_recording(
    vault_bucket: VaultBucket, tmp_path: Path
) -> None:
    out = tmp_path / "x.mp4"
    out.write_bytes(b"mine")
    done = vault_bucket.vault("export", "--person", "nobody", "--from", "2026-03-02T09:00",
                              "--to", "2026-03-02T10:00", "-o", str(out))
    assert done.returncode == 2
    assert "exists" in done.stderr
    assert out.read_bytes() == b"mine"
    out.unlink()
    done = vault_bucket.vault("export", "--person", "nobody", "--from", "2026-03-02T09:00",
                              "--to", "2026-03-02T10:00", "-o", str(out))
    assert done.returncode == 2
    assert "no recording of nobody" in done.stderr
    assert not out.exists()


def test_segments_whose_device_record_is_forged_are_not_exported(
    vault_bucket: VaultBucket, tmp_path: Path
) -> None:
    writer = vault_bucket.writer()
    ann = writer.enroll()
    writer.record(ann, segments=2, start=MONDAY)
    key = keys.device_key(vault_bucket.prefix, ann[2])
    vault_bucket.swap_device_key(key)
    out = tmp_path / "a.mp4"
    done = vault_bucket.vault("export", "--person", ann[1], "--from", "2026-03-02T09:00",
                              "--to", "2026-03-02T09:10", "-o", str(out))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "passed its checks" in done.stderr
    assert f"FORGED     {key}" in done.stderr
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no half file, no report


def test_a_segment_replaced_in_the_bucket_after_the_export_fails_the_recheck_there(
    vault_bucket: VaultBucket, tmp_path: Path
) -> None:
    writer = vault_bucket.writer()
    ann = writer.enroll()
    written = writer.record(ann, segments=2, start=MONDAY)
    vault_bucket.json("export", "--person", ann[1], "--from", "2026-03-02T09:00",
                      "--to", "2026-03-02T09:10", "-o", str(tmp_path / "a.mp4"))
    key = written.keys[0]
    vault_bucket.replace_bytes(key, b"other")
    report = str(tmp_path / "a.custody.json")
    offline = subprocess.run([VAULT, "verify", "--report", report], capture_output=True,
                             text=True, timeout=120, check=False, env={"PATH": "/usr/bin:/bin"})
    assert offline.returncode == 0, offline.stdout  # the file and report still agree
    doc = vault_bucket.json("verify", "--report", report, expect=1)
    assert [(p["kind"], p["subject"]) for p in doc["problems"]] == [("altered", key)]


def test_an_output_that_cannot_be_written_is_exit_2(vault_bucket: VaultBucket, tmp_path: Path
                                                    ) -> None:
    writer = vault_bucket.writer()
    ann = writer.enroll()
    writer.record(ann, segments=1, start=MONDAY)
    out = tmp_path / "no" / "such" / "dir" / "a.mp4"
    done = vault_bucket.vault("export", "--person", ann[1], "--from", "2026-03-02T09:00",
                              "--to", "2026-03-02T09:10", "-o", str(out))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "cannot write" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_resolution_change_in_the_range_is_refused_with_a_way_out(
    vault_bucket: VaultBucket, tmp_path: Path
) -> None:
    """One MP4 track has one set of codec parameters: a range across a resolution change is
    refused, naming the segment, and leaves no file; the ranges on either side export."""
    writer = vault_bucket.writer()
    ann = writer.enroll()
    written = writer.record(ann, segments=3, start=MONDAY, resize_after=0)
    out = tmp_path / "a.mp4"
    done = vault_bucket.vault("export", "--person", ann[1], "--from", "2026-03-02T09:00",
                              "--to", "2026-03-02T09:10", "-o", str(out))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "the screen's resolution changed" in done.stderr, done.stderr
    assert "export the ranges before and after it separately" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [], "no partial file left behind"

    second = written.segments[1].started_at_ms
    after = datetime.fromtimestamp(second / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    done = vault_bucket.vault("export", "--person", ann[1], "--from", after,
                              "--to", "2026-03-02T09:10", "-o", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert out.stat().st_size > 0
