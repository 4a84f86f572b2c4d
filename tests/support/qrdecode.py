"""A small QR code reader for the server-rendered codes the tests see (ISO/IEC 18004).

No QR decoder is packaged for this venv, so the tests read the enrollment page's code with
this one: the SVG's path back into modules (`svg_modules`), then the format bits, the mask,
the codewords in their zig-zag order, the blocks de-interleaved and the segments parsed
(`decode`). It trusts a perfect picture (no error correction, no image processing): what it
reads is what the page drew. The only tables borrowed are the standard's own (block
structure and alignment positions, as segno's `consts` list them); the reading is written
here, so the test does not check segno's encoder against itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from itertools import product

from segno import consts

Matrix = list[list[bool]]  # rows of modules, True = dark, without the quiet zone

_MASKS: tuple[Callable[[int, int], bool], ...] = (
    lambda x, y: (x + y) % 2 == 0,
    lambda x, y: y % 2 == 0,
    lambda x, y: x % 3 == 0,
    lambda x, y: (x + y) % 3 == 0,
    lambda x, y: (x // 3 + y // 2) % 2 == 0,
    lambda x, y: x * y % 2 + x * y % 3 == 0,
    lambda x, y: (x * y % 2 + x * y % 3) % 2 == 0,
    lambda x, y: ((x + y) % 2 + x * y % 3) % 2 == 0,
)
_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"


class QrReadError(ValueError):
    """The picture is not a QR code this reader understands."""


def svg_modules(svg: str, *, border: int = 4) -> Matrix:
    """The modules of a QR code drawn as one SVG path of horizontal runs (segno's form:
    `M x y.5` then `h n` to draw and `m dx dy` to move), without the quiet zone."""
    width = re.search(r'<svg[^>]*\swidth="(\d+)"', svg)
    scale = re.search(r'scale\((\d+)\)', svg)
    path = re.search(r'<path[^>]*\sd="([^"]+)"', svg)
    if width is None or scale is None or path is None:
        raise QrReadError("no sized, scaled SVG path")
    side = int(width.group(1)) // int(scale.group(1))
    size = side - 2 * border
    dark = [[False] * size for _ in range(size)]
    x = y = 0.0
    for command, a, b in re.findall(r"([MmHh])\s*(-?[\d.]+)(?:\s+(-?[\d.]+))?", path.group(1)):
        if command in "Mm":
            dx, dy = float(a), float(b)
            x, y = (dx, dy) if command == "M" else (x + dx, y + dy)
        else:
            run = float(a)
            start, stop = (x, x + run) if command == "h" else (x, run)
            for column in range(int(start), int(stop)):
                dark[int(y) - border][column - border] = True
            x = stop
    return dark


def decode(matrix: Matrix) -> bytes:
    """The bytes a QR code (model 2, versions 1–40) holds."""
    size = len(matrix)
    version, rest = divmod(size - 17, 4)
    if rest or not 1 <= version <= 40 or any(len(row) != size for row in matrix):
        raise QrReadError(f"a {size}×{size} grid is no QR code")
    level, mask = _format(matrix)
    function = _function_modules(size, version)
    bits = []
    for x, y in _zigzag(size):
        if not function[y][x]:
            bits.append(matrix[y][x] != _MASKS[mask](x, y))
    blocks = [
        (block.num_total, block.num_data)
        for block in consts.ECC[version][level]
        for _ in range(block.num_blocks)
    ]
    total = sum(t for t, _ in blocks)
    codewords = [
        int("".join("1" if b else "0" for b in bits[i * 8 : i * 8 + 8]), 2) for i in range(total)
    ]
    return _segments(_data_codewords(codewords, blocks), version)


def _format(matrix: Matrix) -> tuple[int, int]:
    """(error correction level as the format bits give it, mask) from the top-left copy."""

    def dark(x: int, y: int) -> int:
        return int(matrix[y][x])

    bits = sum(dark(8, i) << i for i in range(6))
    bits |= dark(8, 7) << 6 | dark(8, 8) << 7 | dark(7, 8) << 8
    bits |= sum(dark(14 - i, 8) << i for i in range(9, 15))
    for data in range(32):
        remainder = data
        for _ in range(10):
            remainder = (remainder << 1) ^ ((remainder >> 9) * 0x537)
        if (data << 10 | remainder) ^ 0x5412 == bits:
            return data >> 3, data & 7
    raise QrReadError("the format bits are not a valid BCH code word")


def _function_modules(size: int, version: int) -> Matrix:
    taken = [[False] * size for _ in range(size)]

    def mark(x0: int, y0: int, width: int, height: int) -> None:
        for y in range(max(y0, 0), min(y0 + height, size)):
            for x in range(max(x0, 0), min(x0 + width, size)):
                taken[y][x] = True

    mark(0, 0, 9, 9)  # the finders with their separators and the format bits
    mark(size - 8, 0, 8, 9)
    mark(0, size - 8, 9, 8)
    mark(0, 6, size, 1)
    mark(6, 0, 1, size)  # timing patterns
    centres = consts.ALIGNMENT_POS[version - 2] if version > 1 else ()  # from version 2 on
    first, last = (centres[0], centres[-1]) if centres else (0, 0)
    for cx, cy in product(centres, repeat=2):
        if (cx, cy) not in ((first, first), (first, last), (last, first)):
            mark(cx - 2, cy - 2, 5, 5)
    if version >= 7:
        mark(0, size - 11, 6, 3)
        mark(size - 11, 0, 3, 6)  # version information
    return taken


def _zigzag(size: int) -> list[tuple[int, int]]:
    """Every (x, y) in the order the standard places codeword bits."""
    order = []
    right = size - 1
    while right >= 1:
        if right == 6:  # the vertical timing pattern's column is skipped
            right = 5
        for vertical in range(size):
            for j in range(2):
                x = right - j
                upward = ((right + 1) & 2) == 0
                order.append((x, size - 1 - vertical if upward else vertical))
        right -= 2
    return order


def _data_codewords(codewords: list[int], blocks: list[tuple[int, int]]) -> list[int]:
    """The data codewords in order: the code interleaves them across the blocks."""
    data: list[list[int]] = [[] for _ in blocks]
    it = iter(codewords)
    for i in range(max(d for _, d in blocks)):
        for index, (_, num_data) in enumerate(blocks):
            if i < num_data:
                data[index].append(next(it))
    return [c for block in data for c in block]


def _segments(codewords: list[int], version: int) -> bytes:
    bits = "".join(f"{c:08b}" for c in codewords)
    pos = 0

    def take(n: int) -> int:
        nonlocal pos
        value = int(bits[pos : pos + n] or "0", 2)
        pos += n
        return value

    band = 0 if version <= 9 else 1 if version <= 26 else 2
    out = bytearray()
    while pos + 4 <= len(bits):
        mode = take(4)
        if mode == 0:  # terminator
            break
        if mode == 0b0111:  # ECI designator (one byte: the charsets the tests meet)
            take(8)
        elif mode == 0b0100:
            out += bytes(take(8) for _ in range(take((8, 16, 16)[band])))
        elif mode == 0b0010:
            count = take((9, 11, 13)[band])
            for _ in range(count // 2):
                pair = take(11)
                out += (_ALNUM[pair // 45] + _ALNUM[pair % 45]).encode()
            if count % 2:
                out += _ALNUM[take(6)].encode()
        elif mode == 0b0001:
            count = take((10, 12, 14)[band])
            for _ in range(count // 3):
                out += f"{take(10):03d}".encode()
            if count % 3:
                width = 7 if count % 3 == 2 else 4
                out += f"{take(width):0{count % 3}d}".encode()
        else:
            raise QrReadError(f"mode {mode:04b} is not one this reader knows")
    return bytes(out)
