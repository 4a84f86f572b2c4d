#!/usr/bin/env bash
# Benchmark the agent against ffmpeg x11grab on a scripted 1920x1080 desktop (tests/bench/).
#   bash scripts/bench.sh                 # 2 recorded minutes each (the default)
#   bash scripts/bench.sh --minutes 30 --agent-only   # the soak: RSS growth over 30 minutes
#   bash scripts/bench.sh --help          # every option
# Installs first (scripts/install.sh: Xvfb, ffmpeg, the venv), then prints a table of figures.
# Not part of scripts/test.sh: figures, not pass/fail tests.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash "$ROOT/scripts/install.sh"
exec "$ROOT/.venv/bin/python" -m tests.bench.bench_agent "$@"
