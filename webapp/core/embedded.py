"""Embedded mode: daphne and a Celery worker thread in one process (no PostgreSQL or Redis).

Channels' in-memory layer only reaches consumers in its own process, so the embedded worker runs
inside the web process: it still takes its tasks from a real broker (kombu's filesystem transport,
which survives restarts), and its live updates reach the browser through the in-memory layer.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


def start_embedded_worker() -> threading.Thread:
    """Start one solo Celery worker in a daemon thread of this process."""
    from workers.celery_app import app

    worker = app.WorkController(
        hostname="embedded@localhost",
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
    return thread


def run_daphne(host: str, port: int) -> None:
    """Serve the ASGI application until interrupted."""
    from daphne.endpoints import build_endpoint_description_strings
    from daphne.server import Server

    from webapp.asgi import application

    Server(
        application=application,
        endpoints=build_endpoint_description_strings(host=host, port=port),
        signal_handlers=True,
    ).run()
