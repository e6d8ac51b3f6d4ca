"""Bad configuration stops start-up with one clear message naming the variable."""

import subprocess

import pytest

from tests.conftest import PYTHON, REPO_ROOT, embedded_env, free_port


def run_manage(env, *args, timeout=60):
    return subprocess.run(
        [PYTHON, "manage.py", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize(
    "url",
    ["mysql://root@127.0.0.1/duda", "postgres://user@/", "postgres://u@h:notaport/db", "not a url at all"],
)
def test_malformed_database_url_is_one_clear_message(tmp_path, url):
    env = embedded_env(tmp_path) | {"DATABASE_URL": url, "DJANGO_SECRET_KEY": "x"}
    result = run_manage(env, "check")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: DATABASE_URL:"), result.stderr


def test_unreachable_redis_stops_serve_with_a_message(tmp_path):
    env = embedded_env(tmp_path) | {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "DJANGO_SECRET_KEY": "x"}
    result = run_manage(env, "serve", "--port", str(free_port()))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error: REDIS_URL: no Redis server answers at 127.0.0.1:")


def test_unreachable_postgres_stops_the_worker_with_a_message(tmp_path):
    url = f"postgres://duda:duda@127.0.0.1:{free_port()}/duda"
    env = embedded_env(tmp_path) | {"DATABASE_URL": url, "DJANGO_SECRET_KEY": "x"}
    result = run_manage(env, "worker")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error: DATABASE_URL: no PostgreSQL server answers at 127.0.0.1:")


def test_malformed_redis_url_is_refused(tmp_path):
    env = embedded_env(tmp_path) | {"REDIS_URL": "http://127.0.0.1:6379", "DJANGO_SECRET_KEY": "x"}
    result = run_manage(env, "check")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: REDIS_URL: expected redis://host:port/db, got 'http://127.0.0.1:6379'"


def test_production_needs_a_secret_key(tmp_path):
    env = embedded_env(tmp_path) | {"REDIS_URL": "redis://127.0.0.1:6379/0"}
    result = run_manage(env, "check")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: DJANGO_SECRET_KEY:")
