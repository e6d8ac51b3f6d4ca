#!/usr/bin/env bash
# Set-up command 2: install what the tests need (PostgreSQL, Redis, Chromium, the test packages),
# then run the linter and the whole suite against the real services. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap_venv.sh --test
scripts/ensure_services.sh
.venv/bin/ruff check .
export DATABASE_URL="${DATABASE_TEST_URL:-postgres://duda:duda@127.0.0.1:5432/duda}"
export REDIS_URL="${REDIS_TEST_URL:-redis://127.0.0.1:6379/15}"
export DJANGO_SECRET_KEY="${DJANGO_SECRET_KEY:-test-only-secret}"
exec .venv/bin/python -m pytest "$@"
