"""The launch fields are defined once (``launch_schema.FIELDS``): the API, the form, the spec, the
defaults and the config map all have the same fields, the same required ones and the same defaults."""

from __future__ import annotations

import dataclasses

import pytest

from webapp.runs import catalog, launch_schema
from webapp.runs.api.serializers import RunCreateInput
from webapp.runs.forms import RunLaunchForm

pytestmark = pytest.mark.django_db

NAMES = {f.name for f in launch_schema.FIELDS}


def test_every_launch_field_is_in_the_api_the_form_and_the_spec():
    api, form = RunCreateInput().fields, RunLaunchForm().fields
    assert set(api) == NAMES
    assert set(form) == NAMES
    assert {f.name for f in dataclasses.fields(launch_schema.LaunchSpec)} == NAMES
    assert set(launch_schema.ADVANCED_FIELDS) <= NAMES and set(RunLaunchForm.ADVANCED) <= NAMES
    for name in NAMES:
        assert api[name].required == form[name].required == launch_schema.BY_NAME[name].required, name


def test_the_config_map_and_the_defaults_name_real_config_keys():
    from duda_engine.config import ExperimentConfig

    engine = ExperimentConfig().to_dict()
    defaults = launch_schema.defaults(engine)
    assert set(defaults) == set(launch_schema.FIELD_TO_CONFIG) <= NAMES
    assert defaults["crop_size"] == list(engine["train"]["crop_size"]) and defaults["lr"] == engine["optim"]["lr"]
    assert set(catalog.toy_benchmarks()[0]["defaults"]) == set(launch_schema.FIELD_TO_CONFIG)


def test_absent_api_fields_and_blank_form_fields_give_the_same_spec():
    given = {"benchmark": "toy_gta2real", "method": "source_only", "student": "mit_b0"}
    api = RunCreateInput(data=given)
    assert api.is_valid(), api.errors
    blank = {name: "" for name in NAMES if name not in ("teachers", "precompute_teachers")}
    form = RunLaunchForm({**blank, **given, "baseline": launch_schema.AUTO})
    assert form.is_valid(), form.errors
    assert api.to_spec() == form.to_spec() == launch_schema.LaunchSpec(**given)


def test_the_benchmark_or_pair_rule_is_the_same_in_the_api_and_the_form():
    for data, errors in (
        ({}, {"benchmark": ["choose a benchmark, or a source and a target dataset"]}),
        ({"source": "toy:synthetic_a"}, {"target": ["choose a target dataset, or a benchmark"]}),
        ({"target": "toy:real"}, {"source": ["choose a source dataset, or a benchmark"]}),
    ):
        assert launch_schema.data_errors(**{"benchmark": "", "source": "", "target": "", **data}) == errors
        api = RunCreateInput(data={"method": "source_only", "student": "mit_b0", **data})
        assert not api.is_valid() and {k: [str(m) for m in v] for k, v in api.errors.items()} == errors
        form = RunLaunchForm({"method": "source_only", "student": "mit_b0", "benchmark": "", **data})
        assert not form.is_valid() and {k: v for k, v in form.errors.items() if k in errors} == errors


def test_a_blank_number_on_the_form_shows_the_default_it_takes():
    html = str(RunLaunchForm()["eval_interval"])
    default = catalog.toy_benchmarks()[0]["defaults"]["eval_interval"]
    assert f'placeholder="{default}"' in html
