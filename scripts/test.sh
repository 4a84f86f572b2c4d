#!/usr/bin/env bash
# The whole check, as CI runs it: install, lint, type-check (also as Windows and macOS),
# the import contract (.importlinter), then every test.
#   scripts/test.sh [pytest args...]     e.g. scripts/test.sh -k broker -x
# Exits with pytest's status; "no tests collected" (5) counts as a failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BIN="$ROOT/.venv/bin"

bash "$ROOT/scripts/install.sh"

echo "== ruff" >&2
"$BIN/ruff" check .
echo "== mypy" >&2
"$BIN/mypy"
# The agent and the wire models as Windows and macOS see them (agent/platform/ is the only
# place allowed to differ; tests/agent/test_agent_portable.py covers the rest).
for platform in win32 darwin; do
    echo "== mypy --platform $platform (agent, shared)" >&2
    "$BIN/mypy" --platform "$platform" -p agent -p shared
done
echo "== lint-imports" >&2
"$BIN/lint-imports"
echo "== pytest" >&2
status=0
"$BIN/python" -m pytest -p no:cacheprovider "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "test: pytest collected no tests: that is a failure, not a pass" >&2
    exit 1
fi
exit "$status"
