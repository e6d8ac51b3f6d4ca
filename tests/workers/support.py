"""Processes for the end-to-end tests: Celery workers and a daphne server on the test database."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import redis
from django.db import connection

from tests.conftest import PYTHON, REPO_ROOT

# A tiny toy run: seconds on two CPU cores. Rare class sampling off: its statistics take a minute
# the first time and are not what these tests are about.
TINY = {
    "benchmark": "toy_gta2real",
    "student": "mit_b0",
    "iterations": 8,
    "crop_size": [64, 64],
    "batch_size": 1,
    "num_workers": 0,
    "eval_interval": 4,
    "checkpoint_interval": 4,
    "log_interval": 1,
    "max_val_images": 4,
    "num_samples": 2,
    "device": "cpu",
    "overrides": {"self_training.rare_class_sampling": False},
}


def test_database_url() -> str:
    """DATABASE_URL of pytest-django's test database (what worker and server processes must use)."""
    s = connection.settings_dict
    return (f"postgres://{s['USER']}:{s['PASSWORD'] or ''}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"
            f"?application_name={APPLICATION_NAME}")


APPLICATION_NAME = "duda-test-subprocess"  # how the started processes' database sessions are told apart


def process_env(data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": test_database_url(),
        "REDIS_URL": os.environ["REDIS_URL"],
        "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY", "test-only-secret"),
        "DUDA_DATA_DIR": str(data_dir),
        "DUDA_HEARTBEAT_INTERVAL_S": "1",
        "DUDA_STALE_AFTER_S": "4",
        "DUDA_REAP_INTERVAL_S": "2",
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",  # two cores: the test, the server and the browser need the other
    })
    return env


def purge_queue() -> None:
    """Drop messages other tests (or an earlier session) left in the test broker."""
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    client.delete("celery", "maintenance", "unacked", "unacked_index", "unacked_mutex")


def start_worker(data_dir: Path, log_path: Path, *options: str) -> subprocess.Popen:
    """A training worker (``manage.py worker``), once it is ready."""
    return start_celery_process(data_dir, log_path, "worker", "--loglevel", "INFO", *options)


def start_maintenance(data_dir: Path, log_path: Path) -> subprocess.Popen:
    """Celery beat and the light worker of the maintenance queue (``manage.py maintenance``), once ready."""
    return start_celery_process(data_dir, log_path, "maintenance", "--schedule", str(data_dir / "celerybeat-schedule"))


def start_celery_process(data_dir: Path, log_path: Path, *command: str) -> subprocess.Popen:
    log = open(log_path, "ab")  # noqa: SIM115 - closed by stop()
    process = subprocess.Popen(
        [PYTHON, "manage.py", *command],
        cwd=REPO_ROOT, env=process_env(data_dir), stdout=log, stderr=subprocess.STDOUT,
    )
    process.log_file = log  # type: ignore[attr-defined]
    process.log_path = log_path  # type: ignore[attr-defined]
    wait_for(lambda: b"ready." in log_path.read_bytes() or process.poll() is not None, 90, f"{command[0]} start")
    assert process.poll() is None, log_path.read_text()[-3000:]
    return process


def start_server(data_dir: Path, port: int, log_path: Path) -> subprocess.Popen:
    from tests.conftest import wait_for_http

    log = open(log_path, "ab")  # noqa: SIM115 - closed by stop()
    process = subprocess.Popen(
        [PYTHON, "manage.py", "serve", "--port", str(port)],
        cwd=REPO_ROOT, env=process_env(data_dir), stdout=log, stderr=subprocess.STDOUT,
    )
    process.log_file = log  # type: ignore[attr-defined]
    wait_for_http(f"http://127.0.0.1:{port}/health/", timeout=60, process=process)
    return process


def wait_until_disconnected(timeout: float = 10.0) -> None:
    """After stopping the processes: wait until none of their database sessions is left (a stopped
    process's backend may linger a moment, and pytest-django cannot drop the database while it does)."""
    import psycopg

    s = connection.settings_dict
    with psycopg.connect(host=s["HOST"] or "127.0.0.1", port=s["PORT"] or 5432, user=s["USER"],
                         password=s["PASSWORD"] or None, dbname=s["NAME"], autocommit=True) as db:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            (left,) = db.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s",
                [APPLICATION_NAME],
            ).fetchone()
            if not left:
                return
            time.sleep(0.2)
    raise AssertionError("the stopped processes still hold database sessions")


def stop(process: subprocess.Popen, kill: bool = False) -> None:
    if process.poll() is None:
        if kill:
            process.kill()
        else:
            process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    log = getattr(process, "log_file", None)
    if log is not None:
        log.close()


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def ensure_toy_data() -> None:
    """Generate the toy domains the tiny runs use once, into the shared cache (DUDA_TOY_CACHE)."""
    from duda_engine.toy.domains import ensure_toy_domain

    for domain, splits in (("synthetic_a", ("train",)), ("real", ("train", "val"))):
        for split in splits:
            ensure_toy_domain(domain, "demo", split)


def queue_length() -> int:
    return redis.Redis.from_url(os.environ["REDIS_URL"]).llen("celery")


@contextlib.contextmanager
def broker_unreachable() -> Iterator[None]:
    """This process's Celery app sends its messages to a closed port: the broker is down for it alone
    (the shared Redis server keeps serving everyone else)."""
    from webapp.celery_app import app

    saved = app.conf.broker_write_url, app._pool, app.amqp._producer_pool
    app.conf.broker_write_url = "redis://127.0.0.1:1/0"
    app._pool, app.amqp._producer_pool = None, None
    try:
        yield
    finally:
        app.conf.broker_write_url, app._pool, app.amqp._producer_pool = saved


@contextlib.contextmanager
def serving_stack(data_dir: Path, worker: bool = True) -> Iterator[str]:
    """A web server (and a training worker unless ``worker`` is false) on ``data_dir`` with an empty
    queue; yields the server's URL."""
    from tests.conftest import free_port

    purge_queue()
    port = free_port()
    server = start_server(data_dir, port, data_dir / "server.log")
    trainer = start_worker(data_dir, data_dir / "worker.log") if worker else None
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        if trainer is not None:
            stop(trainer)
        stop(server)
        purge_queue()
        wait_until_disconnected()
