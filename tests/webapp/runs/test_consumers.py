"""The run's websocket through the real Redis channel layer: access before accept, idle sockets,
throttled publishing, and reconnect + REST backfill without gaps or duplicates."""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import connections
from django.test import Client

from tests.webapp.runs.conftest import launch
from webapp.asgi import application
from webapp.runs import live
from webapp.runs.models import MetricPoint
from webapp.runs.services import worker
from workers.callbacks import RunCallbacks

pytestmark = pytest.mark.django_db(transaction=True)


def session_headers(user) -> list[tuple[bytes, bytes]]:
    client = Client()
    client.force_login(user)
    session = client.cookies["sessionid"].value
    return [(b"origin", b"http://testserver"), (b"host", b"testserver"), (b"cookie", f"sessionid={session}".encode())]


def socket(run_id: int, headers) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, f"/ws/runs/{run_id}/", headers=headers)


def run_async(coro):
    async def wrapper():
        try:
            return await coro
        finally:
            await sync_to_async(connections.close_all)()
    return asyncio.run(wrapper())


async def receive_until(communicator, predicate, timeout: float = 10.0) -> list[dict]:
    messages = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            message = await communicator.receive_json_from(timeout=max(0.05, deadline - time.monotonic()))
        except TimeoutError:
            break
        messages.append(message)
        if predicate(message):
            return messages
    raise AssertionError(f"no matching message; got {messages}")


def test_the_layer_is_redis():
    assert type(get_channel_layer()).__module__.startswith("channels_redis")


def test_access_is_checked_before_accepting(alice, bob, staff):
    run = launch(alice)

    async def scenario():
        results = {}
        for name, headers in (("anonymous", [(b"origin", b"http://testserver"), (b"host", b"testserver")]),
                              ("bob", session_headers_bob), ("missing", session_headers_alice)):
            target = run.pk if name != "missing" else run.pk + 1000
            communicator = socket(target, headers)
            connected, _ = await communicator.connect()
            results[name] = connected
            await communicator.disconnect()
        for name, headers in (("alice", session_headers_alice), ("staff", session_headers_staff)):
            communicator = socket(run.pk, headers)
            connected, _ = await communicator.connect()
            results[name] = connected
            hello = await communicator.receive_json_from(timeout=5)
            assert hello == {"type": "hello", "run": run.pk}
            await communicator.disconnect()
        no_origin = socket(run.pk, [h for h in session_headers_alice if h[0] != b"origin"])
        results["no origin"] = (await no_origin.connect())[0]
        return results

    session_headers_alice, session_headers_bob, session_headers_staff = (
        session_headers(alice), session_headers(bob), session_headers(staff))
    results = run_async(scenario())
    assert results == {"anonymous": False, "bob": False, "missing": False, "alice": True, "staff": True, "no origin": False}


def test_an_idle_socket_still_gets_messages(alice):
    """More than 10 s without traffic (redis-py's 5 s socket timeout would have closed it)."""
    run = launch(alice)
    claim = worker.run_claim(run_id=run.pk, worker_host="w", worker_gpu="CPU")
    headers = session_headers(alice)

    async def scenario():
        communicator = socket(run.pk, headers)
        assert (await communicator.connect())[0]
        await communicator.receive_json_from(timeout=5)  # hello
        await asyncio.sleep(11)
        def one_step() -> None:
            callbacks = RunCallbacks(run.pk, claim.token)
            callbacks.on_metrics(1, {"loss/source": 2.5})
            callbacks.close()
            connections.close_all()

        await asyncio.to_thread(one_step)
        messages = await receive_until(communicator, lambda m: m["type"] == "metrics", timeout=5)
        await communicator.disconnect()
        return messages[-1]

    message = run_async(scenario())
    assert message["step"] == 1 and message["points"] == [{"step": 1, "name": "loss/source", "value": 2.5}]


