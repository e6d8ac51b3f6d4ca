"""Embedded mode: daphne and a Celery worker thread in one process (no PostgreSQL or Redis).

Channels' in-memory layer only reaches consumers in its own process, so the embedded worker runs
inside the web process: it still takes its tasks from a real broker (kombu's filesystem transport,
which survives restarts), and its live updates reach the browser through the in-memory layer.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

log = logging.getLogger(__name__)


def start_embedded_worker() -> threading.Thread:
    """Start one solo Celery worker in a daemon thread of this process."""
    from django.conf import settings

    from webapp.celery_app import TRAINING_QUEUE, app, load_worker_tasks

    load_worker_tasks()

    # kombu's filesystem transport needs its folders before the consumer declares its queue.
    options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {})
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        if options.get(key):
            Path(options[key]).mkdir(parents=True, exist_ok=True)
    worker = app.WorkController(
        hostname="embedded@localhost",
        queues=[TRAINING_QUEUE],  # the reaper runs in its own thread here (no beat)
        pool_cls="solo",
        concurrency=1,
        prefetch_multiplier=1,
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
    )
    thread = threading.Thread(target=worker.start, name="embedded-celery-worker", daemon=True)
    thread.start()
    log.info("embedded Celery worker started")
    start_reaper_thread()
    return thread


def start_reaper_thread(interval: float | None = None) -> threading.Thread:
    """The reaper (runs whose worker stopped beating, queued runs whose message was lost): once now,
    then every ``interval`` seconds (what Celery beat and the maintenance worker do in production; here
    the web process has the only worker)."""
    from django.conf import settings
    from django.db import close_old_connections

    every = interval if interval is not None else float(getattr(settings, "RUN_REAP_INTERVAL_S", 60))

    def loop() -> None:
        from webapp.runs.services.reaper import run_reap_stale

        stop = threading.Event()
        while True:
            try:
                run_reap_stale()
            except Exception:  # noqa: BLE001 - keep reaping whatever one pass hit
                log.exception("stale-run reaper failed")
            finally:
                close_old_connections()
            stop.wait(every)

    thread = threading.Thread(target=loop, name="stale-run-reaper", daemon=True)
    thread.start()
    return thread


SWITCH_INTERVAL_S = 0.001


def run_daphne(host: str, port: int) -> None:
    """Serve the ASGI application until interrupted.

    The server's threads (the event loop, each request's view) share one GIL; a thread that gives it
    up for I/O (every database round trip) waits up to the switch interval to get it back from a
    thread that computes. At 1 ms instead of Python's 5, a light request does not queue for
    several 5 ms turns behind a heavy one (a compare, a long curve)."""
    import sys

    from daphne.endpoints import build_endpoint_description_strings
    from daphne.server import Server

    from webapp.asgi import application

    sys.setswitchinterval(SWITCH_INTERVAL_S)
    Server(
        application=application,
        endpoints=build_endpoint_description_strings(host=host, port=port),
        signal_handlers=True,
    ).run()
