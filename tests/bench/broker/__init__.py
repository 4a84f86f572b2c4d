"""The broker's device-path benchmark (`python -m tests.bench.broker`, scripts/bench_broker.sh)."""
