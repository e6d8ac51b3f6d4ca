"""Untrusted input on every page and API operation: a NUL, "²", a 10,000-character value or a huge
number in any query parameter or URL part is a 400 or a 404, never a 500; YAML overrides without
aliases; error messages quote a short prefix of the bad value."""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest

from tests.webapp.runs.conftest import launch, simulate_results
from webapp.runs import inputs
from webapp.runs.models import Checkpoint, PredictionSample, Run

pytestmark = pytest.mark.django_db

BAD_VALUES = ("\x00", "²", "١٢", "a" * 10_000, "9" * 10_000, "99999999999999999999", "-1", " 1", "1,²")
LAUNCH = {"benchmark": "toy_gta2real", "method": "source_only", "student": "mit_b0", "iterations": "8",
          "crop_size": "64x64", "batch_size": "1", "baseline": "auto"}

# The pages' query parameters (the API's come from its schema).
PAGE_PARAMS = {
    "/runs/": tuple(inputs.RUN_LIST_FILTERS),
    "/runs/new/": (),
    "/runs/compare/": ("ids",),
    "/runs/{run_id}/": (),
    "/runs/{run_id}/gallery/": ("compare",),
}


@pytest.fixture
def page(client, alice):
    client.force_login(alice)
    client.raise_request_exception = False
    return client


@pytest.fixture
def lenient_api(api):
    api.raise_request_exception = False
    return api


def _alias_bomb(levels: int = 7) -> str:
    """~250 bytes of YAML whose aliases expand to 9**levels scalars."""
    names = "abcdefghij"[:levels]
    parts = [f"&{names[0]} [" + ",".join("x" * 9) + "]"]
    parts += [f"&{name} [" + ",".join([f"*{previous}"] * 9) + "]" for previous, name in zip(names, names[1:], strict=False)]
    return "[" + ", ".join(parts) + "]"


# --- the helpers ----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("7", 7), ("0012", 12), (str(inputs.MAX_ID), inputs.MAX_ID),
    ("0", None), ("²", None), ("١٢", None), ("1_000", None), (" 1", None), ("-1", None), ("+1", None), ("", None),
    (str(inputs.MAX_ID + 1), None), ("9" * 10_000, None),
])
def test_positive_int_reads_ascii_digits_only(text, expected):
    assert inputs.positive_int(text) == expected


def test_quote_keeps_a_short_prefix():
    assert inputs.quote("abc") == "'abc'"
    assert inputs.quote("z" * 500) == repr("z" * 80 + "…")
    assert inputs.quote("\x00") == r"'\x00'"


@pytest.mark.parametrize(("text", "expected"), [
    ("3", 3), ("1.5e-3", 0.0015), ("[1, 2]", [1, 2]), ("{a: 1, b: [x]}", {"a": 1, "b": ["x"]}), ("'2020-01-01'", "2020-01-01"),
    ("true", True), ("null", None),
])
def test_yaml_value_reads_plain_data(text, expected):
    assert inputs.yaml_value(text) == expected


@pytest.mark.parametrize(("text", "reason"), [
    ("&a 1", "anchors and aliases"), ("[&a 1, *a]", "anchors and aliases"), (_alias_bomb(), "anchors and aliases"),
    ("[" * 9 + "]" * 9, "deeper than 8"), ("[" * 9000 + "]" * 9000, "deeper than 8"),
    ("2020-01-01", "date is not accepted"), ("!!binary aGk=", "bytes is not accepted"), ("!!set {a}", "set is not accepted"),
    ("{1: a}", "key 1 is not a string"), ("!!python/object:os.system x", "not valid YAML"), ("[1, 2", "not valid YAML"),
])
def test_yaml_value_refuses_aliases_depth_and_non_json_data(text, reason):
    with pytest.raises(ValueError, match=reason):
        inputs.yaml_value(text)


# --- every query parameter and URL part: never a 500 -----------------------------------------


