"""Dataset layouts, decoding, train/eval items, determinism and error messages.

Each test writes a tiny tree in one of the real layouts (the folders each dataset ships in) into ``tmp_path``.
"""

from __future__ import annotations

import itertools
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from duda_engine.config import DatasetConfig
from duda_engine.data.classes import CITYSCAPES, ClassSpec
from duda_engine.data.dataset_check import check_dataset, describe_dataset
from duda_engine.data.datasets import InfiniteRandomSampler, SegmentationDataset, build_dataset
from duda_engine.data.samples import DatasetError, Sample

FIVE = ClassSpec(
    names=("a", "b", "c", "d", "e"),
    colours=((0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)),
    ignore_index=255,
)
GTA_IDS = np.array([7, 8, 11, 26, 0, 33, 24, 3, 255, 21], dtype=np.uint8)  # -> 0 1 2 13 255 18 11 255 255 8
GTA_TRAIN = np.array([0, 1, 2, 13, 255, 18, 11, 255, 255, 8])


# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------


def write_image(path: Path, height: int, width: int, seed: int = 0) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(image).save(path)
    return image


def write_label(path: Path, label: np.ndarray, palette: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    label = np.ascontiguousarray(label.astype(np.uint8))
    if palette:  # GTA5 ships palette PNGs: the pixel values are palette indices
        image = Image.frombytes("P", (label.shape[1], label.shape[0]), label.tobytes())
        image.putpalette([v for i in range(256) for v in ((i * 7) % 256, (i * 13) % 256, (i * 29) % 256)])
        image.save(path)
    else:
        Image.fromarray(label).save(path)


def tiled(values: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.resize(values, height * width).reshape(height, width)


def cfg(kind: str, root: Path | str, **fields) -> DatasetConfig:
    return DatasetConfig(kind=kind, root=str(root), **fields)


def make_gta5(root: Path, count: int = 3, height: int = 24, width: int = 40) -> None:
    for i in range(count):
        write_image(root / "images" / f"{i:05d}.png", height, width, seed=i)
        write_label(root / "labels" / f"{i:05d}.png", tiled(GTA_IDS, height, width), palette=True)


def make_cityscapes(root: Path, height: int = 32, width: int = 64) -> None:
    layout = {"train": {"aachen": 2, "bochum": 1}, "val": {"frankfurt": 2}}
    for split, cities in layout.items():
        for city, count in cities.items():
            for i in range(count):
                base = f"{city}_{i:06d}_000019"
                write_image(root / "leftImg8bit" / split / city / f"{base}_leftImg8bit.png", height, width, seed=i)
                gt = root / "gtFine" / split / city
                if split == "val" and i == 1:  # only the label-id image: mapped with the cityscapesscripts table
                    write_label(gt / f"{base}_gtFine_labelIds.png", tiled(GTA_IDS, height, width))
                else:
                    write_label(
                        gt / f"{base}_gtFine_labelTrainIds.png", tiled(np.array([*range(19), 255]), height, width)
                    )


def make_custom(root: Path, count: int = 4, height: int = 40, width: int = 60, suffix: str = "_mask") -> None:
    for i in range(count):
        write_image(root / "img" / f"frame{i}.jpg", height, width, seed=i)
        label = tiled(np.array([0, 1, 2, 3, 4, 255]), height, width)
        write_label(root / "ann" / f"frame{i}{suffix}.png", label)


# --------------------------------------------------------------------------------------------
# Real layouts
# --------------------------------------------------------------------------------------------


def test_gta5_label_ids_become_train_ids(tmp_path):
    make_gta5(tmp_path)
    ds = build_dataset(cfg("gta5", tmp_path), CITYSCAPES, "train", train=False)
    assert len(ds) == 3 and check_dataset(cfg("gta5", tmp_path), CITYSCAPES, "train") == 3
    item = ds[1]
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, 24, 40)
    assert item["label"].dtype == torch.int64 and item["label"].shape == (24, 40)
    assert item["index"] == 1 and item["name"] == "00001"
    np.testing.assert_array_equal(item["label"].numpy(), tiled(GTA_TRAIN, 24, 40))


def test_gta5_label_of_another_size_is_resized_to_the_image(tmp_path):
    make_gta5(tmp_path, count=1)
    write_label(tmp_path / "labels" / "00000.png", np.full((26, 41), 26), palette=True)
    item = build_dataset(cfg("gta5", tmp_path), CITYSCAPES, "train", train=False)[0]
    assert item["label"].shape == (24, 40) and (item["label"] == 13).all()


def test_synthia_16bit_first_channel(tmp_path):
    ids = np.array([3, 4, 2, 21, 1, 300, 1000, 19, 12, 16], dtype=np.uint16)  # 300, 1000, 16: no train id
    expected = np.array([0, 1, 2, 3, 10, 255, 255, 15, 17, 255])
    for i, channels in enumerate((3, 1)):
        write_image(tmp_path / "RGB" / f"{i:07d}.png", 20, 30)
        class_ids = tiled(ids, 20, 30).astype(np.uint16)
        if channels == 3:  # cv2 writes BGR: index 2 is the PNG's first (R) channel
            raw = np.stack([np.full_like(class_ids, 7), np.full_like(class_ids, 500), class_ids], axis=-1)
        else:
            raw = class_ids
        (tmp_path / "GT" / "LABELS").mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(tmp_path / "GT" / "LABELS" / f"{i:07d}.png"), raw)
    strict = build_dataset(cfg("synthia", tmp_path), CITYSCAPES, "train", train=False)
    with pytest.raises(DatasetError, match=r"0000000.png holds values 300, 1000 that are neither SYNTHIA class ids "
                                           r"0..22 nor the ignore value 255 \(set ignore_unknown_labels"):
        strict[0]
    ds = build_dataset(cfg("synthia", tmp_path, ignore_unknown_labels=True), CITYSCAPES, "train", train=False)
    assert len(ds) == 2
    for i in range(2):
        np.testing.assert_array_equal(ds[i]["label"].numpy(), tiled(expected, 20, 30))


