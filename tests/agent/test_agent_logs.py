"""Redaction: no presigned query string and no token reaches a log line."""

from __future__ import annotations

import logging

import pytest

from agent.logs import RedactingFilter, redact, url_origin_path, url_path

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
