"""Precomputed predictions of a frozen teacher, for when memory is short.

A frozen teacher (a network from an earlier run) never changes, so its class probabilities on every
training image can be computed once before training and the network dropped: training then holds a
memory-mapped file instead of the network, its activations and its forward passes.

Each image's log-probabilities are stored at ``1/stride`` of the size the dataset fits images to, as
uint8 over ``[-LOG_RANGE, 0]`` (a step of 0.063 in log space: every probability within 3.2 %, down to
1e-7, so distillation at a temperature sees the teacher's small probabilities too), in one ``.npy``
file per teacher and dataset with a ``.json`` beside it describing what it was computed from (the
teacher file's digest, the ordered image list, the sizes); a file whose description does not match is
computed again. Both are written to temporary files and renamed, so an interrupted run never leaves
half a file in use. Size: images x classes x (H/stride) x (W/stride) bytes.

A training crop finds its predictions again through its view (where the crop lies in its image and
whether it was mirrored, see ``SegmentationDataset``): the stored map is resampled bilinearly (in log
space) over that box at the crop's size. Pixels outside the image (a crop's padding) get the uniform
distribution.

How this differs from running the teacher live, by construction: the teacher saw each image whole and
un-augmented, not the rescaled crop (on a ClassMix image its soft label is, as a live teacher's, the
class-mix of its predictions on the two images mixed). And
probabilities below exp(-16) are stored as exp(-16): at a temperature T that floor becomes exp(-16/T),
negligible up to T = 2 (the default: on random logits the stored softened probabilities stay within
0.015 of live, which is the rounding of the codes) but not at T = 4 (up to 0.1 where many classes are
very unlikely).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from duda_engine.checkpoint import atomic_write_bytes
from duda_engine.data.datasets import SegmentationDataset
from duda_engine.evaluate import predict_logits
from duda_engine.methods.common import autocast

FORMAT = "duda-precomputed-v2"
LOG_RANGE = 16.0  # stored log-probabilities cover [-16, 0]: p from 1.1e-7 to 1
WAIT_POLL_S = 2.0


def encode_log_probabilities(log_probabilities: torch.Tensor) -> torch.Tensor:
    """uint8 codes of log-probabilities: 0 is log p = 0, 255 is log p <= -LOG_RANGE."""
    return (log_probabilities.clamp(-LOG_RANGE, 0.0) * (-255.0 / LOG_RANGE)).round().to(torch.uint8)


def decode_log_probabilities(codes: torch.Tensor) -> torch.Tensor:
    return codes.float() * (-LOG_RANGE / 255.0)


def at_temperature(log_probabilities: torch.Tensor, temperature: float) -> torch.Tensor:
    """``softmax(logits / T)`` from (unnormalised) log-probabilities ``[B,K,H,W]``."""
    return torch.softmax(log_probabilities / temperature, dim=1)


def crop_views(maps: torch.Tensor, views: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """Resample whole-image maps ``[B,C,h,w]`` over each view ``[B,5]`` to ``[B,C,H,W]``.

    A view is ``(top, left, bottom, right, mirrored)`` with the box in fractions of the image's height
    and width; output pixel ``(i, j)`` looks at the box's point ``(i + 0.5) / H, (j + 0.5) / W``
    (mirrored: from the right). Points outside the image (a crop's padding) read 0.
    """
    batch, channels = maps.shape[:2]
    height, width = int(size_hw[0]), int(size_hw[1])
    views = views.to(maps.device, torch.float64)
    top, left, bottom, right, mirrored = views.unbind(1)
    direction = 1.0 - 2.0 * (mirrored > 0.5).double()
    # grid_sample's coordinates run from -1 to 1 over the map (align_corners=False); so do the output's.
    theta = torch.zeros(batch, 2, 3, dtype=torch.float64, device=maps.device)
    theta[:, 0, 0] = (right - left) * direction
    theta[:, 0, 2] = left + right - 1.0
    theta[:, 1, 1] = bottom - top
    theta[:, 1, 2] = top + bottom - 1.0
    grid = F.affine_grid(theta.to(maps.dtype), [batch, channels, height, width], align_corners=False)
    # Inside the image the edge pixels extend to its border (as the image resize does); outside reads 0.
    sampled = F.grid_sample(maps, grid, mode="bilinear", padding_mode="border", align_corners=False)
    inside = (grid.abs() <= 1.0).all(dim=-1)
    return sampled * inside[:, None].to(sampled.dtype)


def describe(dataset: SegmentationDataset, teacher: dict, stride: int, inference: dict) -> dict:
    """What a stored file must have been computed from to be reused: the teacher (``teacher``: its
    file and digest), the ordered images, their fitted size, the stride and how the teacher predicted."""
    images = hashlib.sha256("\n".join(str(sample.image) for sample in dataset.samples).encode()).hexdigest()
    first = dataset.load_image(0)
    grid = [math.ceil(first.shape[0] / stride), math.ceil(first.shape[1] / stride)]
    return {"format": FORMAT, **teacher, "images": len(dataset), "images_sha256": images,
            "resize": list(dataset.resize or []), "stride": stride, "grid": grid, "inference": inference}


class PrecomputedTeacher:
    """A frozen teacher's stored log-probabilities on every image of one dataset."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.meta = json.loads(self.path.with_suffix(".json").read_text())
        self.maps = np.load(self.path, mmap_mode="r")  # [N, K, h, w] uint8 codes

    @classmethod
    def open_if_current(cls, path: Path, expected: dict) -> PrecomputedTeacher | None:
        """The stored file at ``path`` when its description is ``expected``, else None."""
        path = Path(path)
        meta_path = path.with_suffix(".json")
        try:
            current = path.exists() and json.loads(meta_path.read_text()) == expected
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return cls(path) if current else None

    @classmethod
    def wait_for(cls, path: Path, expected: dict) -> PrecomputedTeacher:
        """Wait for another process (data-parallel rank 0) to finish ``path``; no collective is held
        meanwhile, so a long precomputation meets no collective timeout."""
        while (store := cls.open_if_current(path, expected)) is None:
            time.sleep(WAIT_POLL_S)
        return store

    @classmethod
    def compute(
        cls,
        model: nn.Module,
        num_classes: int,
        dataset: SegmentationDataset,
        path: Path,
        expected: dict,
        device: torch.device,
        amp: bool = False,
    ) -> PrecomputedTeacher:
        """Predict every image of ``dataset`` with ``model`` (as ``expected["inference"]`` says) and store it."""
        path = Path(path)
        meta_path = path.with_suffix(".json")
        path.parent.mkdir(parents=True, exist_ok=True)
        meta_path.unlink(missing_ok=True)  # the old description no longer holds once the map is rewritten
        grid, inference = tuple(expected["grid"]), expected["inference"]
        partial = path.with_name(path.name + ".partial.npy")
        maps = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=(len(dataset), num_classes, *grid))
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                for index in range(len(dataset)):
                    image = dataset.load_image(index)
                    images = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]
                    images = images.to(device).float().div_(255.0)
                    with autocast(device, amp):
                        logits = predict_logits(
                            model, images, num_classes, tuple(images.shape[-2:]), inference["mode"],
                            tuple(inference["window"]), tuple(inference["stride"]),
                        )
                    probabilities = F.adaptive_avg_pool2d(torch.softmax(logits.float(), dim=1), grid)
                    codes = encode_log_probabilities(torch.log(probabilities.clamp_min(1e-30)))[0]
                    maps[index] = codes.cpu().numpy()
            maps.flush()
            del maps
            os.replace(partial, path)
        finally:
            model.train(was_training)
            partial.unlink(missing_ok=True)
        text = json.dumps(expected, indent=2).encode()
        atomic_write_bytes(meta_path, lambda handle: handle.write(text))
        return cls(path)

    def log_probabilities(self, indices: torch.Tensor, views: torch.Tensor, size_hw: tuple[int, int], device: torch.device) -> torch.Tensor:
        """``[B,K,H,W]`` log-probabilities on the crops ``views`` of images ``indices`` (0 everywhere,
        i.e. uniform, on a crop's padding). Copied to a CUDA device without waiting on it."""
        rows = torch.from_numpy(np.stack([self.maps[int(i)] for i in indices.tolist()]))
        views = views.to(torch.float64)
        if device.type == "cuda":
            rows, views = rows.pin_memory(), views.pin_memory()
        rows, views = rows.to(device, non_blocking=True), views.to(device, non_blocking=True)
        return crop_views(decode_log_probabilities(rows), views, size_hw)
