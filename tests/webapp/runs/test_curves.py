"""Curves at any length: a curve longer than any page arrives whole through its pages; a curve drawn
to a width keeps each bucket's min and max; JSON answers are gzipped (pages are not); the queries
behind them run on the indexes made for them (EXPLAIN)."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from django.db import connection

from tests.webapp.runs.conftest import launch
from webapp.runs import curves, selectors
from webapp.runs.models import CurveBlock, MetricPoint, Run

pytestmark = pytest.mark.django_db

LONG = selectors.METRIC_PAGE_LIMIT + 12_345  # longer than one page


def store_curve(run: Run, name: str, values: np.ndarray, first_step: int = 1) -> None:
    curves.store_points(run.pk, [(first_step + i, name, float(v)) for i, v in enumerate(values)])


def test_a_curve_longer_than_a_page_arrives_whole_through_its_pages(api, alice):
    run = launch(alice)
    values = np.random.default_rng(0).normal(size=LONG)
    store_curve(run, "loss/source", values)
    store_curve(run, "lr", np.full(100, 1e-4), first_step=LONG - 99)  # the last 100 steps hold two names
    steps: list[int] = []
    got: list[float] = []
    since, pages = None, 0
    while True:
        data = api.get(f"/api/runs/{run.pk}/metrics/", {"names": "loss/source"} | ({"since": since} if since else {}))
        page = data.json()
        pages += 1
        column = page["series"]["loss/source"]
        assert not page["downsampled"] and not column["downsampled"]
        steps += column["step"]
        got += column["value"]
        if page["next"] is None:
            break
        assert page["next"] == column["step"][-1]  # the cursor is the last step served
        since = page["next"]
    assert pages == 2
    assert steps == list(range(1, LONG + 1)) and np.allclose(got, values)

    # A page ends on a whole step: with a limit that would split a step, the step goes to the next page.
    small = api.get(f"/api/runs/{run.pk}/metrics/", {"since": LONG - 10, "limit": 5}).json()
    assert small["series"]["loss/source"]["step"] == [LONG - 9, LONG - 8] == small["series"]["lr"]["step"]
    assert small["next"] == LONG - 8


def test_a_curve_drawn_to_a_width_keeps_each_buckets_min_and_max(api, alice):
    run = launch(alice)
    rng = np.random.default_rng(1)
    values = rng.normal(size=LONG)
    spikes = rng.choice(LONG, size=7, replace=False)
    values[spikes] = 1000.0 + np.arange(7)  # single-step spikes a plain stride would miss
    store_curve(run, "loss/source", values)
    store_curve(run, "eval/miou", np.linspace(10, 50, 20), first_step=1)  # short: whole
    width = 300
    answer = api.get(f"/api/runs/{run.pk}/metrics/", {"width": width})
    page = answer.json()
    loss, miou = page["series"]["loss/source"], page["series"]["eval/miou"]
    assert page["downsampled"] and loss["downsampled"] and loss["count"] == LONG
    assert not miou["downsampled"] and miou["step"] == list(range(1, 21))
    assert len(loss["step"]) <= 2 * width and loss["step"] == sorted(loss["step"])
    served = dict(zip(loss["step"], loss["value"], strict=True))
    steps = np.arange(1, LONG + 1)
    buckets = steps // loss["bucket_steps"]  # buckets of whole steps from step 0, at most `width` of them
    assert len(np.unique(buckets)) <= width
    expected = {}
    for bucket in np.unique(buckets):
        inside = steps[buckets == bucket]
        for step in (inside[np.argmin(values[inside - 1])], inside[np.argmax(values[inside - 1])]):
            expected[int(step)] = float(values[step - 1])
    assert served == expected  # each bucket's lowest and highest point, nothing else
    assert all(int(s) + 1 in served for s in spikes)
    assert len(answer.content) < 60_000

    # Zoomed into a range holding fewer points than two a pixel: every point of it.
    zoom = api.get(f"/api/runs/{run.pk}/metrics/", {"width": width, "start": 5000, "end": 5200,
                                                      "names": "loss/source"}).json()
    assert zoom["series"]["loss/source"]["step"] == list(range(5000, 5201)), zoom["series"]["loss/source"]["count"]
    assert not zoom["downsampled"]
    # Zoomed into a range narrower than a block a pixel: drawn from the points themselves, same rule.
    zoom = api.get(f"/api/runs/{run.pk}/metrics/", {"width": width, "start": 5000, "end": 7000,
                                                      "names": "loss/source"}).json()["series"]["loss/source"]
    assert zoom["downsampled"] and zoom["bucket_steps"] < curves.BLOCK_STEPS[0] and zoom["count"] == 2001
    inside = np.arange(5000, 7001)
    assert dict(zip(zoom["step"], zoom["value"], strict=True)) == brute_force(inside, values[inside - 1],
                                                                               zoom["bucket_steps"])


def test_json_answers_are_gzipped_and_pages_are_not(api, client, alice):
    run = launch(alice)
    store_curve(run, "loss/source", np.linspace(3, 1, 3000))
    response = api.get(f"/api/runs/{run.pk}/metrics/", HTTP_ACCEPT_ENCODING="gzip, deflate")
    assert response["Content-Encoding"] == "gzip" and "Accept-Encoding" in response["Vary"]
    page = json.loads(gzip.decompress(response.content))
    assert len(page["series"]["loss/source"]["step"]) == 3000
    plain = api.get(f"/api/runs/{run.pk}/metrics/")
    assert "Content-Encoding" not in plain and len(response.content) < len(plain.content) / 2
    client.force_login(alice)
    html = client.get(f"/runs/{run.pk}/", HTTP_ACCEPT_ENCODING="gzip")
    assert html.status_code == 200 and "Content-Encoding" not in html  # it carries the CSRF token (BREACH)


def plan(sql: str, params: list, *, index_only: bool = False) -> str:
    """The plan of a query on a tiny table, asking which index can serve it in order (and, with
    ``index_only``, from the index alone): the other ways are switched off, so that cost ties
    between indexes cannot decide it."""
    kinds = ("seqscan", "bitmapscan", "sort") + (("indexscan",) if index_only else ())
    with connection.cursor() as cursor:
        for kind in kinds:
            cursor.execute(f"SET LOCAL enable_{kind} = off")
        cursor.execute("EXPLAIN " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_the_queries_run_on_their_indexes(alice):
    run = launch(alice)
    store_curve(run, "loss/source", np.ones(2000))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE runs_metricpoint")
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'runs_metricpoint'")
        indexes = {row[0] for row in cursor.fetchall()}
    assert indexes == {"runs_metricpoint_pkey", "metric_unique_run_step_name", "metric_run_name_step"}

    page = MetricPoint.objects.filter(run=run, step__gt=1000).order_by("step", "name").values_list("step", "name", "value")
    sql, params = page[:50000].query.sql_with_params()
    text = plan(sql, list(params))
    assert "metric_unique_run_step_name" in text and "Sort" not in text  # the page comes in index order

    # A page of the list: its ids from the index alone, however deep the offset, then only those rows
    # (without the config JSON, which the list does not show).
    listing = selectors.run_list(user=alice)
    sql, params = listing.values_list("pk", flat=True)[9000:9100].query.sql_with_params()
    assert "Index Only Scan using run_owner_created" in plan(sql, list(params), index_only=True)
    filtered = selectors.run_list(user=alice, status="succeeded")
    sql, params = filtered.values_list("pk", flat=True)[:100].query.sql_with_params()
    assert "Index Only Scan using run_owner_status_created" in plan(sql, list(params), index_only=True)
    sql, _ = filtered.filter(pk__in=[1, 2]).query.sql_with_params()
    assert "config" not in sql.split("FROM")[0]


def test_a_finished_runs_curves_come_from_the_cache_until_the_run_changes(api, alice):
    from django.core.cache import caches
    from django.utils import timezone

    caches["curves"].clear()
    run = launch(alice)
    store_curve(run, "loss/source", np.arange(10, dtype=float))

    def drawn() -> list[float]:
        return api.get(f"/api/runs/{run.pk}/metrics/", {"width": 100}).json()["series"]["loss/source"]["value"]

    assert drawn() == list(range(10))  # queued: computed each time, never cached
    store_curve(run, "loss/source", np.full(1, 10.0), first_step=11)
    assert drawn() == list(range(11))

    Run.objects.filter(pk=run.pk).update(status="failed", step=7, finished_at=timezone.now())
    assert drawn() == list(range(11))
    MetricPoint.objects.filter(run=run, step=11).update(value=99.0)  # behind the cache's back
    assert drawn()[-1] == 10.0  # served from the cache: a finished run's points do not change

    # Resumed and finished again: another status, step or finish time, so the curves are read anew.
    store_curve(run, "loss/source", np.full(1, 12.0), first_step=12)
    Run.objects.filter(pk=run.pk).update(status="succeeded", step=8, finished_at=timezone.now())
    assert drawn() == [*range(10), 99.0, 12.0]


def brute_force(steps: np.ndarray, values: np.ndarray, bucket: int) -> dict[int, float]:
    """Each bucket's lowest and highest point, ties to the first step for the low and the last for the high."""
    kept = {}
    for k in np.unique(steps // bucket):
        inside = np.flatnonzero(steps // bucket == k)
        low = min(inside, key=lambda i: (values[i], steps[i]))
        high = max(inside, key=lambda i: (values[i], steps[i]))
        kept[int(steps[low])] = float(values[low])
        kept[int(steps[high])] = float(values[high])
    return kept


def test_curves_drawn_from_blocks_equal_the_extremes_of_every_point(alice):
    """Points stored in ragged batches (with repeats, which keep the first value), sparse steps, tied
    values and zoom ranges that cut blocks: the drawn curve is exactly each bucket's extremes."""
    run = launch(alice)
    rng = np.random.default_rng(7)
    steps = np.unique(rng.integers(0, 300_000, size=40_000))
    values = np.round(rng.normal(size=len(steps)), 1)  # rounded: many ties
    points = [(int(s), "loss", float(v)) for s, v in zip(steps, values, strict=True)]
    order = rng.permutation(len(points))
    cuts = np.sort(rng.choice(len(points), size=60, replace=False))
    for batch in np.split(order, cuts):
        batch = [points[i] for i in batch]
        assert curves.store_points(run.pk, batch + [(s, n, 99.0) for s, n, _ in batch[:3]]) == len(batch)
    assert curves.store_points(run.pk, points[:10]) == 0  # stored already: kept, not counted again

    for start, end, width in [(None, None, 800), (1234, 250_001, 500), (70_000, 71_000, 40), (0, 5, 3), (0, 40, 3),
                              (65_535, 131_072, 1000), (299_000, None, 2)]:
        series = curves.drawn_curves(run_id=run.pk, width=width, start=start, end=end)["series"]
        inside = (steps >= (start or 0)) & (steps <= (end if end is not None else steps.max()))
        if not inside.any():
            assert series == {}
            continue
        drawn = series["loss"]
        assert drawn["count"] == inside.sum()
        got = dict(zip(drawn["step"], drawn["value"], strict=True))
        if not drawn["downsampled"]:
            assert got == dict(zip(steps[inside].tolist(), values[inside].tolist(), strict=True))
            continue
        assert got == brute_force(steps[inside], values[inside], drawn["bucket_steps"])
        assert len(np.unique(steps[inside] // drawn["bucket_steps"])) <= width

    # The blocks kept up batch by batch are the blocks computed from every point at once.
    def blocks() -> list[tuple]:
        return sorted(CurveBlock.objects.filter(run=run).values_list("name", "steps", "block", "count", "low_step",
                                                                    "low_value", "high_step", "high_value"))
    kept = blocks()
    assert curves.rebuild_blocks(run.pk) == len(kept)
    assert blocks() == kept
