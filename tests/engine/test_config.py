import json

import pytest

from duda_engine.config import ConfigError, ExperimentConfig
from duda_engine.config_loading import config_from_dict, load_config


def test_defaults_are_valid_and_round_trip():
    config = config_from_dict({"source": {"domain": "synthetic_a"}, "target": {"domain": "real"}})
    assert isinstance(config, ExperimentConfig)
    again = config_from_dict(config.to_dict())
    assert again == config


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"method": "dacs"}, "method"),
        ({"train": {"crop_sise": [64, 64]}}, "train.crop_sise"),
        ({"train": {"crop_size": [100, 64]}}, "train.crop_size"),
        ({"train": {"iterations": "10"}}, "train.iterations"),
        ({"train": {"iterations": 0}}, "train.iterations"),
        ({"train": {"amp": "yes"}}, "train.amp"),
        ({"train": {"compile_mode": "fast"}}, "train.compile_mode"),
        ({"duda": {"pre_adaptation": 0.8, "ramp": 0.5}}, "duda.ramp"),
        ({"duda": {"teachers": ["ema", "oracle"]}}, "duda.teachers[1]"),
        ({"duda": {"teachers": ["ema", "auxiliary", "ema"]}}, "duda.teachers"),
        ({"duda": {"inconsistency_clip": [2.0, 3.0]}}, "duda.inconsistency_clip"),
        ({"self_training": {"target_weight": -1.0}}, "self_training.target_weight"),
        ({"source": {"kind": "gta5"}}, "source.root"),
        ({"target": {"kind": "acdc", "root": "/x", "condition": "hail"}}, "target.condition"),
        ({"classes": {"preset": "custom", "names": ["a", "b"], "colours": [[0, 0, 0]]}}, "classes.colours"),
        ({"classes": {"preset": "custom", "names": [f"c{i}" for i in range(256)], "colours": [[0, 0, 0]] * 256}},
         "classes.names"),
        ({"eval": {"stride": [600, 100]}}, "eval.stride"),
    ],
)
def test_bad_values_name_their_field(data, field):
    base = {"source": {"domain": "synthetic_a"}, "target": {"domain": "real"}}
    for key, value in data.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    with pytest.raises(ConfigError) as caught:
        config_from_dict(base)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


def test_load_yaml_json_and_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("method: self_training\nsource: {domain: synthetic_a}\ntarget: {domain: real}\ntrain: {iterations: 5}\n")
    config = load_config(path, {"train.iterations": 7, "duda.kd_weight": 0.5})
    assert (config.method, config.train.iterations, config.duda.kd_weight) == ("self_training", 7, 0.5)
    json_path = tmp_path / "run.json"
    json_path.write_text(json.dumps(config.to_dict()))
    assert load_config(json_path) == config


def test_unreadable_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("method: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)


def test_a_stored_config_with_a_retired_switch_at_its_kept_value_still_loads():
    bundled = load_config("configs/toy/toy_gta2real.yaml")
    stored = bundled.to_dict()  # what a checkpoint or a run's row holds, as written before the switches went
    stored["duda"] |= {"handover": False, "kd_teacher_view": "clean", "inconsistency_normalise": "classes",
                       "inconsistency_on_kd": False, "inconsistency_during_pre_adaptation": False}
    stored["self_training"] |= {"classmix_on_device": False}
    assert config_from_dict(stored) == bundled
    assert "handover" in stored["duda"]  # the caller's mapping is not changed

    stored["duda"]["handover"] = True  # a behaviour the engine no longer has
    with pytest.raises(ConfigError) as error:
        config_from_dict(stored)
    assert error.value.field == "duda.handover" and "removed" in str(error.value)
    with pytest.raises(ConfigError) as error:
        config_from_dict({"duda": {"no_such_switch": 1}})
    assert error.value.field.startswith("duda") and "unknown key" in str(error.value)