def test_cityscapes_splits_names_and_label_id_fallback(tmp_path):
    make_cityscapes(tmp_path)
    config = cfg("cityscapes", tmp_path)
    train = build_dataset(config, CITYSCAPES, "train", train=False)
    val = build_dataset(config, CITYSCAPES, "val", train=False)
    assert len(train) == 3 and len(val) == 2
    assert [s.name for s in train.samples] == [
        "aachen/aachen_000000_000019",
        "aachen/aachen_000001_000019",
        "bochum/bochum_000000_000019",
    ]
    np.testing.assert_array_equal(train[0]["label"].numpy(), tiled(np.array([*range(19), 255]), 32, 64))
    np.testing.assert_array_equal(val[1]["label"].numpy(), tiled(GTA_TRAIN, 32, 64))
    with pytest.raises(DatasetError, match=r"unknown split 'test'.*available: train, val"):
        build_dataset(config, CITYSCAPES, "test", train=False)


def test_acdc_per_condition(tmp_path):
    for condition, count in (("fog", 2), ("night", 3)):
        for split in ("train", "val"):
            for i in range(count):
                base = f"GOPR0475_frame_{i:06d}"
                write_image(tmp_path / "rgb_anon" / condition / split / "GOPR0475" / f"{base}_rgb_anon.png", 18, 32)
                gt = tmp_path / "gt" / condition / split / "GOPR0475" / f"{base}_gt_labelTrainIds.png"
                write_label(gt, np.full((18, 32), 8))
    assert check_dataset(cfg("acdc", tmp_path, condition="fog"), CITYSCAPES, "val") == 2
    night = build_dataset(cfg("acdc", tmp_path, condition="night"), CITYSCAPES, "train", train=False)
    assert len(night) == 3 and night.samples[0].name == "GOPR0475/GOPR0475_frame_000000"
    assert (night[2]["label"] == 8).all()
    with pytest.raises(DatasetError, match=r"rgb_anon/rain"):
        check_dataset(cfg("acdc", tmp_path, condition="rain"), CITYSCAPES, "train")
    with pytest.raises(DatasetError, match="condition"):
        check_dataset(cfg("acdc", tmp_path, condition=""), CITYSCAPES, "train")


