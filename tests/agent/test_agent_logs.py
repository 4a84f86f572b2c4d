"""Redaction (no presigned query string and no token reaches a log line) and the two log
formats: a readable line per event on a terminal, one JSON object per line otherwise."""

from __future__ import annotations

import io
import json
import logging
import os
import pty
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from agent.logs import (
    LOG_FORMAT_ENV,
    REPORTS,
    RedactingFilter,
    default_log_format,
    fatal,
    redact,
    report,
    setup_logging,
    url_origin_path,
    url_path,
)

URL = (
    "https://bucket.s3.amazonaws.com/p/t/u/r/000001.mp4?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIA%2F20250101&X-Amz-Signature=deadbeef"
)


def test_url_helpers_drop_the_query() -> None:
    assert url_path(URL) == "/p/t/u/r/000001.mp4"
    assert url_origin_path(URL) == "https://bucket.s3.amazonaws.com/p/t/u/r/000001.mp4"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"PUT {URL} failed", "deadbeef"),
        ("X-Amz-Signature=deadbeef&X-Amz-Credential=AKIAXYZ", "AKIAXYZ"),
        ("Authorization: Bearer eyJhbGciOi.abc.def", "eyJhbGciOi"),
        ('{"access_token": "at-secret", "refresh_token": "rt-secret"}', "secret"),
    ],
)
def test_redact(text: str, secret: str) -> None:
    assert secret not in redact(text)


def test_filter_rewrites_records(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("agent.test-redaction")
    logger.addFilter(RedactingFilter())
    try:
        with caplog.at_level(logging.INFO, logger="agent.test-redaction"):
            logger.info("uploading to %s", URL)
    finally:
        logger.filters.clear()
    assert "deadbeef" not in caplog.text
    assert "/p/t/u/r/000001.mp4" in caplog.text


@pytest.fixture
def stderr_log() -> Iterator[io.StringIO]:
    """setup_logging on a captured stream; the root logger is restored afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger(REPORTS).level)
    stream = io.StringIO()
    try:
        yield stream
    finally:
        root.handlers[:], level, reports_level = saved
        root.setLevel(level)
        logging.getLogger(REPORTS).setLevel(reports_level)


def test_auto_is_json_off_a_terminal_with_reports_at_any_verbosity(
    stderr_log: io.StringIO,
) -> None:
    assert setup_logging(0, "auto", stream=stderr_log) == "json"
    report("segment 3 uploaded: 1.0 MB", event="segment_uploaded", seq=3, key="t/r/000003.mp4")
    logging.getLogger("agent.somewhere").info("not shown at verbosity 0")
    logging.getLogger("agent.somewhere").warning("PUT %s refused", URL)
    fatal("the end", exit_code=75)
    entries = [json.loads(line) for line in stderr_log.getvalue().splitlines()]
    assert [(e["level"], e["event"], e["message"]) for e in entries] == [
        ("info", "segment_uploaded", "segment 3 uploaded: 1.0 MB"),
        ("warning", "log", f"PUT {url_origin_path(URL)}?<redacted> refused"),
        ("error", "exit", "the end"),
    ]
    assert (entries[0]["seq"], entries[0]["key"]) == (3, "t/r/000003.mp4")
    assert entries[1]["logger"] == "agent.somewhere"
    assert entries[2]["exit_code"] == 75
    stamp = datetime.fromisoformat(entries[0]["time"].replace("Z", "+00:00"))
    assert stamp.tzinfo is not None
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60


def test_json_fields_and_tracebacks_are_redacted(stderr_log: io.StringIO) -> None:
    setup_logging(0, "json", stream=stderr_log)
    report("upload failed", event="segment_failed", seq=1, error=f"PUT {URL} answered 403")
    try:
        raise RuntimeError(f"refused: {URL}")
    except RuntimeError:
        logging.getLogger("agent.x").exception("boom")
    text = stderr_log.getvalue()
    assert "deadbeef" not in text
    failed, boom = (json.loads(line) for line in text.splitlines())
    assert failed["error"] == f"PUT {url_origin_path(URL)}?<redacted> answered 403"
    assert "Traceback" in boom["error"]
    assert "RuntimeError: refused" in boom["error"]


def test_text_is_a_bare_line_per_report_and_prefixed_logs(stderr_log: io.StringIO) -> None:
    assert setup_logging(1, "text", stream=stderr_log) == "text"
    report("recording r1 started", event="recording_started", recording_id="r1")
    logging.getLogger("agent.y").info("more with -v")
    fatal("this device is not enrolled", exit_code=1)
    assert stderr_log.getvalue().splitlines() == [
        "recording r1 started",
        "bucketreel-agent: INFO: more with -v",
        "bucketreel-agent: error: this device is not enrolled",
    ]


def test_auto_is_text_on_a_terminal(stderr_log: io.StringIO) -> None:
    leader, follower = pty.openpty()
    try:
        with os.fdopen(follower, "w", closefd=False) as terminal:
            assert setup_logging(0, "auto", stream=terminal) == "text"
    finally:
        os.close(leader)
        os.close(follower)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("json", "json"), (" TEXT ", "text"), ("auto", "auto"), ("", "auto"), ("xml", "auto")],
)
def test_the_environment_chooses_the_default_format(value: str, expected: str) -> None:
    assert default_log_format({LOG_FORMAT_ENV: value}) == expected
    assert default_log_format({}) == "auto"
