#!/usr/bin/env bash
# Install what bucketreel needs to run and test, idempotently:
#   1. Debian packages (only those missing): Python 3 with venv, Xvfb, xsetroot, xdotool,
#      PostgreSQL (the tests start their own throwaway server; the system service is not used),
#      ffmpeg (ffprobe, to check recordings independently of PyAV), chromium (headless, for
#      the manager pages' browser tests; Playwright drives Debian's build, never its own),
#      systemd (systemd-analyze and systemd --test check the agent's autostart unit);
#   2. .venv in the repository root (Python >= 3.11) from requirements.lock (hashes pinned);
#   3. bucketreel itself, editable, without touching the locked dependencies.
# Quiet on success; on failure it prints the failing step's output.
# Environment: PYTHON=/path/to/python3 chooses the interpreter for a new .venv.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
DEB_PACKAGES=(python3 python3-venv xvfb x11-xserver-utils xdotool postgresql ffmpeg chromium tzdata
    systemd haproxy)

log() { printf 'install: %s\n' "$*" >&2; }
die() { printf 'install: error: %s\n' "$*" >&2; exit 1; }

# Run a command quietly; show its output only if it fails.
quiet() {
    local out status=0
    out="$(mktemp)"
    "$@" >"$out" 2>&1 || status=$?
    if [ "$status" -ne 0 ]; then
        cat "$out" >&2
        rm -f "$out"
        die "failed ($status): $*"
    fi
    rm -f "$out"
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    else
        sudo "$@"
    fi
}

install_debian_packages() {
    if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-query >/dev/null 2>&1; then
        log "no apt-get: not Debian; install the equivalents of: ${DEB_PACKAGES[*]}"
        return 0
    fi
    local missing=() pkg
    for pkg in "${DEB_PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$pkg")
        fi
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        return 0
    fi
    if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
        die "Debian packages missing (${missing[*]}) and not root, no sudo: install them as root"
    fi
    log "installing Debian packages: ${missing[*]}"
    quiet as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    quiet as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends "${missing[@]}"
}

python_ok() {  # usage: python_ok INTERPRETER -> true when it is Python >= 3.11 with venv
    "$1" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' \
        >/dev/null 2>&1
}

find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3 python3.13 python3.12 python3.11 /usr/bin/python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 && python_ok "$candidate"; then
            command -v "$candidate"
            return 0
        fi
    done
    die "no Python >= 3.11 with the venv module found (set PYTHON=/path/to/python3)"
}

make_venv() {
    if [ -x "$VENV/bin/python" ] \
        && "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
    then
        return 0
    fi
    if [ -e "$VENV" ]; then
        log "$VENV is broken or too old: recreating it"
        rm -rf "$VENV"
    fi
    local python
    python="$(find_python)"
    log "creating $VENV with $python"
    quiet "$python" -m venv "$VENV"
}

install_python_packages() {
    local stamp="$VENV/.bucketreel-install.sha256" digest
    digest="$(cat "$ROOT/requirements.lock" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ] \
        && [ -x "$VENV/bin/bucketreel-broker" ] && [ -x "$VENV/bin/bucketreel-agent" ]; then
        return 0
    fi
    rm -f "$stamp"
    log "installing Python packages from requirements.lock"
    quiet "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        --require-hashes -r "$ROOT/requirements.lock"
    quiet "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        --no-deps --no-build-isolation -e "$ROOT"
    printf '%s\n' "$digest" >"$stamp"
}

install_debian_packages
make_venv
install_python_packages
log "ok ($VENV)"
