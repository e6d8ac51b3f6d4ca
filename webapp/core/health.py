"""Readiness of each service the web app depends on: the database, the Celery broker and the channel
layer. Each check answers within :data:`CHECK_TIMEOUT_S` and raises on failure."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import redis
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings
from django.db import connection
from kombu import Connection
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 1.0


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return connection.vendor


def check_broker() -> str:
    """Connect to the Celery broker as a worker would (the embedded queue: its folders exist)."""
    url = settings.CELERY_BROKER_URL
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    if url.startswith("filesystem://"):
        for key in ("data_folder_in", "processed_folder", "control_folder"):
            if not Path(options[key]).is_dir():
                raise RuntimeError(f"the queue folder {options[key]} is missing")
        return "filesystem"
    transport = {**options, "socket_timeout": CHECK_TIMEOUT_S, "socket_connect_timeout": CHECK_TIMEOUT_S}
    with Connection(url, connect_timeout=CHECK_TIMEOUT_S, transport_options=transport) as broker:
        broker.ensure_connection(max_retries=1, interval_start=0, timeout=CHECK_TIMEOUT_S)
        return broker.transport_cls


def check_channel_layer() -> str:
    """PING every Redis host of the channel layer (the in-memory layer lives in this process)."""
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer is configured")
    if isinstance(layer, InMemoryChannelLayer):
        return "in-memory"
    for host in layer.hosts:
        options = {k: v for k, v in host.items() if k != "address"}
        options.update(socket_timeout=CHECK_TIMEOUT_S, socket_connect_timeout=CHECK_TIMEOUT_S, retry=Retry(NoBackoff(), 0))
        client = redis.Redis.from_url(host["address"], **options) if "address" in host else redis.Redis(**options)
        try:
            client.ping()
        finally:
            client.close()
    return "redis"


CHECKS: dict[str, Callable[[], str]] = {
    "database": check_database,
    "broker": check_broker,
    "channel_layer": check_channel_layer,
}


def health_report() -> tuple[bool, dict[str, dict[str, str]]]:
    """``(all ok, {name: {"status": "ok", "backend": ...} or {"status": "error", "error": ...}})``."""
    report: dict[str, dict[str, str]] = {}
    for name, check in CHECKS.items():
        try:
            report[name] = {"status": "ok", "backend": check()}
        except Exception as error:  # noqa: BLE001 - a probe reports every failure, whatever its type
            log.warning("health check %s failed: %s", name, error)
            report[name] = {"status": "error", "error": f"{type(error).__name__}: {error}"[:300]}
    return all(entry["status"] == "ok" for entry in report.values()), report
