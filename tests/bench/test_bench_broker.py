"""The broker benchmark runs end to end at a tiny size (its figures come from
`bash scripts/bench_broker.sh`, not from here): both databases and the anchor, every route
of the device mix answered, nothing failed, the counters read."""

from __future__ import annotations

import pytest

from tests.bench.broker.__main__ import parse_args, run, summary
from tests.bench.broker.load import ANCHOR, ROUTES


def test_the_benchmark_drives_every_route_on_both_databases_and_the_anchor(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = parse_args([
        "--devices", "50", "--tenants", "2", "--pg-rates", "30", "--sqlite-rates", "30",
        "--anchor-rates", "30", "--seconds", "5",
    ])
    targets = run(args)
    assert [t.name for t in targets] == ["postgresql", "sqlite", ANCHOR]
    for target in targets:
        (step,) = target.steps
        assert step.errors == 0, [r for r in step.results if r.status not in (200, 201)]
        assert step.sustained, (step.offered, step.achieved)
        assert step.cpu_ms > 0
        sent = {r.route for r in step.results}
        assert sent == ({ANCHOR} if target.name == ANCHOR else set(ROUTES))
        assert set(step.server) == sent  # the server's own timings, per route
    pg = targets[0].steps[0].pg
    assert pg is not None
    assert pg.transactions > 0
    assert pg.statements > pg.transactions
    last = summary(targets, "test")[-1]
    assert last.startswith("RESULT postgresql mixed 30 req/s, p99 ")
    assert "anchor ratio 1.00x" in last
    assert "route" in capsys.readouterr().out
