"""Precomputed frozen teachers: crops found again by their views, the stored file, DUDA using it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from duda_engine.config import ConfigError
from duda_engine.config_loading import config_from_dict
from duda_engine.data.pipeline import build_training_data, step_loader
from duda_engine.methods import build_method
from duda_engine.methods.common import to_batch
from duda_engine.methods.precomputed import (
    PrecomputedTeacher,
    at_temperature,
    crop_views,
    decode_log_probabilities,
    describe,
    encode_log_probabilities,
)
from duda_engine.train import train
from duda_engine.validation import class_spec
from tests.engine.conftest import tiny_config

CPU = torch.device("cpu")


class PixelTeacher(nn.Module):
    """A teacher that looks at one pixel at a time: its prediction on a crop is the crop of its
    prediction on the whole image, up to resampling, so live and precomputed must agree."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, kernel_size=1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[4.0, -2, -2], [-2, 4, -2], [-2, -2, 4]])[:, :, None, None] * 3)
            self.conv.bias.zero_()
        self.calls = 0

    def forward(self, images):
        self.calls += 1
        return self.conv(images)


def training_data(tiny_domains, tmp_path, **train):
    config = config_from_dict(tiny_config(tiny_domains, tmp_path / "run", "duda", **train))
    return config, build_training_data(config, class_spec(config))


WHOLE = {"mode": "whole", "window": [512, 512], "stride": [341, 341]}


def store_of(teacher, dataset, path, name="pixel", stride=1):
    """The stored predictions of ``teacher`` on ``dataset``: reused when current, computed otherwise."""
    expected = describe(dataset, {"teacher": name}, stride, WHOLE)
    return PrecomputedTeacher.open_if_current(path, expected) or PrecomputedTeacher.compute(teacher, 3, dataset, path, expected, CPU)


def test_views_locate_every_crop_in_its_image(tiny_domains, tmp_path):
    # 64x64 crops of 64x96 images scaled by 0.6..1.4: some crops padded, some mirrored.
    _, data = training_data(tiny_domains, tmp_path, crop_size=[64, 64], scale_range=[0.6, 1.4])
    padded = mirrored = 0
    for draw in range(24):
        item = data.target[(draw % len(data.target), draw)]
        whole = torch.from_numpy(data.target.load_image(item["index"]).transpose(2, 0, 1).copy()).float()[None]
        found = crop_views(whole, item["view"][None], (64, 64))[0]
        difference = (found - item["image"].float()).abs()
        assert difference.mean() < 1.0 and torch.quantile(difference.flatten(), 0.99) < 4.0, draw
        top, left, bottom, right, flip = item["view"].tolist()
        padded += bottom > 1 or right > 1
        mirrored += flip == 1.0
    assert padded and mirrored and mirrored < 24


def test_stored_predictions_match_the_live_teacher_on_training_crops(tiny_domains, tmp_path):
    _, data = training_data(tiny_domains, tmp_path, crop_size=[64, 64], scale_range=[0.6, 1.4])
    teacher = PixelTeacher()
    store = store_of(teacher, data.target, tmp_path / "t.npy")
    assert store.maps.shape == (len(data.target), 3, 64, 96) and store.maps.dtype == np.uint8
    items = [data.target[(draw % len(data.target), draw)] for draw in range(12)]
    indices = torch.tensor([item["index"] for item in items])
    views = torch.stack([item["view"] for item in items])
    images = torch.stack([item["image"] for item in items]).float() / 255
    with torch.no_grad():
        live = torch.softmax(teacher(images), 1)
    stored = at_temperature(store.log_probabilities(indices, views, (64, 64), CPU), 1.0)
    torch.testing.assert_close(stored.sum(1), torch.ones(12, 64, 64))
    inside = images.sum(1) > 0  # padding is black in the image; its stored probabilities are uniform
    assert (~inside).any()
    torch.testing.assert_close(stored.permute(0, 2, 3, 1)[~inside], torch.full(((~inside).sum().item(), 3), 1 / 3))
    agree = (stored.argmax(1) == live.argmax(1))[inside].float().mean()
    assert agree > 0.97, agree
    assert (stored - live).abs().permute(0, 2, 3, 1)[inside].mean() < 0.03


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_stored_codes_keep_the_softmax_at_a_temperature(temperature):
    # A confident teacher: top class 0.99, eighteen at 0.00056 each. At T=2 the top class is only ~0.70:
    # storing probabilities (not log-probabilities) would lose that.
    logits = torch.full((1, 19, 1, 1), 0.0)
    logits[0, 0] = math.log(0.99 / 0.00056)
    random = torch.randn(4, 19, 5, 5, generator=torch.Generator().manual_seed(0)) * 4
    # Measured over 200 seeds of such random logits: at most 0.014 (T=1), 0.007 (T=2); at T=4 the floor
    # of log p at -16 shows (up to 0.10), so random logits are checked up to T=2 only.
    for case in (logits, random) if temperature <= 2 else (logits,):
        codes = encode_log_probabilities(torch.log_softmax(case, 1))
        assert codes.dtype == torch.uint8
        stored = at_temperature(decode_log_probabilities(codes), temperature)
        assert (stored - torch.softmax(case / temperature, 1)).abs().max() < 0.02  # a step of 0.063 in log p
    expected_top = 1 / (1 + 18 * (0.00056 / 0.99) ** (1 / temperature))
    top = at_temperature(decode_log_probabilities(encode_log_probabilities(torch.log_softmax(logits, 1))), temperature)[0, 0]
    assert abs(float(top) - expected_top) < 0.005


