"""How long a worker may stay silent, how often it beats, how long a queued run waits before it is
sent again, and how many claims a run gets (each from settings, with its default)."""

from __future__ import annotations

from django.conf import settings


def heartbeat_interval_s() -> float:
    return float(getattr(settings, "RUN_HEARTBEAT_INTERVAL_S", 10))


def stale_after_s() -> float:
    return float(getattr(settings, "RUN_STALE_AFTER_S", 120))


def max_attempts() -> int:
    return int(getattr(settings, "RUN_MAX_ATTEMPTS", 3))


def requeue_after_s() -> float:
    return float(getattr(settings, "RUN_REQUEUE_AFTER_S", 120))
