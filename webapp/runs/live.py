"""Live updates: one channel group per run (``run-<id>``); events are typed ``run.<what>``.

Code outside consumers publishes through :func:`publish`, which never blocks its caller (the training
loop): the message goes on a bounded in-process queue, and one background thread per process sends
the queue in order, each send bounded by :data:`SEND_TIMEOUT_S`. When the layer cannot take a message
(Redis down or hung), that message and the backlog behind it are dropped: the rows are in the
database, and the browser backfills from the REST API when its socket comes back.

Every message carries ``seq``, a number per run counted where it is published (one per ``publish``
call), and ``epoch``, the publishing process's id; a message missing anywhere (this queue full, the
layer down, Redis's per-socket capacity) leaves a hole in the numbers, which the browser fills from
the REST API by step range without reconnecting. "metrics" messages of a run are coalesced: a run's
message goes at once when its last one is :data:`COALESCE_S` old, and those published sooner wait
for that moment and go as one (points joined, ``first_seq``..``seq``, ``first_step``..``step``), so
a run sends at most 1 / COALESCE_S messages a second whatever its logging rate. The messages due
together (several runs of one process) are sent side by side, not one after another.

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

SEND_TIMEOUT_S = 1.0  # the longest one send may take before its messages are dropped
QUEUE_SIZE = 1000  # messages waiting to be sent; more are dropped (a run publishes ~10 a second)
COALESCE_S = 0.1  # a run's "metrics" messages go at most this often (10 a second), joined
DRAIN_AT_ONCE = 200  # messages taken from the queue before the due ones are sent

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
        self.due: dict[str, float] = {}  # group -> when its pending message goes
        self.last_sent: dict[str, float] = {}  # group -> when its last "metrics" message went
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
            wait = max(0.0, min(self.due.values()) - time.monotonic()) if self.due else None
            try:
                item = self.queue.get(timeout=wait)
            except queue.Empty:
                item = None
            taken = 0
            while item is not None:  # take the messages waiting (a burst goes out merged), not forever
                group, message = item
                taken += 1
                try:
                    if message["type"] == "run.metrics":
                        self._coalesce(group, message)
                    else:
                        self._deliver(loop, [*self._take_pending([group]), (group, message)])  # earlier points first
                finally:
                    self.queue.task_done()
                try:
                    item = self.queue.get_nowait() if taken < DRAIN_AT_ONCE else None
                except queue.Empty:
                    item = None
            now = time.monotonic()
            self._deliver(loop, self._take_pending([group for group, due in self.due.items() if due <= now]))

    def _coalesce(self, group: str, message: dict[str, Any]) -> None:
        """Hold a "metrics" message until its run's last one is COALESCE_S old (at once if it is),
        joining those that come meanwhile."""
        points = message.get("points") or []
        held = self.pending.get(group)
        if held is None:
            first_step = min((p["step"] for p in points), default=message.get("step"))
            self.pending[group] = {**message, "points": list(points), "first_step": first_step}
            self.due[group] = self.last_sent.get(group, -math.inf) + COALESCE_S
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

    def _take_pending(self, groups: list[str]) -> list[tuple[str, dict[str, Any]]]:
        self.sending = True  # before they leave pending: flush() sees one or the other
        taken = []
        now = time.monotonic()
        for group in groups:
            message = self.pending.pop(group, None)
            self.due.pop(group, None)
            if message is not None:
                taken.append((group, message))
                self.last_sent[group] = now
        if len(self.last_sent) > 4 * len(self.pending) + 100:  # forget runs that went quiet
            self.last_sent = {g: t for g, t in self.last_sent.items() if now - t < COALESCE_S}
        return taken

    def _deliver(self, loop: asyncio.AbstractEventLoop, messages: list[tuple[str, dict[str, Any]]]) -> None:
        """Send messages to their groups at once (one round of the layer's requests, not one per message)."""
        if not messages:
            self.sending = False
            return
        self.sending = True
        try:
            sent = self._send(loop, messages)
        except Exception:  # noqa: BLE001 - a live update is best effort; the database holds the truth
            sent = False
            if not self.failing:
                log.warning("could not publish %s to %s; dropping live updates until the layer answers",
                            messages[0][1]["type"], messages[0][0], exc_info=True)
        finally:
            self.sending = False
        if sent is False:
            self.failing = True
            self._drop_backlog()
        elif sent:
            if self.failing:
                log.info("live updates are delivered again")
            self.failing = False

    def _send(self, loop: asyncio.AbstractEventLoop, messages: list[tuple[str, dict[str, Any]]]) -> bool | None:
        """True: sent; None: nobody to tell (no layer, or no socket in this embedded process)."""
        layer = get_channel_layer()
        if layer is None:
            return None

        async def send_all() -> None:  # a group's messages in order, the groups side by side
            by_group: dict[str, list[dict[str, Any]]] = {}
            for group, message in messages:
                by_group.setdefault(group, []).append(message)

            async def send_group(group: str, ordered: list[dict[str, Any]]) -> None:
                for message in ordered:
                    await layer.group_send(group, message)

            await asyncio.gather(*(send_group(group, ordered) for group, ordered in by_group.items()))

        if isinstance(layer, InMemoryChannelLayer):
            server = _server_loop
            if server is None or server.is_closed():
                return None
            asyncio.run_coroutine_threadsafe(send_all(), server).result(timeout=SEND_TIMEOUT_S)
            return True
        loop.run_until_complete(asyncio.wait_for(send_all(), timeout=SEND_TIMEOUT_S))
        return True

    def _drop_backlog(self) -> None:
        """The layer did not take the last messages: those queued behind them would wait for nothing."""
        self.pending.clear()
        self.due.clear()
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
