"""The bundled toy domains: determinism, label sanity, class statistics, domain shift, the disk cache."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from duda_engine.toy import domains as toy
from duda_engine.toy.domains import (
    GENERATOR_VERSION,
    TOY_BENCHMARKS,
    TOY_DOMAINS,
    TOY_SIZES,
    default_cache_root,
    ensure_toy_domain,
    render_layout,
    render_sample,
    scene_seed,
)
from duda_engine.toy.scenes import sample_layout

ROAD, SIDEWALK, BUILDING, POLE, VEGETATION, TERRAIN, SKY, CAR = 0, 1, 2, 5, 8, 9, 10, 13
RIDER, TRUCK, BUS, TRAIN, MOTORCYCLE = 12, 14, 15, 16, 17


@pytest.fixture(scope="module")
def city_labels() -> list[np.ndarray]:
    return [render_sample("real", "demo", "train", i)[1] for i in range(50)]


def _grey(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float64).mean(axis=2)


def _contrast(img: np.ndarray, label: np.ndarray) -> float:
    """RMS contrast (std / mean of the brightness) outside the ignored ego bonnet."""
    grey = _grey(img)[label != 255]
    return float(grey.std() / grey.mean())


# --- samples ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("domain", TOY_DOMAINS)
def test_render_is_deterministic_and_index_dependent(domain):
    img, lab = render_sample(domain, "demo", "train", 7)
    img2, lab2 = render_sample(domain, "demo", "train", 7)
    assert np.array_equal(img, img2) and np.array_equal(lab, lab2)
    img3, lab3 = render_sample(domain, "demo", "train", 8)
    assert not np.array_equal(lab, lab3)
    assert not np.array_equal(img, img3)


@pytest.mark.parametrize("domain", TOY_DOMAINS)
def test_shapes_dtypes_and_label_values(domain):
    width, height = TOY_SIZES["demo"]
    for index in range(3):
        img, lab = render_sample(domain, "demo", "val", index)
        assert img.shape == (height, width, 3) and img.dtype == np.uint8
        assert lab.shape == (height, width) and lab.dtype == np.uint8
        values = set(np.unique(lab).tolist())
        assert values <= set(range(19)) | {255}
        assert img.std() > 5  # not a blank image


def test_full_size_sample():
    width, height = TOY_SIZES["full"]
    img, lab = render_sample("real", "full", "val", 0)
    assert img.shape == (height, width, 3) and lab.shape == (height, width)
    assert set(np.unique(lab).tolist()) <= set(range(19)) | {255}


def test_unknown_names_are_rejected():
    with pytest.raises(ValueError, match="synthetic_a"):
        render_sample("gta", "demo", "train", 0)
    with pytest.raises(ValueError, match="demo"):
        render_sample("real", "huge", "train", 0)
    with pytest.raises(ValueError, match="val"):
        ensure_toy_domain("real", "demo", "test")


def test_seeds_differ_between_domains_splits_and_indices():
    seeds = {scene_seed(d, s, i) for d in TOY_DOMAINS for s in ("train", "val") for i in range(20)}
    assert len(seeds) == len(TOY_DOMAINS) * 2 * 20
    for source, target in TOY_BENCHMARKS.values():
        assert not np.array_equal(render_sample(source, "demo", "train", 0)[1], render_sample(target, "demo", "train", 0)[1])
    assert not np.array_equal(render_sample("real", "demo", "train", 3)[1], render_sample("real", "demo", "val", 3)[1])


# --- class statistics -------------------------------------------------------------------------------------------------

def test_frequent_classes_are_in_most_images(city_labels):
    presence = np.mean([np.bincount(lab.ravel(), minlength=256)[:19] > 0 for lab in city_labels], axis=0)
    for cls in (ROAD, SIDEWALK, BUILDING, POLE, VEGETATION, SKY, CAR):
        assert presence[cls] >= 0.8, (cls, presence[cls])
    for cls in (TRAIN, MOTORCYCLE, BUS, TRUCK):
        assert presence[cls] <= 0.3, (cls, presence[cls])
    assert presence[RIDER] <= 0.5
    assert (presence > 0).sum() >= 17  # nearly every class shows up in 50 images


def test_pixel_frequencies_look_like_street_scenes(city_labels):
    counts = sum(np.bincount(lab.ravel(), minlength=256) for lab in city_labels)
    freq = counts[:19] / counts[:19].sum()
    assert freq[ROAD] > 0.15 and freq[BUILDING] > 0.1 and freq[VEGETATION] > 0.04 and freq[SKY] > 0.02
    assert freq[ROAD] + freq[BUILDING] + freq[VEGETATION] + freq[SKY] > 0.5
    for cls in (RIDER, TRAIN, MOTORCYCLE, BUS, TRUCK):
        assert freq[cls] < 0.015, (cls, freq[cls])
    assert counts[255] > 0  # the ego bonnet of the Cityscapes-like camera is ignored


def test_synthia_like_source_has_no_terrain_truck_or_train():
    for i in range(20):
        lab = render_sample("synthetic_b", "demo", "train", i)[1]
        assert not np.isin(lab, (TERRAIN, TRUCK, TRAIN)).any()
        assert not (lab == 255).any()


def test_synthia_like_camera_sees_the_horizon_higher():
    def horizon(domain: str) -> float:
        rows = [np.flatnonzero((render_sample(domain, "demo", "train", i)[1] == ROAD).any(axis=1))[0]
                for i in range(10)]
        return float(np.mean(rows))

    assert horizon("synthetic_b") < horizon("synthetic_a") - 5


# --- appearance ---------------------------------------------------------------------------------------------------------

def test_domains_differ_in_appearance_for_one_layout():
    seed = scene_seed("real", "val", 0)
    layout = sample_layout(seed, "city")
    imgs = {d: render_layout(layout, d, 256, 128, 1, seed) for d in ("real", "fog", "night", "synthetic_a")}
    labels = [lab for _, lab in imgs.values()]
    assert all(np.array_equal(labels[0], lab) for lab in labels)  # same geometry, different pixels
    real, fog, night = (_grey(imgs[d][0]) for d in ("real", "fog", "night"))
    assert night.mean() < 0.6 * real.mean()
    assert fog.mean() > real.mean()
    assert _contrast(imgs["fog"][0], labels[0]) < 0.8 * _contrast(imgs["real"][0], labels[0])


def test_domain_statistics_over_samples():
    def stats(domain: str) -> tuple[float, float, float]:
        means, contrasts, sats = [], [], []
        for i in range(8):
            img, label = render_sample(domain, "demo", "val", i)
            means.append(img.mean())
            contrasts.append(_contrast(img, label))
            hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
            sats.append(hsv[..., 1].mean())
        return float(np.mean(means)), float(np.mean(contrasts)), float(np.mean(sats))

    syn_a, syn_b, real, fog, night = (stats(d) for d in TOY_DOMAINS)
    assert night[0] < 0.5 * real[0]  # darker
    assert fog[1] < 0.8 * real[1]  # lower contrast
    assert syn_a[2] > 1.5 * real[2]  # more saturated
    assert abs(syn_b[2] - syn_a[2]) > 10  # the two sources look different too


def test_realistic_domains_are_noisy_and_synthetic_a_is_clean():
    def roughness(domain: str) -> float:
        img = _grey(render_sample(domain, "demo", "val", 1)[0])
        return float(np.median(np.abs(np.diff(img, axis=1))))

    assert roughness("synthetic_a") < 0.5
    assert roughness("real") > roughness("synthetic_a") + 1.0
    assert roughness("night") > 0.5


# --- the disk cache -----------------------------------------------------------------------------------------------------

@pytest.fixture
def small_counts(monkeypatch):
    monkeypatch.setitem(toy.TOY_COUNTS, "demo", {"train": 4, "val": 2})


def test_ensure_creates_matching_images_and_labels(tmp_path, small_counts):
    folder = ensure_toy_domain("synthetic_a", "demo", "train", cache_root=tmp_path)
    assert folder.is_dir() and f"g{GENERATOR_VERSION}" in str(folder)
    images = sorted(p.name for p in (folder / "images").glob("*.png"))
    labels = sorted(p.name for p in (folder / "labels").glob("*.png"))
    assert len(images) == 4 and images == labels
    for name in images:
        img = cv2.imread(str(folder / "images" / name), cv2.IMREAD_UNCHANGED)
        lab = cv2.imread(str(folder / "labels" / name), cv2.IMREAD_UNCHANGED)
        assert img.shape == (128, 256, 3) and lab.shape == (128, 256) and lab.dtype == np.uint8
    index = int(images[1].rsplit("_", 1)[1].split(".")[0])
    img, lab = render_sample("synthetic_a", "demo", "train", index)
    stored = cv2.cvtColor(cv2.imread(str(folder / "images" / images[1])), cv2.COLOR_BGR2RGB)
    assert np.array_equal(stored, img)
    assert np.array_equal(cv2.imread(str(folder / "labels" / images[1]), cv2.IMREAD_UNCHANGED), lab)
    val = ensure_toy_domain("synthetic_a", "demo", "val", cache_root=tmp_path)
    assert len(list((val / "images").glob("*.png"))) == 2


def test_ensure_reuses_the_cache(tmp_path, small_counts, monkeypatch):
    folder = ensure_toy_domain("real", "demo", "val", cache_root=tmp_path)
    mtimes = {p: p.stat().st_mtime_ns for p in folder.rglob("*.png")}

    def fail(*args, **kwargs):
        raise AssertionError("regenerated a cached split")

    monkeypatch.setattr(toy, "render_sample", fail)
    assert ensure_toy_domain("real", "demo", "val", cache_root=tmp_path) == folder
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*.png")} == mtimes


def test_ensure_regenerates_when_the_count_changed(tmp_path, small_counts, monkeypatch):
    folder = ensure_toy_domain("fog", "demo", "val", cache_root=tmp_path)
    monkeypatch.setitem(toy.TOY_COUNTS, "demo", {"train": 4, "val": 3})
    assert ensure_toy_domain("fog", "demo", "val", cache_root=tmp_path) == folder
    assert len(list((folder / "labels").glob("*.png"))) == 3
    assert sorted(p.name for p in folder.parent.iterdir()) == ["val"]


def test_failed_generation_leaves_nothing_visible(tmp_path, small_counts, monkeypatch):
    real_render = toy.render_sample

    def flaky(domain, size, split, index):
        if index == 2:
            raise RuntimeError("boom")
        return real_render(domain, size, split, index)

    monkeypatch.setattr(toy, "render_sample", flaky)
    with pytest.raises(RuntimeError, match="boom"):
        ensure_toy_domain("night", "demo", "train", cache_root=tmp_path)
    parent = tmp_path / f"night_demo_g{GENERATOR_VERSION}"
    assert not (parent / "train").exists()
    assert list(parent.iterdir()) == []  # the temporary folder is gone too
    monkeypatch.setattr(toy, "render_sample", real_render)
    folder = ensure_toy_domain("night", "demo", "train", cache_root=tmp_path)
    assert len(list((folder / "images").glob("*.png"))) == 4


def test_parallel_generation_matches_render_sample(tmp_path, monkeypatch):
    monkeypatch.setitem(toy.TOY_COUNTS, "demo", {"train": 4, "val": 12})
    monkeypatch.setattr(toy, "_PARALLEL_MIN", 8)
    monkeypatch.setenv("DUDA_TOY_WORKERS", "2")
    assert toy._worker_count(12) == 2 and toy._worker_count(4) == 1
    seen = []
    folder = ensure_toy_domain("synthetic_a", "demo", "val", cache_root=tmp_path,
                               progress=lambda done, total: seen.append((done, total)))
    names = sorted(p.stem for p in (folder / "labels").glob("*.png"))
    assert names == [toy.sample_name("synthetic_a", "val", i) for i in range(12)]
    assert seen[-1] == (12, 12)
    stored = cv2.imread(str(folder / "labels" / f"{names[7]}.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(stored, render_sample("synthetic_a", "demo", "val", 7)[1])


def test_parallel_generation_reports_a_failing_worker(tmp_path, monkeypatch):
    monkeypatch.setitem(toy.TOY_COUNTS, "demo", {"train": 4, "val": 12})
    monkeypatch.setattr(toy, "_PARALLEL_MIN", 8)
    monkeypatch.setenv("DUDA_TOY_WORKERS", "2")
    monkeypatch.setattr(toy, "_WORKER_CODE", "import sys; sys.stderr.write('worker exploded'); sys.exit(3)")
    with pytest.raises(RuntimeError, match="worker exploded"):
        ensure_toy_domain("synthetic_a", "demo", "val", cache_root=tmp_path)
    assert list((tmp_path / f"synthetic_a_demo_g{GENERATOR_VERSION}").iterdir()) == []


def test_default_cache_root(monkeypatch, tmp_path):
    monkeypatch.setenv("DUDA_TOY_CACHE", str(tmp_path / "elsewhere"))
    assert default_cache_root() == tmp_path / "elsewhere"
    monkeypatch.delenv("DUDA_TOY_CACHE")
    root = default_cache_root()
    assert root.parts[-2:] == ("data", "toy")
    assert (root.parent.parent / "duda_engine").is_dir()
    assert os.path.isabs(root)
