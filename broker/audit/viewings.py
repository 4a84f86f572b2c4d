"""Viewing sessions: the audit log's `segment.view_url` entries grouped as people watched.

The player mints one view URL per segment just before it plays (DESIGN G5), so watching a
recording leaves one entry per segment. A viewing is a chain of them: entries of one viewer
for one recording, each within `CLOSE` of the viewer's next one, with no view of that viewer
for another recording between (entries of other actors between them, such as the recording
device's uploads while it is watched live, do not break it).

`CLOSE` is five minutes: at 1× the player asks for the next URL about one segment length
after the last (60 s by default; the policy allows longer), and a viewer who pauses for
longer than five minutes and plays on starts a new viewing. A viewing shows its span (first
and last entry's time) and its segments (lowest to highest seq).

Grouping is a pure function of the entries (newest first), so the audit page, the receipts
and the transparency page group alike. The export keeps every raw entry.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from broker.audit.log import Entry

VIEW_ACTION = "segment.view_url"
CLOSE = timedelta(minutes=5)


def is_view(entry: Entry) -> bool:
    return entry.action == VIEW_ACTION and isinstance(entry.details.get("recording"), str)


def _seq_of(entry: Entry) -> int:
    value = entry.details.get("seq", 0)
    return value if isinstance(value, int) else 0


@dataclass(slots=True)
class Row:
    """One row of a listing: a single entry, or a viewing of one or more view entries."""

    entries: list[Entry] = field(default_factory=list)  # newest first
    viewing: bool = False

    @property
    def newest(self) -> Entry:
        return self.entries[0]

    @property
    def oldest(self) -> Entry:
        return self.entries[-1]

    @property
    def recording_id(self) -> str | None:
        value = self.newest.details.get("recording")
        return value if isinstance(value, str) else None

    @property
    def segments(self) -> list[int]:
        """A viewing's lowest and highest segment (one number for a single segment)."""
        seqs = sorted({_seq_of(e) for e in self.entries})
        return [seqs[0], seqs[-1]] if len(seqs) > 1 else seqs

    @property
    def first_at(self) -> datetime:
        return min(e.at for e in self.entries)

    @property
    def last_at(self) -> datetime:
        return max(e.at for e in self.entries)

    def extends(self, entry: Entry) -> bool:
        """`entry` (older than every entry here) continues this viewing."""
        oldest = self.oldest
        return (
            self.viewing
            and is_view(entry)
            and entry.actor == oldest.actor
            and entry.details.get("recording") == oldest.details.get("recording")
            and abs(oldest.at - entry.at) <= CLOSE
        )


class Grouper:
    """Entries fed newest first become rows, newest first: each viewing one row, every other
    entry one row. With `rows`, at most that many: the last rows still take the entries that
    continue them, and `add` answers False at the first entry that would start one more (the
    next page starts there: `older` is the exclusive seq `before` of that page)."""

    def __init__(self, rows: int | None = None) -> None:
        self.rows: list[Row] = []
        self.older: int | None = None
        self._limit = rows
        self._open: dict[str, Row] = {}  # each viewer's latest viewing, to extend

    def add(self, entry: Entry) -> bool:
        current = self._open.get(entry.actor) if is_view(entry) else None
        if current is not None and current.extends(entry):
            current.entries.append(entry)
            return True
        if self._limit is not None and len(self.rows) >= self._limit:
            self.older = entry.seq + 1
            return False
        row = Row(entries=[entry], viewing=is_view(entry))
        self.rows.append(row)
        if row.viewing:
            self._open[entry.actor] = row
        return True


def group(entries: Iterable[Entry]) -> list[Row]:
    """Every entry (newest first) as rows, viewings grouped."""
    grouper = Grouper()
    for entry in entries:
        grouper.add(entry)
    return grouper.rows
