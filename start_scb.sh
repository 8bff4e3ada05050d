#!/usr/bin/env bash
# Smart Community Brain: set up and start the hub, or run the test suite.
#
#   ./start_scb.sh            set up (if needed), then run the hub on embedded defaults (scb run)
#   ./start_scb.sh test [ARGS] set up (if needed), then the whole test suite (ARGS go to pytest)
#   ./start_scb.sh setup      set up only: .venv with the project and its test dependencies, node packages
#
# Needs Python 3.11+, Node 20+, npm and a C compiler. Set-up is idempotent: a stamp of the inputs is kept,
# and nothing is reinstalled while they are unchanged.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"

die() { echo "start_scb.sh: $*" >&2; exit 1; }

find_python() {
  for py in "${SCB_PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$py" ] || continue
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$py"; return 0
    fi
  done
  return 1
}

stamp_of() { cat "$@" 2>/dev/null | sha256sum | cut -d' ' -f1; }

setup_python() {
  local stamp_file="$VENV/.scb-setup-stamp"
  local want
  want=$(stamp_of setup.cfg setup.py pyproject.toml packaging/pysha3-shim/pyproject.toml mam_client/crypto/_curl.c)
  if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$want" ] && [ -x "$VENV/bin/scb" ]; then
    return 0
  fi
  local py
  py=$(find_python) || die "Python 3.11 or newer is needed (set SCB_PYTHON to its path)."
  command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 || die "a C compiler (gcc) is needed."
  echo "==> Python environment in .venv (first run takes a few minutes)"
  [ -x "$VENV/bin/python" ] || "$py" -m venv "$VENV"
  local pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
  "${pip[@]}" install 'setuptools>=61,<81' wheel
  # PyOTA 2.1.0 on Python 3.11+: the pysha3 stand-in must be installed before pyota (docs/install.md).
  "${pip[@]}" install 'phx-class-registry<5' safe-pysha3
  "${pip[@]}" install ./packaging/pysha3-shim
  "${pip[@]}" install --no-build-isolation -e '.[test]'
  echo "$want" > "$stamp_file"
}

setup_node() {
  command -v node >/dev/null 2>&1 || die "Node.js 20+ is needed."
  command -v npm >/dev/null 2>&1 || die "npm is needed."
  local stamp_file="node_modules/.scb-npm-stamp"
  local want
  want=$(stamp_of package.json package-lock.json)
  if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$want" ]; then
    return 0
  fi
  echo "==> Node packages (pinned by package-lock.json)"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp_file"
}

setup() { setup_python; setup_node; }

case "${1:-run}" in
  setup)
    setup
    echo "Set-up complete."
    ;;
  test)
    shift
    setup
    set +e
    "$VENV/bin/python" -m pytest "$@"
    rc=$?
    set -e
    if [ "$rc" -eq 5 ]; then echo "start_scb.sh: pytest collected no tests" >&2; fi
    exit "$rc"
    ;;
  run)
    [ $# -gt 0 ] && shift
    setup
    exec "$VENV/bin/scb" run "$@"
    ;;
  -h|--help|help)
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
    ;;
  *)
    die "unknown command '$1' (use: setup, test, or nothing to run the hub)"
    ;;
esac
