"""A live message lost on the way is noticed and filled: the run page (real daphne, Redis, Chromium)
sees a hole in the messages' numbers and fetches exactly the missing steps from REST, on the same
socket. The frame is dropped in the network (Playwright's websocket route), not in the app."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import pytest
from django.db import connections

from tests.browser import chromium
from tests.webapp.runs.conftest import launch
from tests.workers import support
from webapp.runs import live
from webapp.runs.services import records, worker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

NAMES = ("loss/source", "loss/target")


@pytest.fixture(autouse=True)
def fast_hashing():
    """The server process checks the password: keep Django's real hasher here."""


@pytest.fixture
def server(django_db_setup, tmp_path):
    with support.serving_stack(tmp_path, worker=False) as url:
        yield url


def test_a_dropped_message_is_detected_and_filled_without_reconnecting(server, django_user_model, monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # ORM calls between Playwright's sync calls
    user = django_user_model.objects.create_user("gaps", password="gaps-password-1")
    run = launch(user, name="gaps", iterations=40)
    claim = worker.run_claim(run_id=run.pk, worker_host="w", worker_gpu="CPU")
    url = server
    metrics_frames: list[dict] = []
    dropped: list[dict] = []
    new_epoch: list[str] = []  # a second publisher's numbering (a resumed run's new worker)
    dropped_new: list[dict] = []

    def route(ws):
        to_server = ws.connect_to_server()

        def from_server(message):
            import json

            data = json.loads(message)
            if data.get("type") == "metrics":
                metrics_frames.append(data)
                first_of_new = data["epoch"] in new_epoch and not dropped_new
                if len(metrics_frames) == 4 or first_of_new:  # the network loses these
                    (dropped_new if first_of_new else dropped).append(data)
                    return
            ws.send(message)

        to_server.on_message(from_server)

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url) if "/metrics/" in r.url else None)
        page.route_web_socket(re.compile(r".*/ws/runs/\d+/$"), route)
        page.goto(url + "/accounts/login/")
        page.fill("input[name=username]", "gaps")
        page.fill("input[name=password]", "gaps-password-1")
        page.click("button[type=submit]")
        page.wait_for_url(url + "/")
        page.goto(f"{url}/runs/{run.pk}/")
        page.wait_for_function("() => window.__duda && window.__duda.socket.connects >= 1 && window.__duda.socket.backfills >= 1")

        for step in range(1, 13):  # one report a step, apart by more than live.COALESCE_S: one message each
            records.metrics_record(run_id=run.pk, token=claim.token, points=[(step, n, step + i / 10) for i, n in enumerate(NAMES)])
            page.wait_for_timeout(int(live.COALESCE_S * 1000) + 150)  # Playwright relays frames while it waits
        live.flush()
        page.wait_for_function("() => window.__duda.store.count('loss/source') === 12 && window.__duda.socket.gaps.every((g) => g.filled)",
                               timeout=15000)
        socket = page.evaluate("() => ({connects: window.__duda.socket.connects, gaps: window.__duda.socket.gaps})")
        steps = page.evaluate("() => [window.__duda.store.series('loss/source')[0], window.__duda.store.series('loss/target')[0]]")

        # Zoom: a drag over the loss chart asks for that step range, drawn to the chart's width;
        # a double-click goes back to the whole run.
        page.wait_for_function("() => window.__duda.lossChart.pointCount === 12")
        box = page.locator("#loss-chart .u-over").bounding_box()
        y = box["y"] + box["height"] / 2
        page.mouse.move(box["x"] + box["width"] * 0.3, y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.7, y, steps=5)
        page.mouse.up()
        page.wait_for_function("() => window.__duda.lossChart.zoom !== null && window.__duda.lossChart.pointCount < 12")
        zoom = page.evaluate("() => window.__duda.lossChart.zoom")
        zoomed = [parse_qs(urlparse(u).query) for u in requests if "width=" in u and "start=" in u]
        page.dblclick("#loss-chart .u-over")
        page.wait_for_function("() => window.__duda.lossChart.zoom === null && window.__duda.lossChart.pointCount === 12")

        # A new publisher (a resumed run's worker: its own epoch, numbering from 1) whose first message
        # is lost: the socket, already receiving, expects that numbering to start at 1.
        requests_before = list(requests)
        live._sender = None
        new_epoch[:] = [live._the_sender().epoch]
        for step in range(13, 17):
            records.metrics_record(run_id=run.pk, token=claim.token, points=[(step, n, step + i / 10) for i, n in enumerate(NAMES)])
            page.wait_for_timeout(int(live.COALESCE_S * 1000) + 150)
        live.flush()
        page.wait_for_function("() => window.__duda.store.count('loss/source') === 16 && window.__duda.socket.gaps.every((g) => g.filled)",
                               timeout=15000)
        resumed = page.evaluate("() => ({connects: window.__duda.socket.connects, gaps: window.__duda.socket.gaps})")
        connections.close_all()  # inside Playwright's greenlet the ORM opened a connection of its own

    assert len(dropped) == 1 and len(metrics_frames) >= 5
    lost = dropped[0]
    assert socket["connects"] == 1  # filled on the same socket
    assert len(socket["gaps"]) == 1
    gap = socket["gaps"][0]
    assert (gap["from_seq"], gap["to_seq"]) == (lost["first_seq"], lost["seq"])
    assert steps == [list(range(1, 13))] * 2  # nothing missing
    fills = [parse_qs(urlparse(u).query) for u in requests_before if "start=" in u and "width=" not in u]
    assert len(fills) == 1
    start, end = int(fills[0]["start"][0]), int(fills[0]["end"][0])
    assert start <= lost["first_step"] and lost["step"] <= end <= lost["step"] + 1  # the hole, no more
    assert 1 < zoom["min"] < zoom["max"] < 12
    assert [(int(q["start"][0]), int(q["end"][0])) for q in zoomed] == [(zoom["min"], zoom["max"])]
    assert len(dropped_new) == 1 and dropped_new[0]["first_seq"] == 1
    assert resumed["connects"] == 1 and len(resumed["gaps"]) == 2
    assert (resumed["gaps"][1]["from_seq"], resumed["gaps"][1]["to_seq"]) == (1, dropped_new[0]["seq"])
    fills = [parse_qs(urlparse(u).query) for u in requests[len(requests_before):] if "start=" in u and "width=" not in u]
    assert [(int(q["start"][0]), int(q["end"][0])) for q in fills] == [(12, dropped_new[0]["step"] + 1)]