def _api_get_operations(api) -> list[tuple[str, list[str], list[str]]]:
    """(path template, path parameters, query parameters) of every GET operation in the OpenAPI schema."""
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    operations = []
    for path, item in schema["paths"].items():
        if "get" not in item:
            continue
        parameters = item["get"].get("parameters", [])
        operations.append((path, [p["name"] for p in parameters if p["in"] == "path"],
                           [p["name"] for p in parameters if p["in"] == "query"]))
    return operations


def _fill(template: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        template = template.replace("{" + name + "}", quote(value, safe=""))
    return template


def test_no_query_parameter_or_url_part_of_the_api_gives_a_server_error(lenient_api, alice):
    run = simulate_results(launch(alice))
    good = {"run_id": str(run.pk), "sample_id": str(PredictionSample.objects.filter(run=run).first().pk),
            "checkpoint": "student"}
    operations = _api_get_operations(lenient_api)
    queried = {name for _, _, names in operations for name in names}
    assert {*inputs.RUN_LIST_FILTERS, "limit", "offset", "ids", "since", "names", "target", "student"} <= queried
    failures, checked = [], 0
    for template, path_names, query_names in operations:
        cases = [(_fill(template, good), {name: value}) for name in query_names for value in BAD_VALUES]
        cases += [(_fill(template, {**good, name: value}), {}) for name in path_names for value in BAD_VALUES]
        for url, params in cases:
            response = lenient_api.get(url, params)
            checked += 1
            if response.status_code >= 500:
                failures.append(f"{response.status_code} {url[:120]} {str(params)[:80]}")
            elif response.status_code in (400, 404) and response["Content-Type"].startswith("application/json"):
                error = response.json()["error"]
                assert error["code"] and error["message"] and len(error["message"]) < 1000, (url[:120], params.keys())
    assert checked > 150
    assert failures == []


def test_no_query_parameter_or_url_part_of_the_pages_gives_a_server_error(page, alice):
    run = simulate_results(launch(alice))
    failures = []
    for template, names in PAGE_PARAMS.items():
        url = _fill(template, {"run_id": str(run.pk)})
        cases = [(url, {name: value}) for name in names for value in BAD_VALUES]
        cases += [(_fill(template, {"run_id": value}), {}) for value in BAD_VALUES if "{run_id}" in template]
        for url, params in cases:
            response = page.get(url, params)
            if response.status_code >= 500 or len(response.content) > 100_000:
                failures.append(f"{response.status_code} {len(response.content)} {url[:120]} {str(params)[:80]}")
    assert failures == []


# --- what each bad value gives -------------------------------------------------------------------


@pytest.mark.parametrize("name", [*inputs.RUN_LIST_FILTERS])
def test_a_control_character_in_a_run_list_filter_is_a_400_naming_it(api, alice, name):
    launch(alice)
    response = api.get("/api/runs/", {name: "fog\x00"})
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {name: ["'fog\\x00' contains a control character"]}
    long = api.get("/api/runs/", {name: "y" * 10_000}).json()["error"]["fields"][name][0]
    assert long == f"{inputs.quote('y' * 10_000)} is longer than 200 characters" and len(long) < 150


def test_baselines_refuse_a_nul_and_searches_read_ascii_ids_only(api, alice, bob_api):
    run = launch(alice, name="fog run")
    for params in ({"target": "\x00"}, {"student": "mit\x00"}):
        response = api.get("/api/baselines/", params)
        assert response.status_code == 400 and list(response.json()["error"]["fields"]) == list(params)
    assert [r["id"] for r in api.get("/api/runs/", {"q": str(run.pk)}).json()["results"]] == [run.pk]
    assert api.get("/api/runs/", {"q": "fog"}).json()["count"] == 1
    for query in ("²", "١", "99999999999999999999"):
        response = api.get("/api/runs/", {"q": query})
        assert response.status_code == 200 and response.json()["count"] == 0
    assert bob_api.get("/api/runs/", {"q": str(run.pk)}).json()["count"] == 0


def test_a_malformed_id_list_is_a_400_on_the_page_and_the_api(api, page, alice):
    run = launch(alice)
    assert [r["id"] for r in api.get("/api/runs/compare/", {"ids": f"{run.pk},"}).json()["runs"]] == [run.pk]
    for ids in (f"{run.pk},²", "1,\x00", "١", "99999999999999999999", "1;2"):
        response = api.get("/api/runs/compare/", {"ids": ids})
        assert response.status_code == 400, ids
        assert response.json()["error"]["fields"]["ids"][0].endswith("is not a run id")
        shown = page.get("/runs/compare/", {"ids": ids})
        assert shown.status_code == 400 and b"is not a run id" in shown.content
    too_many = api.get("/api/runs/compare/", {"ids": ",".join(["1"] * 101)})
    assert too_many.status_code == 400 and too_many.json()["error"]["fields"] == {"ids": ["at most 100 ids"]}
    assert page.get("/runs/compare/", {"ids": f"{run.pk}"}).context["ids"] == [run.pk]


def test_event_limits_are_ascii_numbers(api, alice):
    run = simulate_results(launch(alice))
    assert len(api.get(f"/api/runs/{run.pk}/events/", {"limit": "2"}).json()) == 2
    assert len(api.get(f"/api/runs/{run.pk}/events/", {"limit": "9" * 10_000}).json()) >= 2
    for limit in ("²", "١٢", "-1", "2.0"):
        response = api.get(f"/api/runs/{run.pk}/events/", {"limit": limit})
        assert response.status_code == 400 and "is not a whole number" in response.json()["error"]["fields"]["limit"][0]


def test_page_limits_and_offsets_are_ascii_numbers(api, alice):
    first = launch(alice)
    launch(alice)
    page = api.get("/api/runs/", {"limit": "1", "offset": "1"}).json()
    assert page["count"] == 2 and [r["id"] for r in page["results"]] == [first.pk] and page["previous"]
    assert len(api.get("/api/runs/", {"limit": "9" * 10_000}).json()["results"]) == 2
    assert api.get("/api/runs/", {"offset": "9" * 10_000}).json()["results"] == []
    for name in ("limit", "offset"):
        for value in ("²", "١", "-1", "1.0"):
            response = api.get("/api/runs/", {name: value})
            assert response.status_code == 400 and list(response.json()["error"]["fields"]) == [name], (name, value)


def test_checkpoint_kinds_and_ids_in_the_url(api, alice):
    run = simulate_results(launch(alice))
    checkpoint = Checkpoint.objects.filter(run=run, kind="full").first()
    assert api.get(f"/api/runs/{run.pk}/checkpoints/{checkpoint.pk}/download/").status_code == 200
    for part in ("²", "١", quote("\x00"), "99999999999999999999", "9" * 5000, f"{checkpoint.pk}²"):
        response = api.get(f"/api/runs/{run.pk}/checkpoints/{part}/download/")
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found", part[:40]


def test_range_headers_read_ascii_digits_only(api, alice):
    run = simulate_results(launch(alice))
    url = f"/api/runs/{run.pk}/checkpoints/student/download/"
    size = Checkpoint.objects.get(run=run, kind="student").size
    assert api.get(url, HTTP_RANGE="bytes=0-9").status_code == 206
    for header in ("bytes=²-", "bytes=0-١", "bytes=-²", "bytes=" + "9" * 5000 + "-", "bytes=0-9x"):
        response = api.get(url, HTTP_RANGE=header)
        assert response.status_code == 200 and int(response["Content-Length"]) == size, header[:20]


def test_run_ids_past_bigint_are_not_found(api, page, alice):
    huge = "9" * 20
    assert page.get(f"/runs/{huge}/").status_code == 404
    assert page.get(f"/runs/{huge}/gallery/").status_code == 404
    assert page.post(f"/runs/{huge}/cancel/").status_code == 404
    assert api.get(f"/api/runs/{huge}/").status_code == 404
    assert api.post(f"/api/runs/{huge}/resume/").status_code == 404


def test_the_gallery_ignores_a_bad_second_run(page, alice):
    run = simulate_results(launch(alice))
    other = simulate_results(launch(alice))
    assert f'value="{other.pk}" selected' in page.get(f"/runs/{run.pk}/gallery/", {"compare": other.pk}).content.decode()
    for value in ("\x00", "²", "9" * 10_000):
        response = page.get(f"/runs/{run.pk}/gallery/", {"compare": value})
        assert response.status_code == 200 and "selected>" not in response.content.decode().split('id="compare-run"')[1][:2000]


# --- the launch form --------------------------------------------------------------------------


def test_a_yaml_alias_bomb_in_overrides_is_a_small_quick_400(page):
    bomb = _alias_bomb(7)
    assert len(bomb) < 300
    assert page.get("/runs/new/").status_code == 200  # the first form of a process builds the catalogue
    started = time.monotonic()
    response = page.post("/runs/new/", {**LAUNCH, "overrides": f"self_training.mic_weight = {bomb}"})
    elapsed = time.monotonic() - started
    assert response.status_code == 400 and len(response.content) < 50_000 and elapsed < 1.0
    errors = response.context["form"].errors["overrides"]
    assert len(errors) == 1 and "anchors and aliases (& and *) are not accepted" in errors[0]
    assert inputs.quote(bomb) in errors[0] and len(errors[0]) < 250
    assert not Run.objects.exists()


@pytest.mark.parametrize(("overrides", "text"), [
    ("self_training.mic_weight = " + "[" * 9000 + "]" * 9000, "nested deeper than 8 levels"),
    ("x" * 20_001, "at most 20000 characters"),
    ("z" * 500, "expected key = value, got " + repr("z" * 80 + "…")),
    ("self_training.mic_weight = [" + "1," * 400, "is not a valid value: not valid YAML"),
    ("self_training.mic weight = 1", "is not a dotted config key"),
    ("train.iterations = 2020-01-01", "a date is not accepted"),
])
def test_overrides_errors_are_short_and_name_the_field(page, overrides, text):
    response = page.post("/runs/new/", {**LAUNCH, "overrides": overrides})
    assert response.status_code == 400
    errors = response.context["form"].errors["overrides"]
    assert any(text in error for error in errors), errors
    assert all(len(error) < 250 for error in errors)
    assert not Run.objects.exists()


@pytest.mark.parametrize(("field", "value", "text"), [
    ("iterations", "١٢", "Enter a whole number"), ("iterations", "²", "Enter a whole number"),
    ("seed", "3.0", "Enter a whole number"), ("lr", "١.٥", "Enter a number"), ("lr", "1e999", "Enter a number"),
    ("baseline", "²", "'²' is not a run id"), ("crop_size", "²x²", "HxW"), ("crop_size", "٦٤x٦٤", "HxW"),
])
def test_numbers_in_the_form_are_ascii(page, field, value, text):
    response = page.post("/runs/new/", {**LAUNCH, field: value})
    assert response.status_code == 400
    assert any(text in error for error in response.context["form"].errors[field])
    assert not Run.objects.exists()


def test_ascii_numbers_still_launch(page):
    response = page.post("/runs/new/", {**LAUNCH, "iterations": " 8 ", "lr": "2.5e-4", "seed": "+3",
                                        "overrides": "self_training.mic_weight = 0.5\n# a comment\ntrain.log_interval: 4"})
    run = Run.objects.get()
    assert response.status_code == 302
    assert run.total_steps == 8 and run.config["optim"]["lr"] == 2.5e-4 and run.config["seed"] == 3
    assert run.config["self_training"]["mic_weight"] == 0.5 and run.config["train"]["log_interval"] == 4
