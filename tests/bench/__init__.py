"""Benchmarks: run by `bash scripts/bench.sh`, never collected by pytest (no test_*.py here)."""
