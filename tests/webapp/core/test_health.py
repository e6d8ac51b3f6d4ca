"""``/health/`` reports the database, the Celery broker and the channel layer, each with its own
status, and answers 503 as soon as one of them is down (within a bounded time, even if Redis hangs)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def hung_redis() -> Iterator[int]:
    """A port that accepts connections and never answers (a frozen Redis)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield server.getsockname()[1]
    server.close()


def point_redis_at(settings, port: int) -> None:
    url = f"redis://127.0.0.1:{port}/0"
    settings.CELERY_BROKER_URL = url
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                           "CONFIG": {"hosts": [{"address": url, "socket_timeout": None}]}}}


def test_every_dependency_up(client):
    response = client.get("/health/")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {
        "database": {"status": "ok", "backend": "postgresql"},
        "broker": {"status": "ok", "backend": "redis"},
        "channel_layer": {"status": "ok", "backend": "redis"},
    }}


@pytest.mark.parametrize("outage", ["refused", "hung"])
def test_redis_down_is_a_503_naming_it(client, settings, outage, hung_redis):
    point_redis_at(settings, free_port() if outage == "refused" else hung_redis)
    started = time.monotonic()
    response = client.get("/health/")
    took = time.monotonic() - started
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["checks"]["database"] == {"status": "ok", "backend": "postgresql"}
    for name in ("broker", "channel_layer"):
        assert body["checks"][name]["status"] == "error"
        assert body["checks"][name]["error"]
    assert took < 5, f"the probe took {took:.1f} s"

