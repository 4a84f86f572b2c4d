"""One employee's day: the recorded spans and the gaps between them.

Recorded time comes from the segments the agent declared (start and duration), so a gap is
time in which no segment was recorded, whatever the reason (idle, paused, screen locked, the
agent silent or offline without a spool). Authorization goes through
`broker.access`, in the same transaction as the read.

Why a gap is there comes from the agent: the pauses it reported (`idle`, `locked`,
`capture_blocked`, with their time ranges) on the day, and whether a device of the employee
says now that its screen capture is blocked (its last heartbeat).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from itertools import pairwise
from typing import Any

from broker import access
from broker.clock import day_bounds
from broker.db.database import Database
from broker.db.schema import devices, recording_gaps, recordings, segments
from broker.db.scope import TenantScope
from broker.devices import heartbeat
from broker.identity import Principal
from broker.recordings import bounds
from broker.recordings.common import VERIFIED
from shared.wire import CaptureState

# Segments closer than this are one continuous span (encoder and upload jitter).
JOIN_TOLERANCE = timedelta(seconds=2)


@dataclass(frozen=True, slots=True)
class Piece:
    start: datetime
    end: datetime
    recording_id: str


@dataclass(frozen=True, slots=True)
class Reported:
    """A pause the agent reported: a time range and its reason."""

    start: datetime
    end: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class BlockedDevice:
    name: str
    capture: CaptureState


@dataclass(frozen=True, slots=True)
class Gap:
    """Time of the day with no recording, and why: the reasons the agent reported for it
    (none: it reported nothing, so the agent was silent or offline) and, for a blocked
    capture, the reason a device still gives for it (`no_permission`, ...) when known."""

    start: datetime
    end: datetime
    reasons: tuple[str, ...]
    detail: str | None = None

    @property
    def kind(self) -> str:
        return self.reasons[0] if self.reasons else "silent"


@dataclass(frozen=True, slots=True)
class Seg:
    """A verified segment of the day: what a player may ask a view URL for."""

    recording_id: str
    seq: int
    start: datetime
    duration_ms: int
    codec: str | None = None  # as its agent declared it (None: an older agent, H.264)


@dataclass(frozen=True, slots=True, kw_only=True)
class Day:
    user_id: str
    email: str
    day: date
    days: list[date]  # every day with recorded time, newest first
    zone: tzinfo  # the days are cut in it
    start: datetime  # the day as [start, end) in UTC
    end: datetime
    recordings: list[dict[str, Any]] = field(default_factory=list)
    spans: list[Piece] = field(default_factory=list)
    gaps: list[tuple[datetime, datetime]] = field(default_factory=list)
    pauses: list[Reported] = field(default_factory=list)  # reported on the day, in order
    blocked: list[BlockedDevice] = field(default_factory=list)  # capture blocked now
    playable: list[Seg] = field(default_factory=list)  # verified segments, in time order

    @property
    def live(self) -> bool:
        """A recording of the day is still in progress: its agent has not finished it and is
        still heard from (a device gone silent or revoked leaves its recording open, not
        live: nothing more will join it until its agent is back)."""
        return any(r["state"] == "recording" and r["heard"] for r in self.recordings)

    def explained_gaps(self) -> list[Gap]:
        """The gaps between recorded spans, each with the reasons the agent reported for it,
        and the reported pauses no such gap covers (one that lasts, or ended the recording)."""
        ranges = [(a, b, reasons_within(a, b, self.pauses)) for a, b in self.gaps]
        ranges += [
            (p.start, p.end, [p.reason])
            for p in self.pauses
            if not any(p.start < b and p.end > a for a, b in self.gaps)
        ]
        found = []
        for a, b, reasons in sorted(ranges, key=lambda g: g[0]):
            detail = None
            if "capture_blocked" in reasons:
                detail = next(
                    (d.capture.reason for d in self.blocked
                     if d.capture.since is not None and d.capture.since <= b), None,
                )
            found.append(Gap(a, b, tuple(reasons), detail))
        return found


def reasons_within(start: datetime, end: datetime, pauses: Sequence[Reported]) -> list[str]:
    """The reasons of the reported pauses that overlap [start, end], each once, in order."""
    found: list[str] = []
    for pause in pauses:
        if pause.start < end and pause.end > start and pause.reason not in found:
            found.append(pause.reason)
    return found


def spans_of(pieces: Sequence[Piece]) -> list[Piece]:
    """Merge segments into continuous spans (per recording, in time order)."""
    merged: list[Piece] = []
    for piece in sorted(pieces, key=lambda p: p.start):
        last = merged[-1] if merged else None
        if (
            last is not None
            and last.recording_id == piece.recording_id
            and piece.start - last.end <= JOIN_TOLERANCE
        ):
            merged[-1] = Piece(last.start, max(last.end, piece.end), last.recording_id)
        else:
            merged.append(piece)
    return merged


def gaps_between(spans: Sequence[Piece]) -> list[tuple[datetime, datetime]]:
    gaps = []
    for before, after in pairwise(spans):
        if after.start - before.end > JOIN_TOLERANCE:
            gaps.append((before.end, after.start))
    return gaps


def _pieces(segs: Sequence[Any]) -> list[Piece]:
    """The segments as time spans, leaving out rows no day can show: times stored before
    the broker bounded them (`broker.recordings.bounds`) may end past the calendar's end."""
    pieces = []
    for s in segs:
        end = bounds.segment_end(s.started_at, s.duration_ms)
        day = s.started_at.astimezone(UTC).date()
        if end is None or not bounds.FIRST_DAY <= day <= bounds.LAST_DAY:
            continue
        pieces.append(Piece(s.started_at, end, s.recording_id))
    return pieces


