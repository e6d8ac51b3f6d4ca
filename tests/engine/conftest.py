"""A tiny custom-layout pair of domains (3 classes, 64x64) for fast end-to-end engine tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

CLASS_NAMES = ["ground", "box", "disc"]
COLOURS = [[90, 90, 90], [200, 40, 40], [40, 40, 220]]


def write_domain(root: Path, split: str, count: int, seed: int, shift: int) -> None:
    rng = np.random.default_rng(seed)
    images, labels = root / split / "images", root / split / "labels"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:64, 0:96]
    for i in range(count):
        label = np.zeros((64, 96), np.uint8)
        x0, y0 = rng.integers(0, 60), rng.integers(0, 30)
        label[y0 : y0 + rng.integers(12, 30), x0 : x0 + rng.integers(12, 30)] = 1
        cx, cy, r = rng.integers(10, 86), rng.integers(10, 54), rng.integers(5, 12)
        label[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = 2
        palette = np.array([[80, 120, 80], [200, 60, 50], [50, 60, 200]], np.int16) + shift
        image = palette[label] + rng.integers(-25, 25, (64, 96, 3))
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(images / f"{i:03d}.png")
        Image.fromarray(label).save(labels / f"{i:03d}.png")


@pytest.fixture()
def one_torch_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a busy CI runner spinning threads crawl."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_domains(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny_domains")
    for name, shift, seed in (("source", 0, 1), ("target", 40, 2)):
        write_domain(root / name, "train", 16, seed, shift)
        write_domain(root / name, "val", 6, seed + 10, shift)
    return root


def tiny_config(root: Path, output_dir: Path, method: str = "source_only", **train) -> dict:
    domain = {"kind": "custom", "image_dir": "{split}/images", "label_dir": "{split}/labels"}
    return {
        "name": "tiny",
        "method": method,
        "seed": 3,
        "output_dir": str(output_dir),
        "classes": {"preset": "custom", "names": CLASS_NAMES, "colours": COLOURS},
        "source": {**domain, "root": str(root / "source")},
        "target": {**domain, "root": str(root / "target")},
        "model": {"student": "mit_b0", "auxiliary": "mit_b0"},
        "optim": {"warmup_iters": 2, "lr": 0.0006},
        "train": {
            "iterations": 6,
            "batch_size": 2,
            "crop_size": [32, 32],
            "scale_range": [0.75, 1.25],
            "eval_interval": 3,
            "checkpoint_interval": 3,
            "log_interval": 1,
            "num_workers": 0,
            "num_samples": 2,
            **train,
        },
        "self_training": {"rcs_min_pixels": 100},
        "duda": {"pre_adaptation": 0.3, "ramp": 0.3, "teachers": ["ema", "student_ema"]},
    }
