"""Checking a dataset before training: ``check_dataset`` counts a split's samples and decodes the first
image and label; ``describe_dataset`` summarises both splits for a listing and never raises.
"""

from __future__ import annotations

import contextlib
from typing import Any

from duda_engine.config import DatasetConfig
from duda_engine.data.classes import ClassSpec
from duda_engine.data.decoding import decode_label, image_size, read_label
from duda_engine.data.layouts import find_samples
from duda_engine.data.samples import LAYOUTS, RESIZE_MISMATCHED_LABELS, DatasetError


def check_dataset(
    cfg: DatasetConfig, classes: ClassSpec, split: str, labelled: bool = True, *, probe: bool = True
) -> int:
    """Validate a split cheaply and return its sample count.

    Checks the folders, the pairing of every image with its label (file existence only) and, with
    ``probe``, decodes the first image and label, so that a wrong label format (colour labels,
    values outside the classes) is reported before training starts.
    """
    samples = find_samples(cfg, split, labelled=labelled)
    if not samples:
        raise DatasetError(f"{cfg.kind} dataset: no samples in split {split!r} (expected layout: {LAYOUTS[cfg.kind]})")
    if probe:
        first = samples[0]
        width, height = image_size(first.image)
        if first.label is not None and labelled:
            label = decode_label(read_label(first.label, first.codec), first.codec, classes, first.label)
            if label.shape != (height, width) and cfg.kind not in RESIZE_MISMATCHED_LABELS:
                raise DatasetError(
                    f"label {first.label} is {label.shape[1]}x{label.shape[0]} but its image {first.image} "
                    f"is {width}x{height}"
                )
    return len(samples)


def describe_dataset(cfg: DatasetConfig, classes: ClassSpec) -> dict[str, Any]:
    """A summary for listing datasets; never raises.

    ``{"kind", "root", "ok", "reason", "train", "train_labelled", "val", "val_labelled", "errors"}``:
    counts of ``cfg.train_split`` and ``cfg.val_split`` (with labels if every image has one, else
    unlabelled, with the labelled check's error under ``errors``); ``ok`` when the train split has
    images; ``reason`` the first error.
    """
    result: dict[str, Any] = {
        "kind": cfg.kind,
        "root": cfg.root,
        "ok": False,
        "reason": "",
        "train": 0,
        "train_labelled": False,
        "val": 0,
        "val_labelled": False,
        "errors": {},
    }
    for key, split in (("train", cfg.train_split), ("val", cfg.val_split)):
        try:
            result[key] = check_dataset(cfg, classes, split, labelled=True)
            result[f"{key}_labelled"] = True
            continue
        except DatasetError as error:
            result["errors"][key] = str(error)
        except Exception as error:  # an unexpected failure must not break a listing page
            result["errors"][key] = f"{type(error).__name__}: {error}"
            continue
        # Unlabelled count; on failure keep the labelled check's message, the more informative one.
        with contextlib.suppress(Exception):
            result[key] = check_dataset(cfg, classes, split, labelled=False)
    result["ok"] = result["train"] > 0
    result["reason"] = result["errors"].get("train") or result["errors"].get("val") or ""
    return result