async def day_of(
    db: Database, principal: Principal, user_id: str, day: date | None, *, zone: tzinfo = UTC
) -> Day:
    """The person's `day` (the latest day with recordings up to today when None), cut in
    `zone`."""
    async with db.transaction() as conn:
        scope = TenantScope(conn, principal.tenant_id)
        user = await access.require_visible(scope, principal, user_id)
        recs = await scope.all(
            recordings, recordings.c.user_id == user_id, order_by=[recordings.c.started_at]
        )
        ids = [r.id for r in recs]
        segs = (
            await scope.all(segments, segments.c.recording_id.in_(ids), order_by=[segments.c.seq])
            if ids
            else []
        )
        reported = (
            await scope.all(
                recording_gaps, recording_gaps.c.recording_id.in_(ids),
                recording_gaps.c.gap_from.is_not(None), recording_gaps.c.gap_to.is_not(None),
                order_by=[recording_gaps.c.gap_from],
            )
            if ids
            else []
        )
        owned = await scope.all(
            devices, devices.c.user_id == user_id, devices.c.revoked_at.is_(None),
            order_by=[devices.c.created_at],
        )
    pieces = _pieces(segs)
    days = sorted({p.start.astimezone(zone).date() for p in pieces}, reverse=True)
    today = datetime.now(zone).date()
    chosen = day or next((d for d in days if d <= today), days[-1] if days else today)
    start, end = day_bounds(chosen, zone)
    todays = [p for p in pieces if start <= p.start < end]
    playable = sorted(
        (
            Seg(s.recording_id, s.seq, s.started_at, s.duration_ms, s.codec)
            for s in segs
            if s.state == VERIFIED and start <= s.started_at < end
            and bounds.segment_end(s.started_at, s.duration_ms) is not None
        ),
        key=lambda s: (s.start, s.recording_id, s.seq),
    )
    spans = spans_of(todays)
    on_day = {p.recording_id for p in todays}
    counts: dict[str, int] = {}
    for p in todays:
        counts[p.recording_id] = counts.get(p.recording_id, 0) + 1
    now = datetime.now(UTC)
    heard = {d.id for d in owned if not heartbeat.is_silent(d, now)}
    listed = [
        {
            "recording_id": r.id,
            "state": r.state,
            "started_at": r.started_at,
            "finished_at": r.finished_at,
            "segments": counts.get(r.id, 0),
            "heard": r.device_id in heard,  # its device is not revoked and not silent
        }
        for r in recs
        if r.id in on_day or start <= r.started_at < end
    ]
    pauses = [
        Reported(g.gap_from, g.gap_to, g.reason)
        for g in reported
        if g.gap_from < end and g.gap_to >= start
    ]
    blocked = [
        BlockedDevice(d.name, capture)
        for d in owned
        if (capture := heartbeat.capture_of(d)) is not None and capture.state == "blocked"
    ]
    return Day(
        user_id=user_id, email=user.email, day=chosen, days=days, zone=zone, start=start,
        end=end, recordings=listed,
        spans=spans, gaps=gaps_between(spans), pauses=pauses, blocked=blocked,
        playable=playable,
    )
