"""A launch on a real pair of datasets starts from its recipe in configs/real/, and the launch's fields win."""

from __future__ import annotations

import pytest
import yaml

from tests.engine.test_datasets import make_cityscapes, make_gta5
from tests.webapp.runs.conftest import launch
from webapp.runs import recipes
from webapp.runs.catalog import DatasetEntry

pytestmark = pytest.mark.django_db


@pytest.fixture
def real_root(settings, tmp_path):
    root = tmp_path / "datasets"
    make_gta5(root / "gta5")
    make_cityscapes(root / "cityscapes")
    settings.DATASETS_ROOT = root
    return root


def recipe(name: str) -> dict:
    return yaml.safe_load((recipes.recipes_dir() / f"{name}.yaml").read_text())


def test_a_real_pair_launches_from_its_recipe_and_the_fields_win(alice, real_root):
    gta = recipe("gta2cityscapes")
    run = launch(alice, benchmark="", source="gta5", target="cityscapes", method="source_only", student="mit_b0",
                 iterations=8, crop_size=[64, 64], batch_size=1, num_workers=0)
    config = run.config
    # the recipe's values
    assert config["self_training"]["ignore_top"] == gta["self_training"]["ignore_top"] == 15
    assert config["self_training"]["ignore_bottom"] == gta["self_training"]["ignore_bottom"] == 120
    assert config["source"]["resize"] == gta["source"]["resize"] == [1280, 720]
    assert config["target"]["resize"] == gta["target"]["resize"] == [1024, 512]
    assert config["optim"]["lr"] == gta["optim"]["lr"] and config["optim"]["warmup_iters"] == gta["optim"]["warmup_iters"]
    assert config["train"]["eval_interval"] == gta["train"]["eval_interval"]
    assert config["eval"]["mode"] == gta["eval"]["mode"]
    assert config["model"]["auxiliary"] == gta["model"]["auxiliary"]
    # the launch's fields, and the server's folders, not the recipe's
    assert config["method"] == "source_only" and config["train"]["iterations"] == run.total_steps == 8
    assert config["train"]["crop_size"] == [64, 64] and config["train"]["batch_size"] == 1
    assert config["train"]["num_workers"] == 0
    assert config["source"]["root"] == str(real_root / "gta5") and config["target"]["root"] == str(real_root / "cityscapes")
    assert config["name"] == "source_only gta5 → cityscapes" and config["output_dir"] == run.output_dir
    assert config["model"]["student_pretrained"] != gta["model"]["student_pretrained"]


def test_overrides_win_over_the_recipe(alice, real_root):
    run = launch(alice, benchmark="", source="gta5", target="cityscapes", method="source_only", student="mit_b0",
                 iterations=8, crop_size=[64, 64], batch_size=1, num_workers=0,
                 overrides={"self_training.ignore_top": 3, "source.resize": [640, 360]})
    assert run.config["self_training"]["ignore_top"] == 3 and run.config["self_training"]["ignore_bottom"] == 120
    assert run.config["source"]["resize"] == [640, 360]


def test_a_pair_without_a_recipe_takes_each_kinds_settings_from_the_recipes():
    gta = DatasetEntry("gta5", "GTA5", "gta5", {"kind": "gta5", "root": "/data/gta5"})
    zurich = DatasetEntry("dark_zurich", "Dark Zurich", "dark_zurich", {"kind": "dark_zurich", "root": "/data/dz"})
    base = recipes.pair_base_config(gta, zurich)
    assert base["source"] == {"kind": "gta5", "root": "/data/gta5", "resize": [1280, 720]}
    assert base["target"]["resize"] == recipe("cityscapes2darkzurich")["target"]["resize"]
    assert base["target"]["root"] == "/data/dz" and "self_training" not in base and "train" not in base


def test_the_acdc_condition_is_the_datasets_not_the_recipes():
    city = DatasetEntry("cityscapes", "Cityscapes", "cityscapes", {"kind": "cityscapes", "root": "/data/cs"})
    fog = DatasetEntry("acdc-fog", "ACDC fog", "acdc", {"kind": "acdc", "root": "/data/acdc", "condition": "fog"})
    base = recipes.pair_base_config(city, fog)
    assert base["target"]["condition"] == "fog" and base["target"]["root"] == "/data/acdc"
    assert base["train"] == recipe("cityscapes2acdc")["train"]


def test_the_form_shows_the_recipes_values_for_a_real_pair(real_root):
    defaults = recipes.pair_defaults()
    gta = next(d for d in defaults if (d["source_kind"], d["target_kind"]) == ("gta5", "cityscapes"))
    assert gta["defaults"]["iterations"] == recipe("gta2cityscapes")["train"]["iterations"]
    assert gta["defaults"]["lr"] == recipe("gta2cityscapes")["optim"]["lr"]
    from webapp.runs.forms import RunLaunchForm

    form = RunLaunchForm({"benchmark": "", "source": "gta5", "target": "cityscapes", "method": "source_only",
                          "student": "mit_b0"})
    assert f'placeholder="{gta["defaults"]["warmup_iters"]}"' in str(form["warmup_iters"])
