"""The suite-wide S3 operation check catches what it must and lets the self-check through."""

from __future__ import annotations

from tests.support.s3_operations import Operation, violations


def test_listing_or_deleting_outside_the_self_check_is_a_violation() -> None:
    bad = [
        Operation("call", "ListObjectsV2", "rec/"),
        Operation("call", "DeleteObject", "rec/t/u/r/000000.mp4"),
        Operation("presign", "DeleteObject", "rec/t/u/r/000000.mp4"),
        Operation("call", "GetObject", "rec/t/u/r/000000.mp4"),
        Operation("call", "PutObjectAcl", "rec/t/u/r/000000.mp4"),
    ]
    assert violations(bad) == sorted(set(bad), key=repr)


def test_grants_verification_and_self_check_probes_are_allowed() -> None:
    good = [
        Operation("presign", "PutObject", "rec/t/u/r/000000.mp4"),
        Operation("presign", "GetObject", "rec/t/u/r/000000.mp4"),
        Operation("call", "HeadObject", "rec/t/u/r/000000.mp4"),
        Operation("call", "PutObject", "rec/_bucketreel/selfcheck/abc"),
        Operation("call", "ListObjectsV2", "rec/_bucketreel/selfcheck/"),
        Operation("call", "DeleteObject", "_bucketreel/selfcheck/missing-1"),
        Operation("call", "PutObjectAcl", "rec/_bucketreel/selfcheck/abc"),
    ]
    assert violations(good) == []


def test_the_bucket_records_are_written_once_and_only_where_they_belong() -> None:
    good = [
        Operation("call", "PutObject", "rec/_bucketreel/keys/0123456789abcdef.json", True),
        Operation("call", "PutObject", "rec/_bucketreel/devices/d.json", True),
        Operation("call", "PutObject", "_bucketreel/audit/t/000000000001.json", True),
        Operation("call", "PutObject", "rec/t/u/r/manifest.json", True),
    ]
    assert violations(good) == []
    bad = [
        Operation("call", "PutObject", "rec/t/u/r/manifest.json"),  # could overwrite
        Operation("call", "PutObject", "rec/t/u/r/000000.mp4", True),  # a recording's bytes
        Operation("call", "PutObject", "rec/_bucketreel/other/x.json", True),
    ]
    assert violations(bad) == sorted(set(bad), key=repr)
