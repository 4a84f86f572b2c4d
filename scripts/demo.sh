#!/usr/bin/env bash
# The main job on embedded defaults: install, then record this screen (or a virtual one)
# for about 20 seconds into a local development bucket and print where it landed.
#   bash scripts/demo.sh [--seconds N] [--fps N] [--segment-seconds N] [--serve] [--work DIR]
#   --serve: then keep the bucket and the broker up until Ctrl+C, with sign-ins to try the pages
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/install.sh"
exec "$ROOT/.venv/bin/python" "$ROOT/scripts/demo.py" "$@"
