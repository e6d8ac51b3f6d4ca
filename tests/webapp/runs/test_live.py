"""Live updates never hold up the training thread: with the channel layer's Redis refusing
connections or hung, publishing returns at once and the updates are dropped; with Redis back they
arrive again, in the order they were published."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from channels.layers import get_channel_layer
from django.test import override_settings

from tests.conftest import free_port
from webapp.runs import live


def layer_at(port: int) -> dict:
    return {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                        "CONFIG": {"hosts": [{"address": f"redis://127.0.0.1:{port}/0", "socket_timeout": None}]}}}


@pytest.fixture
def hung_redis() -> Iterator[int]:
    """A port that accepts connections and never answers (a frozen Redis)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(256)
    yield server.getsockname()[1]
    server.close()


def publish_from_a_thread(count: int, limit: float) -> float:
    """Publish ``count`` updates from a thread (like the training loop); the seconds they took."""
    took: list[float] = []

    def train() -> None:
        started = time.monotonic()
        for step in range(count):
            live.publish(1, "metrics", {"step": step, "points": [{"step": step, "name": "loss", "value": 1.0}]})
        took.append(time.monotonic() - started)

    thread = threading.Thread(target=train, daemon=True)
    thread.start()
    thread.join(timeout=limit * 20)
    assert took, f"{count} publishes blocked the caller for over {limit * 20} s"
    return took[0]


def receive_published(run_id: int, steps: range) -> list[int]:
    """Join the run's group, publish ``steps`` from another thread, and return the steps received."""

    async def scenario() -> list[int]:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(live.group_name(run_id), channel)

        def publish_all() -> None:
            for step in steps:
                live.publish(run_id, "metrics", {"step": step, "points": [{"step": step, "name": "loss", "value": 1.0}]})

        await asyncio.to_thread(publish_all)
        received = []
        try:
            while len(received) < len(steps):
                message = await asyncio.wait_for(layer.receive(channel), timeout=5)
                received.extend(point["step"] for point in message["points"])  # coalesced: several a message
        finally:
            await layer.group_discard(live.group_name(run_id), channel)
        return received

    return asyncio.run(scenario())


@pytest.mark.parametrize("outage", ["refused", "hung"])
def test_publishing_never_blocks_when_redis_is_down(outage, hung_redis):
    port = free_port() if outage == "refused" else hung_redis
    with override_settings(CHANNEL_LAYERS=layer_at(port)):
        took = publish_from_a_thread(100, limit=0.5)
        assert took < 0.5, f"100 publishes took {took:.2f} s"
        assert live.flush(timeout=5), "the dropped updates were not discarded within 5 s"
    # Redis answers again: the next updates arrive, in order.
    assert receive_published(9001, range(50)) == list(range(50))


def test_updates_arrive_in_the_order_they_were_published():
    assert receive_published(9002, range(80)) == list(range(80))


def test_messages_are_numbered_and_coalesced_per_run():
    """A run publishing 400 times in a burst: its "metrics" go as a few messages whose numbers
    (first_seq..seq) follow each other with no hole, holding every point in order."""

    async def scenario() -> list[dict]:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(live.group_name(9003), channel)

        def burst() -> None:
            for step in range(1, 401):
                live.publish(9003, "metrics", {"step": step, "points": [{"step": step, "name": "loss", "value": 1.0}]})
            live.publish(9003, "status", {"status": "succeeded"})

        await asyncio.to_thread(burst)
        messages = []
        try:
            while not messages or messages[-1]["type"] != "run.status":
                messages.append(await asyncio.wait_for(layer.receive(channel), timeout=5))
        finally:
            await layer.group_discard(live.group_name(9003), channel)
        return messages

    messages = asyncio.run(scenario())
    assert len(messages) < 40, len(messages)  # 401 published; metrics joined per live.COALESCE_S
    assert len({m["epoch"] for m in messages}) == 1
    numbers = [(m["first_seq"], m["seq"]) for m in messages]
    assert numbers[0][0] == numbers[-1][1] - 400  # this group's numbers, from wherever the process was
    assert all(b[0] == a[1] + 1 for a, b in zip(numbers, numbers[1:], strict=False))  # no hole
    points = [p["step"] for m in messages[:-1] for p in m["points"]]
    assert points == list(range(1, 401))
    assert all(m["first_step"] == m["points"][0]["step"] and m["step"] == m["points"][-1]["step"] for m in messages[:-1])


def test_a_runs_message_goes_at_once_and_the_next_waits_for_the_interval(monkeypatch):
    """Coalescing throttles, it does not delay: a run quiet for COALESCE_S gets its message sent at
    once; what it publishes sooner after waits until COALESCE_S after that message and goes joined."""
    monkeypatch.setattr(live, "COALESCE_S", 2.0)  # long enough to tell apart on a loaded machine

    def publish(step: int) -> None:
        live.publish(9004, "metrics", {"step": step, "points": [{"step": step, "name": "loss", "value": 1.0}]})

    async def scenario() -> list[tuple[float, list[int]]]:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(live.group_name(9004), channel)
        started = time.monotonic()
        arrivals = []

        async def receive() -> None:
            message = await asyncio.wait_for(layer.receive(channel), timeout=10)
            arrivals.append((time.monotonic() - started, [p["step"] for p in message["points"]]))

        try:
            publish(1)
            await receive()
            publish(2)
            publish(3)
            await receive()
        finally:
            await layer.group_discard(live.group_name(9004), channel)
        return arrivals

    (first_at, first), (second_at, second) = asyncio.run(scenario())
    assert first == [1] and first_at < 1.0  # not held for the interval
    assert second == [2, 3] and second_at >= 1.9  # joined, sent one interval after the first