def test_the_file_is_reused_only_for_the_same_teacher_and_images(tiny_domains, tmp_path):
    _, data = training_data(tiny_domains, tmp_path)
    assert len(data.source) == len(data.target)  # same count, other images
    teacher, path = PixelTeacher(), tmp_path / "store" / "t.npy"
    n = len(data.target)
    store_of(teacher, data.target, path, "a", 4)
    assert teacher.calls == n
    assert json.loads(path.with_suffix(".json").read_text())["grid"] == [16, 24]
    store_of(teacher, data.target, path, "a", 4)
    assert teacher.calls == n  # opened, not computed again
    store_of(teacher, data.target, path, "b", 4)
    assert teacher.calls == 2 * n  # another teacher
    store_of(teacher, data.target, path, "b", 2)
    assert teacher.calls == 3 * n  # another resolution
    store_of(teacher, data.source, path, "b", 2)
    assert teacher.calls == 4 * n  # other images
    assert sorted(p.name for p in path.parent.iterdir()) == ["t.json", "t.npy"]  # no partial files left


def test_other_ranks_wait_for_the_file_without_a_collective(tiny_domains, tmp_path, monkeypatch):
    import threading

    from duda_engine.methods import precomputed

    monkeypatch.setattr(precomputed, "WAIT_POLL_S", 0.05)
    _, data = training_data(tiny_domains, tmp_path)
    path, expected = tmp_path / "t.npy", describe(data.target, {"teacher": "a"}, 4, WHOLE)
    waited = []
    waiter = threading.Thread(target=lambda: waited.append(PrecomputedTeacher.wait_for(path, expected)))
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive() and not waited  # nothing yet
    PrecomputedTeacher.compute(PixelTeacher(), 3, data.target, path, expected, CPU)
    waiter.join(10)
    assert not waiter.is_alive() and waited[0].maps.shape == (len(data.target), 3, 16, 24)


def test_an_interrupted_precomputation_leaves_no_file_in_use(tiny_domains, tmp_path):
    _, data = training_data(tiny_domains, tmp_path)

    class Failing(PixelTeacher):
        def forward(self, images):
            if self.calls == 3:
                raise RuntimeError("out of memory")
            return super().forward(images)

    path = tmp_path / "store" / "t.npy"
    with pytest.raises(RuntimeError, match="out of memory"):
        store_of(Failing(), data.target, path, "a", 4)
    assert list(path.parent.iterdir()) == []


@pytest.fixture(scope="module")
def frozen_teacher(tiny_domains, tmp_path_factory):
    """The student of a short source-only run: a frozen teacher from an earlier run."""
    folder = tmp_path_factory.mktemp("frozen")
    config = config_from_dict(tiny_config(tiny_domains, folder / "run", "source_only", iterations=3, eval_interval=0, num_samples=0))
    return train(config).student_path


def duda_config(tiny_domains, tmp_path, frozen_teacher, precompute: bool):
    raw = tiny_config(tiny_domains, tmp_path / "run", "duda", iterations=4, eval_interval=0, num_samples=0)
    raw["duda"].update(
        pre_adaptation=0.0, ramp=0.0, teachers=["ema"], frozen_teachers=[str(frozen_teacher)],
        frozen_teachers_precompute=precompute,
    )
    return config_from_dict(raw)


def test_duda_with_a_precomputed_frozen_teacher_drops_the_network_and_distils(tiny_domains, tmp_path, frozen_teacher, one_torch_thread):
    config = duda_config(tiny_domains, tmp_path, frozen_teacher, precompute=True)
    classes = class_spec(config)
    data = build_training_data(config, classes)
    method = build_method(config, classes, CPU)
    assert method.frozen == []  # never held while training
    method.prepare(data, tmp_path / "run")
    assert [s.maps.shape for s in method.frozen_on_target] == [(16, 3, 16, 24)]
    assert [s.maps.shape for s in method.frozen_on_source] == [(16, 3, 16, 24)]
    source = to_batch(next(iter(step_loader(data.source, data.source_keys(0), 0))), CPU)
    target = to_batch(next(iter(step_loader(data.target, data.target_keys(0), 0))), CPU)
    losses = method.train_step(source, target, 0)
    assert losses["schedule/kd_weight"] == 1.0
    assert all(torch.isfinite(v).all() for v in losses.values()) and losses["loss/kd"] > 0


@pytest.mark.parametrize("precompute", [False, True])
def test_duda_runs_end_to_end_with_a_frozen_teacher(tiny_domains, tmp_path, frozen_teacher, precompute, one_torch_thread):
    config = duda_config(tiny_domains, tmp_path, frozen_teacher, precompute)
    result = train(config)
    assert result.steps == 4 and result.student_path.exists()
    stored = sorted(p.name for p in (tmp_path / "run" / "frozen_predictions").glob("*")) if precompute else []
    assert stored == (["teacher0-source.json", "teacher0-source.npy", "teacher0-target.json", "teacher0-target.npy"] if precompute else [])


def test_a_frozen_teacher_of_other_classes_is_a_config_error(tiny_domains, tmp_path, frozen_teacher):
    raw = tiny_config(tiny_domains, tmp_path / "run", "duda")
    raw["classes"]["names"] = ["ground", "box", "ball"]
    raw["duda"].update(frozen_teachers=[str(frozen_teacher)], frozen_teachers_precompute=True)
    config = config_from_dict(raw)
    with pytest.raises(ConfigError, match="predicts other classes than this run") as caught:
        build_method(config, class_spec(config), CPU).prepare(build_training_data(config, class_spec(config)), tmp_path)
    assert caught.value.field == "duda.frozen_teachers"