def make_dark_zurich(root: Path) -> None:
    for i in range(3):
        write_image(root / "rgb_anon" / "train" / "night" / "GOPR0348" / f"GOPR0348_frame_{i:06d}_rgb_anon.png", 18, 32)
    write_image(root / "rgb_anon" / "train" / "day" / "GOPR0001" / "GOPR0001_frame_000000_rgb_anon.png", 18, 32)
    for i in range(2):
        base = f"GOPR0356_frame_{i:06d}"
        write_image(root / "rgb_anon" / "val" / "night" / "GOPR0356" / f"{base}_rgb_anon.png", 18, 32)
        write_label(root / "gt" / "val" / "night" / "GOPR0356" / f"{base}_gt_labelTrainIds.png", np.full((18, 32), 10))
        write_label(root / "gt" / "val" / "night" / "GOPR0356" / f"{base}_gt_labelIds.png", np.full((18, 32), 23))


def test_dark_zurich_unlabelled_train_and_labelled_val(tmp_path):
    make_dark_zurich(tmp_path)
    config = cfg("dark_zurich", tmp_path)
    train = build_dataset(config, CITYSCAPES, "train", train=True, crop_size=(16, 16), labelled=False)
    assert len(train) == 3  # night only
    item = train[0]
    assert item["image"].shape == (3, 16, 16) and item["label"].shape == (16, 16) and (item["label"] == 255).all()
    unlabelled_eval = build_dataset(config, CITYSCAPES, "train", train=False, labelled=False)
    assert unlabelled_eval[1]["label"].shape == (18, 32) and (unlabelled_eval[1]["label"] == 255).all()
    with pytest.raises(DatasetError, match="no labels"):
        build_dataset(config, CITYSCAPES, "train", train=True)
    val = build_dataset(config, CITYSCAPES, "val", train=False)
    assert len(val) == 2 and (val[0]["label"] == 10).all()


def test_custom_by_stems_with_suffix_and_split_free_folders(tmp_path):
    make_custom(tmp_path)
    config = cfg("custom", tmp_path, image_dir="img", label_dir="ann", label_suffix="_mask")
    ds = build_dataset(config, FIVE, "train", train=False)
    assert len(ds) == 4 and ds.samples[0].name == "frame0"
    np.testing.assert_array_equal(ds[3]["label"].numpy(), tiled(np.array([0, 1, 2, 3, 4, 255]), 40, 60))
    assert check_dataset(config, FIVE, "val") == 4  # no split folders: every split is the whole folder


def test_custom_split_subfolders_and_list_file(tmp_path):
    for split, count in (("train", 3), ("val", 1)):
        for i in range(count):
            write_image(tmp_path / "images" / split / f"{split}{i}.png", 10, 12)
            write_label(tmp_path / "labels" / split / f"{split}{i}.png", np.full((10, 12), i % 5))
    config = cfg("custom", tmp_path, image_dir="images", label_dir="labels")
    assert check_dataset(config, FIVE, "train") == 3 and check_dataset(config, FIVE, "val") == 1
    with pytest.raises(DatasetError, match="unknown split 'test'"):
        check_dataset(config, FIVE, "test")

    (tmp_path / "train.txt").write_text(
        "# image label\nimages/train/train0.png labels/train/train0.png\n\nimages/train/train2.png\tlabels/val/val0.png\n"
    )
    listed = build_dataset(cfg("custom", tmp_path, list_file="{split}.txt"), FIVE, "train", train=False)
    assert [s.name for s in listed.samples] == ["images/train/train0", "images/train/train2"]
    assert (listed[1]["label"] == 0).all()
    (tmp_path / "bad.txt").write_text("images/train/train0.png labels/train/nothing.png\n")
    with pytest.raises(DatasetError, match="nothing.png"):
        check_dataset(cfg("custom", tmp_path, list_file="bad.txt"), FIVE, "train")


def test_custom_values_outside_the_classes_fail_when_loaded_naming_the_file(tmp_path):
    make_custom(tmp_path, count=2)
    write_label(tmp_path / "ann" / "frame1_mask.png", tiled(np.array([0, 5, 7]), 40, 60))
    config = cfg("custom", tmp_path, image_dir="img", label_dir="ann", label_suffix="_mask")
    ds = build_dataset(config, FIVE, "train", train=True, crop_size=(32, 32))  # lazily: building passes
    ds[0]
    with pytest.raises(DatasetError, match=r"frame1_mask\.png.*5, 7"):
        ds[1]
    colour = np.zeros((40, 60, 3), np.uint8)
    colour[:, :, 0] = 1
    Image.fromarray(colour).save(tmp_path / "ann" / "frame0_mask.png")
    with pytest.raises(DatasetError, match=r"frame0_mask\.png.*colour"):
        check_dataset(config, FIVE, "train")