def test_publishing_is_throttled_and_every_point_is_stored(alice):
    run = launch(alice, iterations=300)
    claim = worker.run_claim(run_id=run.pk, worker_host="w", worker_gpu="CPU")
    headers = session_headers(alice)

    def train_fast() -> float:
        callbacks = RunCallbacks(run.pk, claim.token)
        callbacks.on_start(300, 0)
        started = time.monotonic()
        for step in range(1, 301):
            callbacks.on_metrics(step, {"loss/source": 1.0 / step, "lr": 1e-4})
            time.sleep(0.003)
        callbacks.close()
        connections.close_all()
        return time.monotonic() - started

    async def scenario():
        communicator = socket(run.pk, headers)
        assert (await communicator.connect())[0]
        await communicator.receive_json_from(timeout=5)
        elapsed = await asyncio.to_thread(train_fast)
        messages = await receive_until(communicator, lambda m: m["type"] == "metrics" and m["step"] == 300, timeout=10)
        await communicator.disconnect()
        return elapsed, [m for m in messages if m["type"] == "metrics"]

    elapsed, messages = run_async(scenario())
    assert MetricPoint.objects.filter(run=run).count() == 600  # every point stored
    received = [(p["step"], p["name"]) for m in messages for p in m["points"]]
    assert sorted(received) == sorted({(s, n) for s in range(1, 301) for n in ("loss/source", "lr")})
    assert len(messages) <= elapsed * 10 + 3, (len(messages), elapsed)  # at most ~10 messages a second
    assert all(m["step"] == max(p["step"] for p in m["points"]) for m in messages)  # each carries its step


def test_reconnect_and_backfill_leave_no_gap_and_no_duplicate(alice):
    from rest_framework.test import APIClient

    run = launch(alice, iterations=30)
    claim = worker.run_claim(run_id=run.pk, worker_host="w", worker_gpu="CPU")
    headers = session_headers(alice)
    api = APIClient()
    api.force_login(alice)
    callbacks = RunCallbacks(run.pk, claim.token)
    names = ("loss/source", "loss/target")

    def steps(first: int, last: int) -> None:
        for step in range(first, last + 1):
            callbacks.on_metrics(step, {name: step + i / 10 for i, name in enumerate(names)})
            time.sleep(0.02)
        callbacks.close()
        live.flush()  # sent (points are coalesced for up to live.COALESCE_S) before the test goes on
        connections.close_all()

    async def scenario():
        client: dict[tuple[int, str], float] = {}  # what the browser's MetricStore holds
        raw: list[tuple[int, str]] = []

        def take(points):
            for p in points:
                raw.append((p["step"], p["name"]))
                client[(p["step"], p["name"])] = p["value"]

        first = socket(run.pk, headers)
        assert (await first.connect())[0]
        await first.receive_json_from(timeout=5)
        await asyncio.to_thread(steps, 1, 10)
        for m in await receive_until(first, lambda m: m.get("step") == 10):
            take(m.get("points", []))
        await first.disconnect()  # the network drops

        await asyncio.to_thread(steps, 11, 20)  # stored and published while nobody listens

        second = socket(run.pk, headers)
        assert (await second.connect())[0]
        await second.receive_json_from(timeout=5)
        last = max(step for step, _ in client)
        backfill = await sync_to_async(lambda: api.get(f"/api/runs/{run.pk}/metrics/?since={last - 1}").json())()
        assert backfill["next"] is None and not backfill["downsampled"]
        take([{"step": step, "name": name, "value": value} for name, column in backfill["series"].items()
              for step, value in zip(column["step"], column["value"], strict=True)])
        await asyncio.to_thread(steps, 21, 30)
        for m in await receive_until(second, lambda m: m.get("step") == 30):
            take(m.get("points", []))
        await second.disconnect()
        return client, raw, last

    client, raw, last = run_async(scenario())
    expected = {(s, n) for s in range(1, 31) for n in names}
    assert set(client) == expected  # no gap
    stored = {(p.step, p.name): p.value for p in MetricPoint.objects.filter(run=run)}
    assert client == stored
    overlap = len(raw) - len(set(raw))
    assert overlap <= len(names)  # only the boundary step is asked for again, and the store keeps one
    assert last == 10


def test_frames_that_are_not_a_ping_are_ignored(alice):
    """The socket only answers {"type": "ping"}: a frame that is no JSON, JSON nested past the parser's
    limit or a binary frame is ignored (it was an unhandled exception that closed the socket)."""
    run = launch(alice)
    headers = session_headers(alice)

    async def scenario():
        communicator = socket(run.pk, headers)
        connected, _ = await communicator.connect()
        assert connected
        assert (await communicator.receive_json_from())["type"] == "hello"
        for frame in ("{", "[" * 100_000 + "]" * 100_000, '"x"', "[]"):
            await communicator.send_to(text_data=frame)
        await communicator.send_to(bytes_data=b"\x00")
        await communicator.send_json_to({"type": "ping"})
        assert await communicator.receive_json_from(timeout=5) == {"type": "pong"}
        await communicator.disconnect()

    run_async(scenario())
