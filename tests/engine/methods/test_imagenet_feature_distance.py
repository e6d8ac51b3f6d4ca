"""Self-training with the ImageNet feature distance, from the installed ImageNet weights of lite0."""

from __future__ import annotations

import math

import pytest
import torch

from duda_engine.config import ConfigError
from duda_engine.config_loading import config_from_dict
from duda_engine.data.pipeline import build_training_data, step_loader
from duda_engine.methods import build_method
from duda_engine.methods.common import to_batch
from duda_engine.models import build_segmentor
from duda_engine.validation import class_spec, validate_config
from tests.engine.conftest import CLASS_NAMES, tiny_config

CPU = torch.device("cpu")


def lite0_feature_distance_config(tiny_domains, tmp_path, **model) -> dict:
    data = tiny_config(tiny_domains, tmp_path / "run", "self_training", crop_size=[64, 64])
    data["model"] = {"student": "lite0", **model}
    data["self_training"].update({"fdist_weight": 0.5, "fdist_classes": list(CLASS_NAMES), "pseudo_threshold": 0.0})
    return data


def test_feature_distance_needs_the_students_imagenet_weights(tiny_domains, tmp_path):
    with pytest.raises(ConfigError, match="self_training.fdist_weight: feature distance needs model.student_pretrained"):
        config_from_dict(lite0_feature_distance_config(tiny_domains, tmp_path))


def test_a_self_training_step_with_feature_distance_from_imagenet_weights(tiny_domains, tmp_path, one_torch_thread):
    config = config_from_dict(lite0_feature_distance_config(tiny_domains, tmp_path, student_pretrained="imagenet"))
    validate_config(config)
    classes = class_spec(config)
    method = build_method(config, classes, CPU)
    imagenet = build_segmentor("lite0", classes.num_classes, pretrained="imagenet").encoder.state_dict()
    frozen = method.imagenet.encoder.state_dict()
    assert all(torch.equal(frozen[name], value) for name, value in imagenet.items())  # the package's weights
    data = build_training_data(config, classes)
    for step in (0, 1):
        source = to_batch(next(iter(step_loader(data.source, data.source_keys(step), step))), CPU)
        target = to_batch(next(iter(step_loader(data.target, data.target_keys(step), step))), CPU)
        losses = method.train_step(source, target, step)
        assert all(math.isfinite(value.item()) for value in losses.values()), losses
    assert losses["loss/fdist"].item() > 0 and losses["loss/source"].item() > 0
    moved = method.student.encoder.state_dict()
    assert any(not torch.equal(moved[name], value) for name, value in imagenet.items())  # the student trained
    assert all(torch.equal(method.imagenet.encoder.state_dict()[name], value) for name, value in imagenet.items())
