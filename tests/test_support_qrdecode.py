"""The test suite's QR reader reads what a real encoder (segno) writes, at every version."""

from __future__ import annotations

import random

import pytest
import segno

from tests.support.qrdecode import QrReadError, decode, svg_modules

_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789%:/?=&@.ABC"


@pytest.mark.parametrize("level", ["l", "m", "q", "h"])
def test_the_reader_reads_every_version_at_every_level(level: str) -> None:
    rng = random.Random(level)
    for version in range(1, 41):
        data = "".join(rng.choice(_CHARS) for _ in range(rng.randint(1, 14)))
        code = segno.make(data, version=version, error=level, micro=False, boost_error=False)
        assert code.version == version
        svg = code.svg_inline(scale=3, svgclass="qr", lineclass=None)
        assert decode(svg_modules(svg)) == data.encode(), (version, level)


@pytest.mark.parametrize("length", [17, 213, 214, 615, 1935, 2331])
def test_the_reader_reads_full_codes(length: int) -> None:
    """Long texts in the smallest version that holds them: many blocks, mostly data."""
    rng = random.Random(length)
    data = "".join(rng.choice(_CHARS) for _ in range(length))
    code = segno.make(data, error="m", micro=False)
    assert decode([[bool(v) for v in row] for row in code.matrix]) == data.encode()


def test_numeric_and_alphanumeric_segments_are_read_too() -> None:
    for data in ["0123456789" * 40, "HELLO WORLD $%*+-./:" * 10]:
        code = segno.make(data, error="m", micro=False)
        assert code.mode != "byte"
        assert decode([[bool(v) for v in row] for row in code.matrix]) == data.encode()


def test_a_damaged_format_area_is_refused() -> None:
    matrix = [[bool(v) for v in row] for row in segno.make("x", micro=False).matrix]
    for i in range(6):
        matrix[i][8] = not matrix[i][8]
    with pytest.raises(QrReadError, match="format bits"):
        decode(matrix)
