#!/usr/bin/env bash
# Benchmark the agent against the plain ffmpeg x11grab command at equal SSIM-Y, on three
# 1920x1080 workloads: the scripted desktop, a Chromium office page, full-screen motion
# (tests/bench/; README "Packaging and figures").
#   bash scripts/bench.sh                 # 2 recorded minutes per workload and recorder
#   bash scripts/bench.sh --workloads office --no-live --variants la0-hex,la2-umh128
#                                         # the rate-quality frontier of encoder settings
#   bash scripts/bench.sh --soak 1800     # the 30-minute soak: the agent alone, RSS every 30 s
#   bash scripts/bench.sh --help          # every option
# Installs first (scripts/install.sh: Xvfb, ffmpeg, the venv), then prints a table of figures.
# Not part of scripts/test.sh: figures, not pass/fail tests.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash "$ROOT/scripts/install.sh"
exec "$ROOT/.venv/bin/python" -m tests.bench.bench_agent "$@"
