"""Pause gaps on the wire: reasons idle and locked carry a time range and no segment; the
older reasons are unchanged (a range on them is refused)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.wire import GapInfo, GapReport, WireError

FROM, TO = "2030-01-02T03:04:05Z", "2030-01-02T03:09:05Z"


def test_a_pause_round_trips() -> None:
    gap = GapReport.from_json({"seqs": [], "reason": "idle", "from": FROM, "to": TO})
    assert gap.from_ == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert gap.to_json() == {"seqs": [], "reason": "idle", "from": FROM, "to": TO}
    assert GapReport.from_json(gap.to_json()) == gap
    locked = GapReport.from_json({"seqs": [], "reason": "locked", "from": FROM, "to": FROM})
    assert locked.to == locked.from_


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"seqs": [], "reason": "idle"}, "from"),
        ({"seqs": [], "reason": "idle", "from": FROM}, "to"),
        ({"seqs": [], "reason": "locked", "from": TO, "to": FROM}, "to"),
        ({"seqs": [], "reason": "idle", "from": "2030-01-02T03:04:05", "to": TO}, "from"),
        ({"seqs": [3], "reason": "idle", "from": FROM, "to": TO}, "seqs"),
        ({"seqs": [3], "reason": "refused", "from": FROM, "to": TO}, "from"),
        ({"seqs": [3], "reason": "asleep"}, "reason"),
    ],
)
def test_bad_pauses_are_refused_naming_the_field(body: dict[str, object], field: str) -> None:
    with pytest.raises(WireError) as caught:
        GapReport.from_json(body)
    assert caught.value.field == field


def test_the_older_reasons_are_unchanged() -> None:
    gap = GapReport.from_json({"seqs": [2, 1, 2], "reason": "spool_limit"})
    assert gap.to_json() == {"seqs": [1, 2], "reason": "spool_limit"}
    info = GapInfo(seqs=[1], reason="refused", reported_at=FROM)
    assert info.to_json() == {"seqs": [1], "reason": "refused", "reported_at": FROM}
    pause = GapInfo(seqs=[], reason="idle", reported_at=TO, from_=FROM, to=TO)
    assert pause.to_json()["from"] == FROM
