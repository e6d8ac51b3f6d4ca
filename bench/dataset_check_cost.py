"""What the dataset check (``duda_engine.data.dataset_check.scan_dataset``) costs: images per second at
1024x512, the bundled toy domains, a generated tree of 3,000 small images, and the second check of that
unchanged tree (its verdict from the cache).

    python bench/dataset_check_cost.py --json experiments/bench/dataset_check_cpu.json

Every timing reads the files for real (the first three with the cache off); a freshly written file may
still be in the page cache, as it would be right after copying a dataset.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from duda_engine.config import DatasetConfig  # noqa: E402
from duda_engine.data.classes import CITYSCAPES, ClassSpec  # noqa: E402
from duda_engine.data.dataset_check import LABELS_REQUIRED, scan_dataset  # noqa: E402
from duda_engine.data.layouts import find_samples  # noqa: E402

THREE = ClassSpec(("ground", "box", "disc"), ((90, 90, 90), (200, 40, 40), (40, 40, 220)))


def write_tree(root: Path, count: int, width: int, height: int, seed: int = 0) -> None:
    """``count`` images (a smooth gradient with noise, like a photo compresses) and 3-class labels."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 // max(width - 1, 1), yy * 255 // max(height - 1, 1), (xx + yy) % 256], -1)
    for i in range(count):
        noise = rng.integers(-12, 12, (height, width, 3))
        Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(root / "images" / f"{i:05d}.png")
        label = np.zeros((height, width), np.uint8)
        x0, y0 = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
        label[y0 : y0 + height // 3, x0 : x0 + width // 3] = 1
        label[(xx - width // 2) ** 2 + (yy - height // 2) ** 2 < (height // 5) ** 2] = 2
        Image.fromarray(label).save(root / "labels" / f"{i:05d}.png")


def custom(root: Path) -> DatasetConfig:
    return DatasetConfig(kind="custom", root=str(root), image_dir="images", label_dir="labels")


def timed(cfg: DatasetConfig, classes: ClassSpec, splits, **options) -> dict:
    started = time.perf_counter()
    report = scan_dataset(cfg, classes, splits, **options)
    seconds = time.perf_counter() - started
    images = sum(s["images"] for s in report.splits.values())
    assert report.ok, report.summary()
    return {"images": images, "files": report.files, "seconds": round(seconds, 3), "cached": report.cached,
            "images_per_s": round(images / seconds, 1) if seconds else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--large", type=int, default=60, help="images at 1024x512")
    parser.add_argument("--tree", type=int, default=3000, help="images in the generated tree")
    parser.add_argument("--tree-size", default="128x64", help="WxH of the tree's images")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    width, height = (int(v) for v in args.tree_size.split("x"))
    results: dict = {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                     "load_average_at_start": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="duda-check-bench-") as scratch:
        scratch = Path(scratch)
        write_tree(scratch / "large", args.large, 1024, 512)
        results["1024x512"] = timed(custom(scratch / "large"), THREE, [("train", LABELS_REQUIRED)], use_cache=False)

        toy = {}
        for domain in ("synthetic_a", "synthetic_b", "real", "fog", "night"):
            cfg = DatasetConfig(kind="toy", domain=domain, toy_size="demo")
            for split in ("train", "val"):
                find_samples(cfg, split)  # generated on first use: not part of the check
            toy[domain] = timed(cfg, CITYSCAPES, [("train", LABELS_REQUIRED), ("val", LABELS_REQUIRED)], use_cache=False)
        results["toy_demo"] = toy
        results["toy_demo_total_s"] = round(sum(t["seconds"] for t in toy.values()), 3)

        write_tree(scratch / "tree", args.tree, width, height, seed=1)
        cache = scratch / "cache"
        results[f"tree_{args.tree}_{args.tree_size}_first"] = timed(custom(scratch / "tree"), THREE,
                                                                  [("train", LABELS_REQUIRED)], cache_dir=cache)
        results[f"tree_{args.tree}_{args.tree_size}_second"] = timed(custom(scratch / "tree"), THREE,
                                                                   [("train", LABELS_REQUIRED)], cache_dir=cache)
    results["load_average_at_end"] = os.getloadavg()
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