def test_custom_ignore_value_other_than_255(tmp_path):
    classes = ClassSpec(names=FIVE.names, colours=FIVE.colours, ignore_index=9)
    write_image(tmp_path / "img" / "a.png", 4, 6)
    write_label(tmp_path / "ann" / "a.png", tiled(np.array([0, 9, 4]), 4, 6))
    ds = build_dataset(
        cfg("custom", tmp_path, image_dir="img", label_dir="ann"), classes, "x", train=True, crop_size=(8, 8)
    )
    label = ds[0]["label"]
    assert set(label.unique().tolist()) == {0, 4, 9}  # the padding is ignore (9) as well


@pytest.fixture
def fake_toy(monkeypatch, tmp_path):
    """Stands in for ``duda_engine.toy.domains.ensure_toy_domain``: a folder of images/ and labels/."""
    calls = []

    def ensure_toy_domain(domain, size, split, cache_root=None):
        calls.append((domain, size, split, cache_root))
        folder = tmp_path / "toy" / domain / split
        if not folder.is_dir():
            for i in range(3):
                write_image(folder / "images" / f"{i:04d}.png", 16, 24, seed=i)
                write_label(folder / "labels" / f"{i:04d}.png", tiled(np.array([0, 13, 255]), 16, 24))
        return folder

    module = types.ModuleType("duda_engine.toy.domains")
    module.ensure_toy_domain = ensure_toy_domain
    monkeypatch.setitem(sys.modules, "duda_engine.toy.domains", module)
    return calls


def test_toy_reads_the_generated_folder(fake_toy, tmp_path):
    config = DatasetConfig(kind="toy", domain="synthetic_a", toy_size="demo")
    ds = build_dataset(config, CITYSCAPES, "val", train=False)
    assert fake_toy == [("synthetic_a", "demo", "val", None)]
    assert len(ds) == 3 and ds.root == tmp_path / "toy" / "synthetic_a" / "val"
    np.testing.assert_array_equal(ds[0]["label"].numpy(), tiled(np.array([0, 13, 255]), 16, 24))
    build_dataset(DatasetConfig(kind="toy", domain="fog", root=str(tmp_path / "c")), CITYSCAPES, "train", train=True)
    assert fake_toy[-1] == ("fog", "demo", "train", tmp_path / "c")
    write_label(tmp_path / "toy" / "fog" / "train" / "labels" / "0001.png", np.full((16, 24), 19))
    with pytest.raises(DatasetError, match=r"0001\.png.*19"):
        build_dataset(DatasetConfig(kind="toy", domain="fog"), CITYSCAPES, "train", train=False)[1]


# --------------------------------------------------------------------------------------------
# Train and eval items
# --------------------------------------------------------------------------------------------


def test_train_items_have_the_crop_size_and_eval_labels_keep_full_size(tmp_path):
    make_cityscapes(tmp_path, height=40, width=80)
    config = cfg("cityscapes", tmp_path, resize=[40, 40])
    train = build_dataset(config, CITYSCAPES, "train", train=True, crop_size=(16, 24), scale_range=(0.5, 2.0))
    for draw in range(5):
        item = train[(0, draw)]
        assert item["image"].shape == (3, 16, 24) and item["image"].dtype == torch.uint8
        assert item["label"].shape == (16, 24) and item["label"].dtype == torch.int64
    big = build_dataset(config, CITYSCAPES, "train", train=True, crop_size=(64, 96), scale_range=(1.0, 1.0))
    item = big[0]  # the image is 20x40 after resize-to-fit: padded with 0 / ignore
    assert item["image"].shape == (3, 64, 96) and (item["label"][20:] == 255).all()
    assert (item["image"][:, 20:] == 0).all()
    val = build_dataset(config, CITYSCAPES, "val", train=False)
    item = val[0]
    assert item["image"].shape == (3, 20, 40)  # 80x40 fitted into 40x40
    assert item["label"].shape == (40, 80)  # full original resolution
    assert val.load_label(0).shape == (20, 40) and val.load_image(0).shape == (20, 40, 3)


