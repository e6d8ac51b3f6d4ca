"""Rare class sampling: class probabilities, image qualification, statistics cache, samplers."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torch.utils.data import DataLoader

from duda_engine.config import DatasetConfig
from duda_engine.data.classes import ClassSpec
from duda_engine.data.datasets import build_dataset
from duda_engine.data.rare_class_sampling import (
    PixelCounts,
    RareClassSampler,
    RareClassTorchSampler,
    build_rare_class_sampler,
    class_probabilities,
    compute_class_pixel_counts,
)

FIVE = ClassSpec(
    names=("a", "b", "c", "d", "e"),
    colours=((0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)),
)
REFERENCE_AREA = 1024 * 512


def make_dataset(root: Path, *, resize: list[int] | None = None, count: int = 6):
    """Images 64x32; class 0 everywhere, class 3 (rare) in image 2 only, an ignore row in each."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    (root / "ann").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(np.full((32, 64, 3), i * 10, np.uint8)).save(root / "img" / f"{i}.png")
        label = np.zeros((32, 64), np.uint8)
        label[:, : 8 + i] = 1
        label[0] = 255
        if i == 2:
            label[10:20, 40:60] = 3
        Image.fromarray(label).save(root / "ann" / f"{i}.png")
    config = DatasetConfig(kind="custom", root=str(root), image_dir="img", label_dir="ann", resize=resize or [])
    return build_dataset(config, FIVE, "train", train=True, crop_size=(16, 16))


# --------------------------------------------------------------------------------------------
# Probabilities and sampling
# --------------------------------------------------------------------------------------------


def test_class_probabilities_match_a_hand_computation():
    probabilities = class_probabilities([50, 30, 20, 0], temperature=0.1)
    weights = np.exp([(1 - 0.5) / 0.1, (1 - 0.3) / 0.1, (1 - 0.2) / 0.1])  # e^5, e^7, e^8
    np.testing.assert_allclose(probabilities, [*(weights / weights.sum()), 0.0])
    np.testing.assert_allclose(class_probabilities([0.5, 0.3, 0.2, 0.0], 0.1), probabilities)  # shares as well
    # DAFormer's T = 0.01 with a road-dominated distribution: finite, the rarest class wins by far
    sharp = class_probabilities([0.6, 0.3, 0.09, 0.01], 0.01)
    assert np.isfinite(sharp).all() and sharp.sum() == pytest.approx(1.0)
    assert sharp[3] == pytest.approx(1 / (1 + np.exp(-8) + np.exp(-29) + np.exp(-59)))
    with pytest.raises(ValueError):
        class_probabilities([0, 0], 0.1)
    with pytest.raises(ValueError):
        class_probabilities([1, 2], 0.0)


def synthetic_stats() -> PixelCounts:
    """100 full-size (1024x512) images: class 0 everywhere, class 1 in half, class 2 in images 10, 20, 30."""
    counts = []
    for i in range(100):
        entry = {0: 400_000}
        if i % 2 == 0:
            entry[1] = 60_000
        if i in (10, 20, 30):
            entry[2] = 5_000
        counts.append(entry)
    return PixelCounts(counts, [REFERENCE_AREA] * 100)


def test_rare_class_is_sampled_more_often():
    stats = synthetic_stats()
    sampler = RareClassSampler(stats, num_classes=3, temperature=0.1, min_pixels=3000, seed=0)
    totals = np.array([400_000 * 100, 60_000 * 50, 5_000 * 3], dtype=float)
    np.testing.assert_allclose(sampler.probabilities, class_probabilities(totals, 0.1))
    rng = np.random.default_rng(0)
    draws = np.array([sampler.sample(rng) for _ in range(3000)])
    rare_share = np.isin(draws, [10, 20, 30]).mean()
    expected = sampler.probabilities[2]  # class 2 is picked, then one of its 3 images
    assert expected > 0.3
    assert rare_share == pytest.approx(expected, abs=0.03)  # uniform sampling would give 3%
    assert {int(d) for d in draws[np.isin(draws, [10, 20, 30])]} == {10, 20, 30}
    summary = {row["class"]: row for row in sampler.summary()}
    assert summary[2]["images"] == 3 and summary[1]["images"] == 50


