"""The runs' search box: one selector (``selectors.run_list``) behind the page and the API.

"#4" is run 4; other text matches the id when it is digits, and a part of the name, the source or target dataset or the
benchmark, in any case."""

from __future__ import annotations

import pytest

from tests.webapp.runs.conftest import launch
from webapp.runs import selectors

pytestmark = pytest.mark.django_db


@pytest.fixture
def runs(alice):
    return {
        "gta": launch(alice, name="first try", benchmark="toy_gta2real"),
        "fog": launch(alice, name="foggy", benchmark="toy_real2fog"),
        "night": launch(alice, name="late", benchmark="toy_real2night"),
    }


def ids(api, query: str) -> list[int]:
    response = api.get("/api/runs/", {"q": query})
    assert response.status_code == 200, response.content
    return sorted(r["id"] for r in response.json()["results"])


def test_the_id_with_or_without_hash(api, runs):
    run = runs["fog"]
    assert ids(api, f"#{run.pk}") == [run.pk]
    assert ids(api, f"  # {run.pk} ") == [run.pk]
    assert run.pk in ids(api, f"{run.pk}")  # bare digits: the id, and any name or benchmark holding them
    late = runs["night"]
    late.name = "run 777"
    late.save(update_fields=["name"])
    assert ids(api, "777") == [late.pk]


def test_a_benchmark_name_finds_its_runs(api, runs):
    assert ids(api, "toy_real2") == sorted([runs["fog"].pk, runs["night"].pk])
    assert ids(api, "GTA2REAL") == [runs["gta"].pk]


def test_name_and_datasets(api, runs):
    assert ids(api, "foggy") == [runs["fog"].pk]
    target = runs["night"].target_dataset
    assert target, "a toy run names its target domain"
    assert runs["night"].pk in ids(api, target)
    assert ids(api, runs["gta"].source_dataset.upper()) == [runs["gta"].pk]


def test_nothing_matches(api, runs):
    assert ids(api, "no such thing") == []
    assert ids(api, "#999999") == []


def test_the_page_searches_through_the_api(client, alice, runs):
    """The runs page draws its table from the API with the box's text as ``q``: same selector."""
    client.login(username="alice", password="alice-password")
    page = client.get("/runs/").content.decode()
    assert 'name="q"' in page and "benchmark or #id" in page
    assert [r.pk for r in selectors.run_list(user=alice, query=f"#{runs['gta'].pk}")] == [runs["gta"].pk]