def test_train_crop_image_and_label_stay_aligned(tmp_path):
    # the label encodes the column: after rescale, crop and flip, the image's red channel must agree with it
    height, width = 20, 60
    columns = np.tile(np.arange(width, dtype=np.uint8) // 12, (height, 1))  # 5 bands, classes 0..4
    image = np.zeros((height, width, 3), np.uint8)
    image[:, :, 0] = columns * 50
    (tmp_path / "img").mkdir()
    Image.fromarray(image).save(tmp_path / "img" / "a.png")
    write_label(tmp_path / "ann" / "a.png", columns)
    ds = build_dataset(
        cfg("custom", tmp_path, image_dir="img", label_dir="ann"),
        FIVE,
        "train",
        train=True,
        crop_size=(16, 16),
        scale_range=(1.0, 1.0),
    )
    for draw in range(8):
        item = ds[(0, draw)]
        np.testing.assert_array_equal(item["image"][0].numpy(), item["label"].numpy() * 50)


def test_items_are_deterministic_under_a_seed_with_and_without_workers(tmp_path):
    make_custom(tmp_path, count=6)
    config = cfg("custom", tmp_path, image_dir="img", label_dir="ann", label_suffix="_mask")

    def build(seed: int) -> SegmentationDataset:
        torch.manual_seed(seed)
        return build_dataset(config, FIVE, "train", train=True, crop_size=(16, 16))

    def batches(ds: SegmentationDataset, workers: int) -> list[dict]:
        loader = DataLoader(ds, batch_size=2, sampler=InfiniteRandomSampler(len(ds), seed=3), num_workers=workers)
        return list(itertools.islice(iter(loader), 5))

    first, second, other = build(11), build(11), build(12)
    assert first.seed == 11 and other.seed == 12
    for i in range(len(first)):
        assert torch.equal(first[(i, 4)]["image"], second[(i, 4)]["image"])
    assert torch.equal(first[2]["image"], first[(2, 0)]["image"])
    assert any(not torch.equal(first[(i, 0)]["image"], first[(i, 1)]["image"]) for i in range(len(first)))
    assert any(not torch.equal(first[i]["image"], other[i]["image"]) for i in range(len(first)))

    serial, parallel = batches(first, 0), batches(second, 2)
    for a, b in zip(serial, parallel, strict=True):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
        assert a["index"].tolist() == b["index"].tolist() and a["name"] == b["name"]

    before = first[(0, 0)]["image"]
    first.set_epoch(1)
    after = first[(0, 0)]["image"]
    first.set_epoch(0)
    assert not torch.equal(before, after) and torch.equal(before, first[(0, 0)]["image"])


def test_infinite_random_sampler_is_a_permutation_per_pass_and_resumable():
    sampler = InfiniteRandomSampler(5, seed=0)
    keys = list(itertools.islice(iter(sampler), 15))
    assert [draw for _, draw in keys] == list(range(15))
    for start in (0, 5, 10):
        assert sorted(index for index, _ in keys[start : start + 5]) == list(range(5))
    sampler.set_start(7)
    assert list(itertools.islice(iter(sampler), 8)) == keys[7:15]
    assert [sampler.index_at(d) for d in range(15)] == [index for index, _ in keys]
    plain = InfiniteRandomSampler(4, shuffle=False, yield_draw=False)
    assert list(itertools.islice(iter(plain), 6)) == [0, 1, 2, 3, 0, 1]


# --------------------------------------------------------------------------------------------
# Errors name the folder or file
# --------------------------------------------------------------------------------------------


def test_missing_root(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match=f"{missing}.*does not exist"):
        build_dataset(cfg("gta5", missing), CITYSCAPES, "train", train=True)
    with pytest.raises(DatasetError, match="needs its folder"):
        check_dataset(cfg("cityscapes", ""), CITYSCAPES, "train")


def test_missing_sub_folder_names_it_and_the_layout(tmp_path):
    make_gta5(tmp_path)
    for path in (tmp_path / "labels").iterdir():
        path.unlink()
    (tmp_path / "labels").rmdir()
    with pytest.raises(DatasetError, match=rf"missing folder {tmp_path / 'labels'}.*images/<n>\.png"):
        check_dataset(cfg("gta5", tmp_path), CITYSCAPES, "train")
    assert check_dataset(cfg("gta5", tmp_path), CITYSCAPES, "train", labelled=False) == 3
    with pytest.raises(DatasetError, match=r"GT/LABELS"):
        (tmp_path / "RGB").mkdir()
        check_dataset(cfg("synthia", tmp_path), CITYSCAPES, "train")


def test_no_images_found(tmp_path):
    (tmp_path / "leftImg8bit" / "train").mkdir(parents=True)
    (tmp_path / "gtFine" / "train").mkdir(parents=True)
    with pytest.raises(DatasetError, match=rf"no images.*{tmp_path / 'leftImg8bit' / 'train'}"):
        check_dataset(cfg("cityscapes", tmp_path), CITYSCAPES, "train")


def test_images_without_labels_are_named(tmp_path):
    make_gta5(tmp_path, count=8)
    for i in (2, 5, 6, 7):
        (tmp_path / "labels" / f"{i:05d}.png").unlink()
    with pytest.raises(DatasetError, match=r"4 of 8 images.*00002\.png.*00005\.png") as info:
        check_dataset(cfg("gta5", tmp_path), CITYSCAPES, "train")
    assert str(tmp_path / "labels" / "00002.png") in str(info.value)
    make_custom(tmp_path / "c", count=2)
    (tmp_path / "c" / "ann" / "frame1_mask.png").unlink()
    with pytest.raises(DatasetError, match=r"frame1\.jpg"):
        check_dataset(cfg("custom", tmp_path / "c", image_dir="img", label_dir="ann", label_suffix="_mask"), FIVE, "t")


def test_corrupt_files_fail_when_loaded_naming_the_file(tmp_path):
    make_gta5(tmp_path)
    (tmp_path / "images" / "00001.png").write_bytes(b"this is not a png")
    (tmp_path / "labels" / "00002.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    ds = build_dataset(cfg("gta5", tmp_path), CITYSCAPES, "train", train=True, crop_size=(8, 8))
    ds[0]
    with pytest.raises(DatasetError, match=r"images/00001\.png"):
        ds[1]
    with pytest.raises(DatasetError, match=r"labels/00002\.png"):
        ds[2]
    with pytest.raises(DatasetError, match=r"labels/00002\.png"):
        ds.load_label(2)
    (tmp_path / "images" / "00000.png").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"00000\.png"):
        ds[0]


def test_unknown_split_and_kind(tmp_path):
    make_gta5(tmp_path)
    with pytest.raises(DatasetError, match=r"unknown split 'val'.*train, all"):
        check_dataset(cfg("gta5", tmp_path), CITYSCAPES, "val")
    make_dark_zurich(tmp_path / "dz")
    with pytest.raises(DatasetError, match=r"unknown split 'test'.*train, val"):
        check_dataset(cfg("dark_zurich", tmp_path / "dz"), CITYSCAPES, "test")
    with pytest.raises(DatasetError, match="unknown dataset kind"):
        check_dataset(cfg("kitti", tmp_path), CITYSCAPES, "train")
    with pytest.raises(IndexError):
        build_dataset(cfg("gta5", tmp_path), CITYSCAPES, "train", train=False)[3]


def test_describe_dataset(tmp_path, fake_toy):
    make_dark_zurich(tmp_path / "dz")
    described = describe_dataset(cfg("dark_zurich", tmp_path / "dz"), CITYSCAPES)
    assert described["ok"] and described["train"] == 3 and not described["train_labelled"]
    assert described["val"] == 2 and described["val_labelled"]
    make_gta5(tmp_path / "gta")
    described = describe_dataset(cfg("gta5", tmp_path / "gta"), CITYSCAPES)
    assert described["ok"] and described["train"] == 3 and described["val"] == 0
    assert "unknown split" in described["errors"]["val"]
    described = describe_dataset(cfg("cityscapes", tmp_path / "none"), CITYSCAPES)
    assert not described["ok"] and "does not exist" in described["reason"]
    described = describe_dataset(DatasetConfig(kind="toy", domain="real"), CITYSCAPES)
    assert described["ok"] and described["train"] == 3 and described["val"] == 3


def test_dataset_from_samples_directly(tmp_path):
    write_image(tmp_path / "a.png", 8, 8)
    write_label(tmp_path / "a_label.png", np.full((9, 8), 1))
    ds = SegmentationDataset([Sample(tmp_path / "a.png", tmp_path / "a_label.png", "a")], FIVE, train=False)
    with pytest.raises(DatasetError, match=r"a_label\.png is 8x9 but its image .*a\.png is 8x8"):
        ds[0]
    with pytest.raises(ValueError):
        SegmentationDataset([Sample(tmp_path / "a.png", None, "a")], FIVE, train=False, labelled=True)
