"""Live updates: one channel group per run (``run-<id>``); events are typed ``run.<what>``.

Code outside consumers publishes through :func:`publish`. With Redis (production) that is a plain
``async_to_sync(group_send)``. With the in-memory layer (embedded mode) the layer's queues belong to
the web server's event loop, and the worker is a thread of the same process: the message is handed
to that loop (captured when a socket connects) instead of being put on its queues from another thread.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer

log = logging.getLogger(__name__)

_server_loop: asyncio.AbstractEventLoop | None = None


def group_name(run_id: int) -> str:
    return f"run-{run_id}"


def remember_server_loop() -> None:
    """Called by the consumer (inside the server's loop) so in-process publishers can reach it."""
    global _server_loop
    _server_loop = asyncio.get_running_loop()


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become None (the browser gets valid JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def publish(run_id: int, event: str, payload: dict[str, Any]) -> None:
    """Send ``{"type": "run.<event>", **payload}`` to the run's group; never raises."""
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": f"run.{event}", **_clean(payload)}
    group = group_name(run_id)
    try:
        if isinstance(layer, InMemoryChannelLayer):
            loop = _server_loop
            if loop is None or loop.is_closed():
                return  # nobody has connected in this process: there is no one to tell
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                loop.create_task(layer.group_send(group, message))
            else:
                asyncio.run_coroutine_threadsafe(layer.group_send(group, message), loop).result(timeout=5)
            return
        async_to_sync(layer.group_send)(group, message)
    except Exception:  # noqa: BLE001 - live updates are best effort; the database holds the truth
        log.warning("could not publish %s to %s", event, group, exc_info=True)