def test_min_pixels_qualification_is_strict_and_scaled_by_label_area():
    full = PixelCounts([{0: 100_000, 1: 2999}, {0: 100_000, 1: 3000}, {0: 100_000, 1: 3001}], [REFERENCE_AREA] * 3)
    sampler = RareClassSampler(full, 2, temperature=0.01, min_pixels=3000, seed=0)
    assert sampler.samples_with_class[1].tolist() == [2]
    # a quarter of the reference area: the threshold is 750 pixels
    quarter = [{0: 20_000, 1: 749}, {0: 20_000, 1: 751}]
    sampler = RareClassSampler(quarter, 2, 0.01, 3000, seed=0, areas=[REFERENCE_AREA // 4] * 2)
    assert sampler.samples_with_class[1].tolist() == [1]
    assert sampler.samples_with_class[0].tolist() == [0, 1]
    # other reference sizes are a parameter
    sampler = RareClassSampler(quarter, 2, 0.01, 3000, seed=0, areas=[100] * 2, reference_size=(10, 10))
    assert 1 not in sampler.samples_with_class


def test_classes_without_a_qualifying_image_are_left_out():
    stats = PixelCounts([{0: 100_000, 1: 10}, {0: 100_000, 2: 50_000}], [REFERENCE_AREA] * 2)
    sampler = RareClassSampler(stats, 3, temperature=0.5, min_pixels=3000, seed=0)
    assert sampler.dropped_classes == [1]
    assert sampler.probabilities[1] == 0 and sampler.probabilities.sum() == pytest.approx(1.0)
    assert sampler.classes.tolist() == [0, 2]
    empty = RareClassSampler([{}, {}], 3, 0.01, 3000, seed=0, areas=[10, 10])
    assert {empty.sample_at(d) for d in range(50)} == {0, 1}  # nothing to weigh: uniform


def test_torch_sampler_is_seeded_endless_and_resumable():
    stats = synthetic_stats()
    stream = list(itertools.islice(RareClassTorchSampler(RareClassSampler(stats, 3, 0.1, 3000, seed=5)), 40))
    again = list(itertools.islice(RareClassTorchSampler(RareClassSampler(stats, 3, 0.1, 3000, seed=5)), 40))
    other = list(itertools.islice(RareClassTorchSampler(RareClassSampler(stats, 3, 0.1, 3000, seed=6)), 40))
    assert stream == again and stream != other
    assert [draw for _, draw in stream] == list(range(40))
    resumed = RareClassTorchSampler(RareClassSampler(stats, 3, 0.1, 3000, seed=5), start=25)
    assert list(itertools.islice(iter(resumed), 15)) == stream[25:]
    plain = RareClassTorchSampler(RareClassSampler(stats, 3, 0.1, 3000, seed=5), yield_draw=False)
    assert list(itertools.islice(iter(plain), 40)) == [index for index, _ in stream]


# --------------------------------------------------------------------------------------------
# Statistics from a dataset, and their cache
# --------------------------------------------------------------------------------------------


def test_counts_come_from_labels_at_the_fitted_size(tmp_path):
    ds = make_dataset(tmp_path / "data", resize=[32, 16])
    stats = compute_class_pixel_counts(ds, cache=False)
    assert len(stats) == 6 and stats.areas == [32 * 16] * 6
    full = compute_class_pixel_counts(make_dataset(tmp_path / "full"), cache=False)
    assert full.areas == [64 * 32] * 6
    assert full[0] == {0: 31 * 56, 1: 31 * 8}  # row 0 is ignore, columns 0..7 are class 1
    assert full[2][3] == 200 and full[2][1] == 31 * 10 and sum(full[2].values()) == 31 * 64
    assert all(3 not in entry for i, entry in enumerate(full) if i != 2)
    parallel = compute_class_pixel_counts(make_dataset(tmp_path / "full"), cache=False, num_workers=2)
    assert list(parallel) == list(full) and parallel.areas == full.areas


def test_cache_file_is_created_beside_the_data_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("DUDA_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "data"
    ds = make_dataset(root)
    progress = []
    stats = compute_class_pixel_counts(ds, progress=lambda done, total: progress.append((done, total)))
    assert progress[-1] == (6, 6)
    files = list(root.glob("rcs_stats_*.json"))
    assert len(files) == 1 and not (tmp_path / "cache").exists()
    stored = json.loads(files[0].read_text())
    assert stored["counts"][2]["3"] == 200 and stored["names"][0] == "0"

    def no_labels(index):
        raise AssertionError("the cached statistics should have been used")

    monkeypatch.setattr(ds, "load_label", no_labels)
    cached = compute_class_pixel_counts(ds)
    assert list(cached) == list(stats) and cached.areas == stats.areas

    # a changed label invalidates the cache (another key), the old file stays
    fresh = make_dataset(root)
    label = np.array(Image.open(root / "ann" / "5.png"))
    label[5:9, 30:40] = 4
    Image.fromarray(label).save(root / "ann" / "5.png")
    recomputed = compute_class_pixel_counts(fresh)
    assert recomputed[5][4] == 40 and len(list(root.glob("rcs_stats_*.json"))) == 2


def test_cache_falls_back_to_the_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DUDA_CACHE_DIR", str(tmp_path / "cache"))
    ds = make_dataset(tmp_path / "data")
    ds.root = None  # e.g. a data root that cannot be written
    compute_class_pixel_counts(ds)
    assert len(list((tmp_path / "cache").glob("rcs_stats_*.json"))) == 1
    assert not list((tmp_path / "data").glob("rcs_stats_*.json"))
    explicit = tmp_path / "explicit"
    compute_class_pixel_counts(ds, cache_dir=explicit)
    assert len(list(explicit.glob("rcs_stats_*.json"))) == 1


def test_rare_class_sampler_feeds_a_data_loader(tmp_path, monkeypatch):
    monkeypatch.setenv("DUDA_CACHE_DIR", str(tmp_path / "cache"))
    ds = make_dataset(tmp_path / "data")
    rcs = build_rare_class_sampler(ds, temperature=0.01, min_pixels=3000, seed=1)
    # 3000 px at 1024x512 -> ~12 px on a 64x32 label: class 3 (200 px) qualifies in image 2 only
    assert rcs.samples_with_class[3].tolist() == [2]
    loader = DataLoader(ds, batch_size=2, sampler=RareClassTorchSampler(rcs))
    batches = list(itertools.islice(iter(loader), 10))
    assert all(batch["image"].shape == (2, 3, 16, 16) for batch in batches)
    indices = [int(i) for batch in batches for i in batch["index"]]
    assert indices.count(2) > 10  # class 3 is rarest by far: image 2 dominates the stream
    with pytest.raises(ValueError):
        compute_class_pixel_counts(
            build_dataset(
                DatasetConfig(kind="custom", root=str(tmp_path / "data"), image_dir="img"),
                FIVE,
                "train",
                train=True,
                labelled=False,
            )
        )
