"""Fuzz of every GET endpoint's query parameters, API and pages: wrong types, huge and negative
numbers, control characters, non-ASCII digits, very long strings, repeated keys. Each answer is a
200, 400 or 404, never a server error."""

from __future__ import annotations

import numpy as np
import pytest

from tests.webapp.runs.conftest import launch
from webapp.runs import curves

pytestmark = pytest.mark.django_db

BAD = ["", "-1", "0", "1", "2147483648", str(2**63), str(2**64), "9" * 400, "1.5", "1e9", "nan", "inf", "-0",
       "\x00", "a\x00b", "²", "١٢", "x" * 20_000, "../../etc/passwd", ",", ",,,1,,", "1,2,3," * 500,
       "%00", "' OR 1=1 --", "<script>"]  # fmt: skip
ENCODED = ["%ED%A0%80", "%FF", "%C0%AF", "%"]  # a lone surrogate and bytes that are no UTF-8, as sent

ENDPOINTS = {
    "/api/runs/": ["status", "method", "q", "target", "benchmark", "student", "limit", "offset"],
    "/api/runs/{run}/metrics/": ["since", "start", "end", "names", "width", "limit"],
    "/api/runs/{run}/events/": ["limit"],
    "/api/runs/compare/": ["ids", "names", "width", "start", "end"],
    "/api/baselines/": ["target", "student"],
    "/runs/": ["status", "method", "q", "target", "benchmark", "student", "page"],
    "/runs/compare/": ["ids"],
    "/runs/{run}/": [],
    "/runs/{run}/gallery/": ["page"],
}


def test_no_query_parameter_makes_a_server_error(api, alice):
    """``api`` is logged in with a session, so it fetches the pages as a browser does."""
    run = launch(alice)
    curves.store_points(run.pk, [(s, name, float(v)) for name in ("loss/source", "eval/miou")
                                 for s, v in enumerate(np.linspace(3, 1, 300), start=1)])
    failures = []

    def check(url: str, query: dict | str, allowed=(200, 400, 404)) -> None:
        answer = api.get(url, query) if isinstance(query, dict) else api.get(f"{url}?{query}")
        if answer.status_code not in allowed:
            failures.append((url, str(query)[:60], answer.status_code))

    for template, keys in ENDPOINTS.items():
        url = template.format(run=run.pk)
        for key in keys + ["unknown"]:
            for value in BAD:
                check(url, {key: value})
            for value in ENCODED:
                check(url, f"{key}={value}")
        check(url, "&".join(f"{k}=1&{k}=-1" for k in keys))  # every parameter at once, each twice
    # pairs that contradict each other
    for query in ({"start": 10, "end": 5}, {"since": 5, "width": 10}, {"start": 2**31 - 1, "width": 1},
                  {"start": 0, "end": 2**31 - 1, "width": 8000}, {"since": 2**31 - 1}):
        check(f"/api/runs/{run.pk}/metrics/", query, allowed=(200, 400))
    for query in ({"ids": str(run.pk), "names": "loss/source", "start": 10, "end": 5},
                  {"ids": str(run.pk), "names": "loss/source", "start": str(2**62), "end": str(2**63 - 1)}):
        check("/api/runs/compare/", query, allowed=(200, 400))
    assert failures == []
