"""Live updates: one channel group per run (``run-<id>``); events are typed ``run.<what>``.

Code outside consumers publishes through :func:`publish`, which never blocks its caller (the training
loop): the message goes on a bounded in-process queue, and one background thread per process sends
the queue in order, each send bounded by :data:`SEND_TIMEOUT_S`. When the layer cannot take a message
(Redis down or hung), that message and the backlog behind it are dropped: the rows are in the
database, and the browser backfills from the REST API when its socket comes back.

Every message carries ``seq``, a number per run counted where it is published (one per ``publish``
call), and ``epoch``, the publishing process's id; a message missing anywhere (this queue full, the
layer down, Redis's per-socket capacity) leaves a hole in the numbers, which the browser fills from
the REST API by step range without reconnecting. "metrics" messages of a run are coalesced: those
published within :data:`COALESCE_S` go as one message (points joined, ``first_seq``..``seq``,
``first_step``..``step``), so the number of messages does not grow with the logging rate.

With Redis (production) the sender thread runs its own event loop. With the in-memory layer
(embedded mode) the layer's queues belong to the web server's event loop, and the worker is a thread
of the same process: the message is handed to that loop (captured when a socket connects).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import math
import os
import queue
import threading
import time
import uuid
from typing import Any

from channels.layers import InMemoryChannelLayer, get_channel_layer

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 1.0  # the longest one send may take before the message is dropped
QUEUE_SIZE = 1000  # messages waiting to be sent; more are dropped (a run publishes ~10 a second)
COALESCE_S = 0.1  # a run's "metrics" messages within this long go as one: at most 10 a second per run

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


class _Sender:
    """The process's queue of outgoing messages and the daemon thread that sends them in order."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.epoch = uuid.uuid4().hex[:12]  # this process's numbering: the browser keeps one count per epoch
        self.queue: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue(maxsize=QUEUE_SIZE)
        self.seq: dict[str, int] = {}  # group -> the last number given
        self.seq_lock = threading.Lock()
        self.pending: dict[str, dict[str, Any]] = {}  # group -> its coalesced "metrics" message (sender thread)
        self.due = 0.0  # when the pending messages go
        self.sending = False  # a message is on its way (taken from the queue or pending, not yet sent)
        self.failing = False  # the last send failed: warn once per outage, not once per message
        self.thread = threading.Thread(target=self._run, name="live-publisher", daemon=True)
        self.thread.start()

    def put(self, group: str, message: dict[str, Any]) -> None:
        with self.seq_lock:  # numbered here, before anything can drop it: every loss leaves a hole
            seq = self.seq[group] = self.seq.get(group, 0) + 1
        message["seq"] = message["first_seq"] = seq
        message["epoch"] = self.epoch
        try:
            self.queue.put_nowait((group, message))
        except queue.Full:
            log.debug("live update queue full: dropped %s to %s", message["type"], group)

    def flush(self, timeout: float) -> bool:
        """Wait until every queued message was sent or dropped; False if that took over ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.queue.unfinished_tasks or self.pending or self.sending:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        while True:
            wait = max(0.0, self.due - time.monotonic()) if self.pending else None
            try:
                group, message = self.queue.get(timeout=wait)
            except queue.Empty:
                self._send_pending(loop)
                continue
            try:
                if message["type"] == "run.metrics":
                    self._coalesce(group, message)
                else:
                    self._send_pending(loop, group)  # the run's earlier points go first: order is kept
                    self._deliver(loop, group, message)
            finally:
                self.queue.task_done()
            if self.pending and time.monotonic() >= self.due:
                self._send_pending(loop)

    def _coalesce(self, group: str, message: dict[str, Any]) -> None:
        points = message.get("points") or []
        held = self.pending.get(group)
        if held is None:
            if not self.pending:
                self.due = time.monotonic() + COALESCE_S
            first_step = min((p["step"] for p in points), default=message.get("step"))
            self.pending[group] = {**message, "points": list(points), "first_step": first_step}
            return
        held["points"].extend(points)
        held["seq"] = message["seq"]
        if message.get("step") is not None:
            held["step"] = max(held.get("step") or 0, message["step"])
        if message.get("progress") is not None:
            held["progress"] = message["progress"]
        for key, value in message.items():  # anything else: the latest value
            if key not in held:
                held[key] = value

    def _send_pending(self, loop: asyncio.AbstractEventLoop, group: str | None = None) -> None:
        groups = [group] if group is not None else list(self.pending)
        for name in groups:
            self.sending = True  # before it leaves pending: flush() sees one or the other
            message = self.pending.pop(name, None)
            if message is not None:
                self._deliver(loop, name, message)
            self.sending = False

    def _deliver(self, loop: asyncio.AbstractEventLoop, group: str, message: dict[str, Any]) -> None:
        self.sending = True
        try:
            sent = self._send(loop, group, message)
        except Exception:  # noqa: BLE001 - a live update is best effort; the database holds the truth
            sent = False
            if not self.failing:
                log.warning("could not publish %s to %s; dropping live updates until the layer answers",
                            message["type"], group, exc_info=True)
        finally:
            self.sending = False
        if sent is False:
            self.failing = True
            self._drop_backlog()
        elif sent:
            if self.failing:
                log.info("live updates are delivered again")
            self.failing = False

    def _send(self, loop: asyncio.AbstractEventLoop, group: str, message: dict[str, Any]) -> bool | None:
        """True: sent; None: nobody to tell (no layer, or no socket in this embedded process)."""
        layer = get_channel_layer()
        if layer is None:
            return None
        if isinstance(layer, InMemoryChannelLayer):
            server = _server_loop
            if server is None or server.is_closed():
                return None
            asyncio.run_coroutine_threadsafe(layer.group_send(group, message), server).result(timeout=SEND_TIMEOUT_S)
            return True
        loop.run_until_complete(asyncio.wait_for(layer.group_send(group, message), timeout=SEND_TIMEOUT_S))
        return True

    def _drop_backlog(self) -> None:
        """The layer did not take the last message: those queued behind it would wait for nothing."""
        self.pending.clear()
        while True:
            try:
                self.queue.get_nowait()
            except queue.Empty:
                return
            self.queue.task_done()


_sender: _Sender | None = None
_sender_lock = threading.Lock()


def _the_sender() -> _Sender:
    """This process's sender, started on first use (again in a forked child, whose thread is gone)."""
    global _sender
    sender = _sender
    if sender is None or sender.pid != os.getpid():
        with _sender_lock:
            if _sender is None or _sender.pid != os.getpid():
                _sender = _Sender()
            sender = _sender
    return sender


def publish(run_id: int, event: str, payload: dict[str, Any]) -> None:
    """Queue ``{"type": "run.<event>", **payload}`` for the run's group; never blocks, never raises."""
    try:
        message = {"type": f"run.{event}", **_clean(payload)}
        _the_sender().put(group_name(run_id), message)
    except Exception:  # noqa: BLE001 - live updates are best effort
        log.warning("could not queue %s for run %s", event, run_id, exc_info=True)


def flush(timeout: float = 2.0) -> bool:
    """Wait (at most ``timeout`` seconds) until what this process published was sent or dropped."""
    sender = _sender
    if sender is None or sender.pid != os.getpid():
        return True
    return sender.flush(timeout)


atexit.register(flush)  # a worker or CLI that exits right after a run still sends its last updates
