"""Precomputed predictions of a frozen teacher, for when memory is short.

A frozen teacher (a network from an earlier run) never changes, so its class probabilities on every
training image can be computed once before training and the network dropped: training then holds a
memory-mapped file instead of the network, its activations and its forward passes.

Each image's probabilities are stored at ``1/stride`` of the size the dataset fits images to, as
uint8 (``round(p * 255)``), in one ``.npy`` file per teacher and dataset with a ``.json`` beside it
saying what it was computed from; a file whose description does not match is computed again. Both
are written to temporary files and renamed, so an interrupted run never leaves half a file in use.

A training crop finds its predictions again through its view (where the crop lies in its image and
whether it was mirrored, see ``SegmentationDataset``): the stored map is resampled bilinearly over that
box at the crop's size. Pixels outside the image (a crop's padding) get the uniform distribution.

How this differs from running the teacher live, by construction: the teacher saw each image whole and
un-augmented, not the rescaled crop; and on a ClassMix image its soft label is the class-mix of its
predictions on the two images mixed, not its prediction on the mixed, colour-jittered image.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from duda_engine.data.datasets import SegmentationDataset
from duda_engine.evaluate import predict_logits

FORMAT = "duda-precomputed-v1"


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


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


def sharpen(probabilities: torch.Tensor, temperature: float) -> torch.Tensor:
    """``softmax(logits / T)`` from ``softmax(logits)``: ``p^(1/T)`` renormalised over classes (dim 1)."""
    if temperature == 1.0:
        return probabilities
    powered = probabilities.clamp_min(1e-12).pow(1.0 / temperature)
    return powered / powered.sum(1, keepdim=True)


class PrecomputedTeacher:
    """A frozen teacher's stored class probabilities on every image of one dataset."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.meta = json.loads(self.path.with_suffix(".json").read_text())
        self.maps = np.load(self.path, mmap_mode="r")  # [N, K, h, w] uint8

    @property
    def num_classes(self) -> int:
        return int(self.maps.shape[1])

    @classmethod
    def build(
        cls,
        model: nn.Module,
        num_classes: int,
        dataset: SegmentationDataset,
        path: Path,
        description: dict,
        stride: int,
        device: torch.device,
        eval_mode: str = "whole",
        window: tuple[int, int] = (512, 512),
        window_stride: tuple[int, int] = (341, 341),
    ) -> PrecomputedTeacher:
        """Load ``path`` when it was computed from the same ``description``; otherwise compute it.

        ``description`` names the teacher (its file and digest) and the dataset; the grid, stride and
        image count are added here.
        """
        path = Path(path)
        first = dataset.load_image(0)
        grid = (math.ceil(first.shape[0] / stride), math.ceil(first.shape[1] / stride))
        expected = {"format": FORMAT, **description, "stride": stride, "grid": list(grid), "images": len(dataset)}
        meta_path = path.with_suffix(".json")
        if path.exists() and meta_path.exists() and json.loads(meta_path.read_text()) == expected:
            return cls(path)

        path.parent.mkdir(parents=True, exist_ok=True)
        meta_path.unlink(missing_ok=True)  # the old description no longer holds once the map is rewritten
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
                    logits = predict_logits(model, images, num_classes, tuple(images.shape[-2:]), eval_mode, window, window_stride)
                    probabilities = F.adaptive_avg_pool2d(torch.softmax(logits.float(), dim=1), grid)[0]
                    maps[index] = probabilities.mul(255.0).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
            maps.flush()
            del maps
            os.replace(partial, path)
        finally:
            model.train(was_training)
            partial.unlink(missing_ok=True)
        meta_partial = meta_path.with_name(meta_path.name + ".partial")
        meta_partial.write_text(json.dumps(expected, indent=2))
        os.replace(meta_partial, meta_path)
        return cls(path)

    def probabilities(
        self, indices: torch.Tensor, views: torch.Tensor, size_hw: tuple[int, int], temperature: float, device: torch.device
    ) -> torch.Tensor:
        """``[B,K,H,W]`` probabilities (at ``temperature``) of the crops ``views`` of images ``indices``."""
        rows = np.stack([self.maps[int(i)] for i in indices.tolist()])
        maps = torch.from_numpy(rows).to(device).float().div_(255.0)
        cropped = crop_views(maps, views, size_hw)
        total = cropped.sum(1, keepdim=True)
        uniform = torch.full_like(cropped, 1.0 / self.num_classes)
        normalised = torch.where(total > 1e-3, cropped / total.clamp_min(1e-3), uniform)
        return sharpen(normalised, temperature)
