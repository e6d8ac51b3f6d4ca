#!/usr/bin/env bash
# Set-up command 1: install into .venv and run the whole app on embedded defaults
# (SQLite, a filesystem task queue, an in-process worker, the bundled toy benchmarks).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap_venv.sh
exec env -u DATABASE_URL -u REDIS_URL .venv/bin/python manage.py demo --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}" "$@"
