#!/usr/bin/env bash
# Benchmark the broker's device path (upload grant, completion, heartbeat, token refresh) with
# 10,000 enrolled devices, open-loop at stepped rates, on PostgreSQL and SQLite, beside a
# minimal anchor service (tests/bench/broker/; README "Broker throughput (device path)").
#   bash scripts/bench_broker.sh                       # the default run, about 3 minutes
#   bash scripts/bench_broker.sh --backends postgresql --pg-rates 256,512,768 --seconds 10
#   bash scripts/bench_broker.sh --help                # every option
# Starts its own PostgreSQL, moto and broker processes; the last line is the PostgreSQL mixed
# rate sustained, its p99 and the anchor ratio. Not part of scripts/test.sh: figures.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [ ! -x "$ROOT/.venv/bin/python" ]; then
    bash "$ROOT/scripts/install.sh"
fi
exec "$ROOT/.venv/bin/python" -m tests.bench.broker "$@"
