"""The dataset check (every image and label read once, every problem listed, verdicts cached), a custom
dataset's ``dataset.yaml``, and a run that writes nothing when its data is broken."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from duda_engine.callbacks import Callbacks
from duda_engine.config import DatasetConfig
from duda_engine.config_loading import config_from_dict
from duda_engine.data.classes import CITYSCAPES, ClassSpec
from duda_engine.data.dataset_check import (
    LABELS_NONE,
    LABELS_OPTIONAL,
    LABELS_REQUIRED,
    MAX_LISTED,
    DatasetCheckError,
    check_dataset,
    scan_dataset,
)
from duda_engine.data.manifest import load_manifest
from duda_engine.data.samples import DatasetError
from duda_engine.train import train
from tests.engine.conftest import CLASS_NAMES, COLOURS, tiny_config, write_domain

REPO_ROOT = Path(__file__).resolve().parents[2]
THREE = ClassSpec(tuple(CLASS_NAMES), tuple(tuple(c) for c in COLOURS))


def custom(root: Path, **fields) -> DatasetConfig:
    return DatasetConfig(kind="custom", root=str(root), image_dir="{split}/images", label_dir="{split}/labels", **fields)


def break_domain(root: Path) -> dict[str, Path]:
    """One corrupt image, one label with an unknown value (7), one missing label, in the train split."""
    images, labels = root / "train" / "images", root / "train" / "labels"
    (images / "001.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    bad = np.array(Image.open(labels / "002.png"))
    bad[0, :5] = 7
    Image.fromarray(bad).save(labels / "002.png")
    (labels / "003.png").unlink()
    return {"corrupt": images / "001.png", "unknown": labels / "002.png", "unlabelled": images / "003.png"}


def test_every_problem_is_listed_with_its_file(tmp_path):
    write_domain(tmp_path, "train", 6, seed=1, shift=0)
    broken = break_domain(tmp_path)
    seen = []
    report = scan_dataset(custom(tmp_path), THREE, [("train", LABELS_REQUIRED)], cache_dir=tmp_path / "cache",
                          progress=lambda done, total: seen.append((done, total)))
    assert not report.ok
    assert report.counts == {"missing label": 1, "unreadable image": 1, "unknown label values": 1}
    assert len(report.problems) == 3
    text = "\n".join(report.problems)
    assert f"cannot decode image {broken['corrupt']}" in text
    assert f"label {broken['unknown']} holds values 7 that are neither class ids 0..2 nor the ignore value 255" in text
    assert f"image {broken['unlabelled']} has no label" in text
    assert report.files == 5 + 5  # the five images with a label and their labels
    assert seen[0] == (0, 10) and seen[-1] == (10, 10)


def test_the_switch_makes_unknown_values_ignore(tmp_path):
    write_domain(tmp_path, "train", 3, seed=1, shift=0)
    label = np.array(Image.open(tmp_path / "train" / "labels" / "000.png"))
    label[:2] = 9
    Image.fromarray(label).save(tmp_path / "train" / "labels" / "000.png")
    strict = scan_dataset(custom(tmp_path), THREE, [("train", LABELS_REQUIRED)], use_cache=False)
    assert strict.counts == {"unknown label values": 1}
    with pytest.raises(DatasetError, match="000.png holds values 9"):
        check_dataset(custom(tmp_path), THREE, "train")  # the validator's quick look at the first sample
    lenient = scan_dataset(custom(tmp_path, ignore_unknown_labels=True), THREE, [("train", LABELS_REQUIRED)], use_cache=False)
    assert lenient.ok and lenient.problems == []
    assert check_dataset(custom(tmp_path, ignore_unknown_labels=True), THREE, "train") == 3


def test_problems_beyond_the_cap_are_counted(tmp_path):
    write_domain(tmp_path, "train", MAX_LISTED + 10, seed=1, shift=0)
    for image in (tmp_path / "train" / "images").iterdir():
        image.write_bytes(b"broken")
    report = scan_dataset(custom(tmp_path), THREE, [("train", LABELS_REQUIRED)], use_cache=False)
    assert report.total_problems == MAX_LISTED + 10 and len(report.problems) == MAX_LISTED
    assert report.summary().endswith(f"and 10 more ({MAX_LISTED + 10} unreadable image)")


def test_a_second_check_of_an_unchanged_tree_comes_from_the_cache(tmp_path):
    write_domain(tmp_path / "data", "train", 8, seed=1, shift=0)
    cache = tmp_path / "cache"
    first = scan_dataset(custom(tmp_path / "data"), THREE, [("train", LABELS_REQUIRED)], cache_dir=cache)
    second = scan_dataset(custom(tmp_path / "data"), THREE, [("train", LABELS_REQUIRED)], cache_dir=cache)
    assert first.ok and not first.cached and second.ok and second.cached
    assert not list(tmp_path.glob("data/**/*.json")), "the cache stays outside the dataset"
    assert [p.suffix for p in cache.iterdir()] == [".json"]  # written atomically: no temporary left
    label = tmp_path / "data" / "train" / "labels" / "004.png"
    bad = np.array(Image.open(label))
    bad[0, 0] = 200
    Image.fromarray(bad).save(label)
    os.utime(label, ns=(label.stat().st_atime_ns, label.stat().st_mtime_ns + 10**9))
    third = scan_dataset(custom(tmp_path / "data"), THREE, [("train", LABELS_REQUIRED)], cache_dir=cache)
    assert not third.cached and third.counts == {"unknown label values": 1}
    missing = tmp_path / "data" / "train" / "labels" / "005.png"
    kept = missing.read_bytes()
    missing.unlink()
    fourth = scan_dataset(custom(tmp_path / "data"), THREE, [("train", LABELS_REQUIRED)], cache_dir=cache)
    assert not fourth.cached and fourth.counts == {"unknown label values": 1, "missing label": 1}
    assert scan_dataset(custom(tmp_path / "data"), THREE, [("train", LABELS_REQUIRED)], cache_dir=cache).cached
    missing.write_bytes(kept)  # the label is back: a new verdict, not the cached one
    fifth = scan_dataset(custom(tmp_path / "data"), THREE, [("train", LABELS_REQUIRED)], cache_dir=cache)
    assert not fifth.cached and fifth.counts == {"unknown label values": 1}


def test_an_unlabelled_split_is_read_for_its_images_only(tmp_path):
    write_domain(tmp_path, "train", 3, seed=1, shift=0)
    for label in (tmp_path / "train" / "labels").iterdir():
        label.unlink()
    optional = scan_dataset(custom(tmp_path), THREE, [("train", LABELS_OPTIONAL)], use_cache=False)
    assert optional.ok and optional.splits["train"] == {"images": 3, "labelled": False}
    images_only = scan_dataset(custom(tmp_path), THREE, [("train", LABELS_NONE)], use_cache=False)
    assert images_only.ok and images_only.files == 3


def write_label_file(path: Path, values: list[int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.tile(np.array(values, np.uint8), (8, 1))).save(path)


def write_rgb(path: Path, width: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((8, width, 3), np.uint8)).save(path)


def test_real_layouts_refuse_unknown_label_values(tmp_path):
    gta = tmp_path / "gta5"
    write_rgb(gta / "images" / "00001.png", 4)
    write_label_file(gta / "labels" / "00001.png", [7, 26, 0, 250])  # 250 is no Cityscapes label id
    report = scan_dataset(DatasetConfig(kind="gta5", root=str(gta)), CITYSCAPES, [("train", LABELS_REQUIRED)], use_cache=False)
    assert report.problems == [f"label {gta / 'labels' / '00001.png'} holds values 250 that are neither Cityscapes label "
                               "ids 0..33 nor the ignore value 255 (set ignore_unknown_labels: true to treat them as ignore)"]
    city = tmp_path / "cityscapes"
    write_rgb(city / "leftImg8bit" / "val" / "a" / "a_0_leftImg8bit.png", 3)
    write_label_file(city / "gtFine" / "val" / "a" / "a_0_gtFine_labelTrainIds.png", [0, 18, 40])
    report = scan_dataset(DatasetConfig(kind="cityscapes", root=str(city)), CITYSCAPES, [("val", LABELS_REQUIRED)],
                          use_cache=False)
    assert report.counts == {"unknown label values": 1} and "holds values 40 that are neither class ids 0..18" in report.problems[0]


def test_the_manifest_holds_layout_and_classes(tmp_path):
    (tmp_path / "dataset.yaml").write_text(
        "label: Orchard\nimage_dir: images\nlabel_dir: labels\n"
        "classes:\n  names: [soil, trunk, leaves]\n  colours: [[1, 2, 3], [4, 5, 6], [7, 8, 9]]\n")
    manifest = load_manifest(tmp_path)
    assert manifest.label == "Orchard" and manifest.dataset.image_dir == "images"
    assert manifest.classes.preset == "custom" and manifest.classes.names == ["soil", "trunk", "leaves"]
    assert manifest.class_list()[2] == {"id": 2, "name": "leaves", "colour": [7, 8, 9]}

    (tmp_path / "dataset.yaml").write_text(
        "image_dir: images\nlabel_dir: labels\nclasses:\n  names: [soil, trunk, leaves]\n  colours: [[1, 2, 3], [4, 5, 6]]\n")
    with pytest.raises(DatasetError) as error:
        load_manifest(tmp_path)
    assert str(error.value) == (f"{tmp_path / 'dataset.yaml'}: classes.colours: classes.names has 3 names but "
                                "classes.colours has 2 colours; give one RGB colour per class, in the same order")

    (tmp_path / "dataset.yaml").write_text("image_dir: images\nlabel_dir: labels\nclases: {}\n")
    with pytest.raises(DatasetError, match=r"dataset.yaml: clases: unknown key \(known: classes, .*label, label_dir"):
        load_manifest(tmp_path)


def test_run_config_count_mismatch_names_both_fields():
    with pytest.raises(Exception) as error:
        config_from_dict({"classes": {"preset": "custom", "names": ["a", "b", "c"], "colours": [[0, 0, 0]] * 2}})
    assert str(error.value) == ("classes.colours: classes.names has 3 names but classes.colours has 2 colours; "
                                "give one RGB colour per class, in the same order")


@pytest.fixture()
def broken_domains(tmp_path) -> Path:
    root = tmp_path / "domains"
    for name, shift, seed in (("source", 0, 1), ("target", 40, 2)):
        write_domain(root / name, "train", 6, seed, shift)
        write_domain(root / name, "val", 3, seed + 10, shift)
    break_domain(root / "source")
    return root


def test_a_broken_dataset_leaves_no_run_folder_and_lists_every_problem(broken_domains, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(tiny_config(broken_domains, tmp_path / "run")))
    completed = subprocess.run([sys.executable, "-m", "duda_engine", "train", "--config", str(path), "--quiet"],
                               cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2, completed.stderr
    assert not (tmp_path / "run").exists()
    lines = completed.stderr.strip().splitlines()
    assert lines[0] == f"error: source.root: custom dataset {broken_domains / 'source'}: 3 problems:"
    assert len(lines) == 4
    assert "Traceback" not in completed.stderr
    assert any("cannot decode image" in line and "001.png" in line for line in lines[1:])
    assert any("002.png holds values 7" in line for line in lines[1:])
    assert any("003.png has no label" in line for line in lines[1:])


def test_a_real_layout_with_unknown_label_values_is_refused_by_the_cli(tmp_path):
    gta = tmp_path / "gta5"
    for i in range(2):
        Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(Path(write_parent(gta / "images" / f"{i:05d}.png")))
        Image.fromarray(np.full((64, 64), 7 if i == 0 else 250, np.uint8)).save(write_parent(gta / "labels" / f"{i:05d}.png"))
    data = {"source": {"kind": "gta5", "root": str(gta)}, "target": {"kind": "toy", "domain": "real"},
            "output_dir": str(tmp_path / "run"), "train": {"iterations": 1, "crop_size": [32, 32], "num_workers": 0}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    completed = subprocess.run([sys.executable, "-m", "duda_engine", "train", "--config", str(path), "--quiet"],
                               cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2, completed.stderr
    assert f"{gta / 'labels' / '00001.png'} holds values 250 that are neither Cityscapes label ids" in completed.stderr
    assert not (tmp_path / "run").exists()


def write_parent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


class FailAtFirstMetrics(Callbacks):
    def on_metrics(self, step, values):
        raise RuntimeError("the disk is full")


def test_a_failure_before_the_first_checkpoint_removes_what_the_run_wrote(tiny_domains, tmp_path, one_torch_thread):
    config = config_from_dict(tiny_config(tiny_domains, tmp_path / "run", checkpoint_interval=0))
    with pytest.raises(RuntimeError, match="the disk is full"):
        train(config, FailAtFirstMetrics())
    assert not (tmp_path / "run").exists()
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "notes.txt").write_text("mine")
    config = config_from_dict(tiny_config(tiny_domains, tmp_path / "kept", checkpoint_interval=0))
    with pytest.raises(RuntimeError, match="the disk is full"):
        train(config, FailAtFirstMetrics())
    assert [p.name for p in (tmp_path / "kept").iterdir()] == ["notes.txt"]


def test_the_check_error_is_one_line_naming_the_dataset(broken_domains, tmp_path):
    config = config_from_dict(tiny_config(broken_domains, tmp_path / "run"))
    with pytest.raises(DatasetCheckError) as error:
        train(config)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"source.root: custom dataset {broken_domains / 'source'}: 3 problems: ")


def test_a_config_may_name_a_custom_dataset_by_its_folder(tmp_path):
    from duda_engine.config_fields import ConfigError
    from duda_engine.config_loading import load_config

    write_domain(tmp_path / "yard", "train", 2, seed=1, shift=0)
    (tmp_path / "yard" / "dataset.yaml").write_text(
        "image_dir: '{split}/images'\nlabel_dir: '{split}/labels'\nresize: [96, 64]\n"
        "classes:\n  names: [ground, box, disc]\n  colours: [[90, 90, 90], [200, 40, 40], [40, 40, 220]]\n")
    path = tmp_path / "run.yaml"
    path.write_text(f"source: {{kind: custom, root: {tmp_path / 'yard'}, resize: [48, 32]}}\n"
                    f"target: {{kind: custom, root: {tmp_path / 'yard'}}}\n")
    config = load_config(path)
    assert config.source.image_dir == "{split}/images" and config.target.label_dir == "{split}/labels"
    assert config.source.resize == [48, 32] and config.target.resize == [96, 64]  # the config's own keys win
    assert config.classes.preset == "custom" and config.classes.names == ["ground", "box", "disc"]
    with pytest.raises(ConfigError, match=r"^classes: differ from the classes of .*dataset.yaml \(ground, box, disc\)"):
        load_config(path, {"classes.preset": "cityscapes"})
