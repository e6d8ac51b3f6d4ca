"""The segmentation dataset: training and evaluation items from a layout's samples, and a seeded sampler.

``build_dataset(cfg, classes, split, train=...)`` finds the samples of a layout (``layouts.py``), whose
files ``decoding.py`` reads, and returns a ``SegmentationDataset`` whose items are
``{"image": uint8 [3, H, W], "label": int64 [H, W], "index": int, "name": str}``.

Training items: resize to fit ``cfg.resize`` -> random rescale -> random crop (``cat_max_ratio``) ->
random horizontal flip. Evaluation items: the image resized to fit, the label at its full original
size. Unlabelled items carry an all-ignore label of the image's (or crop's) shape.

Determinism. Every random choice of an item comes from its own generator,
``np.random.default_rng([seed, salt, epoch, index, draw])``:

- ``seed``: the ``seed`` argument, or ``torch.initial_seed()`` read when the dataset is built (so
  ``torch.manual_seed(s)`` before building decides it). The dataset object carries it into every
  DataLoader worker, so an item does not depend on which process loads it: ``num_workers=0`` and
  ``num_workers=4`` give identical items, with no ``worker_init_fn``.
- ``salt``: a checksum of the dataset kind, domain/condition and split, so that a source and a target
  set sharing a seed do not draw identical crops and flips.
- ``epoch``: ``set_epoch(n)``, for epoch-style loops (call it before each ``iter(loader)``; workers
  that persist across epochs keep their old copy, hence the draw key below).
- ``draw``: ``ds[(index, draw)]`` for iteration-style loops, where one index comes up many times:
  the samplers here (``InfiniteRandomSampler``, ``rare_class_sampling.RareClassTorchSampler``) yield
  ``(index, draw)`` with ``draw`` the running position in their stream, so every draw is a fresh,
  reproducible augmentation, and resuming at draw ``k`` repeats the original run. ``ds[i]`` is
  ``ds[(i, 0)]``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from duda_engine.config import DatasetConfig
from duda_engine.data import transforms as T
from duda_engine.data.classes import ClassSpec
from duda_engine.data.decoding import decode_label, image_size, read_image, read_label
from duda_engine.data.layouts import find_samples
from duda_engine.data.samples import RESIZE_MISMATCHED_LABELS, DatasetError, Sample

__all__ = ["InfiniteRandomSampler", "SegmentationDataset", "build_dataset"]


# --------------------------------------------------------------------------------------------
# The dataset
# --------------------------------------------------------------------------------------------


def _parse_key(key: Any) -> tuple[int, int]:
    if isinstance(key, (tuple, list)):
        if len(key) != 2:
            raise TypeError(f"a dataset key is an index or (index, draw), got {key!r}")
        return int(key[0]), int(key[1])
    return int(key), 0


def _pair(value: Sequence[int] | Sequence[float], name: str) -> tuple[Any, Any]:
    if len(value) != 2:
        raise ValueError(f"{name} must have two values, got {value!r}")
    return value[0], value[1]


class SegmentationDataset(Dataset):
    """Samples of one split of one dataset, decoded and transformed per item (see module docstring)."""

    def __init__(
        self,
        samples: Sequence[Sample],
        classes: ClassSpec,
        *,
        train: bool,
        crop_size: Sequence[int] = (512, 512),
        scale_range: Sequence[float] = (0.5, 2.0),
        labelled: bool = True,
        resize: Sequence[int] | None = None,
        cat_max_ratio: float = 0.75,
        seed: int | None = None,
        salt: str = "",
        resize_mismatched_labels: bool = False,
        root: Path | str | None = None,
        kind: str = "",
        split: str = "",
        ignore_unknown_labels: bool = False,
    ):
        crop_h, crop_w = (int(v) for v in _pair(crop_size, "crop_size"))
        low, high = (float(v) for v in _pair(scale_range, "scale_range"))
        if crop_h < 1 or crop_w < 1:
            raise ValueError(f"crop_size must be positive, got {crop_size!r}")
        if not 0 < low <= high:
            raise ValueError(f"scale_range must be [low, high] with 0 < low <= high, got {scale_range!r}")
        if labelled and any(sample.label is None for sample in samples):
            raise ValueError("a labelled dataset needs a label file for every sample")
        self.samples: tuple[Sample, ...] = tuple(samples)
        self.classes = classes
        self.train = bool(train)
        self.crop_size = (crop_h, crop_w)
        self.scale_range = (low, high)
        self.labelled = bool(labelled)
        self.resize: tuple[int, int] | None = (int(resize[0]), int(resize[1])) if resize else None
        self.cat_max_ratio = float(cat_max_ratio)
        self.seed = int(torch.initial_seed() if seed is None else seed)
        self.salt = zlib.crc32(salt.encode())
        self.resize_mismatched_labels = resize_mismatched_labels
        self.root = Path(root) if root else None
        self.kind = kind
        self.split = split
        self.ignore_unknown_labels = bool(ignore_unknown_labels)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        mode = "train" if self.train else "eval"
        return f"SegmentationDataset({self.kind or 'samples'}:{self.split}, {len(self)} images, {mode})"

    # -- reproducible randomness --------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of epoch ``epoch`` (part of every item's seed)."""
        self.epoch = int(epoch)

    def rng_for(self, index: int, draw: int = 0) -> np.random.Generator:
        """The generator of item ``index`` at ``draw`` in the current epoch."""
        return np.random.default_rng([self.seed, self.salt, self.epoch, index, draw])

    # -- loading ------------------------------------------------------------------------------

    def _check_index(self, index: int) -> int:
        if index < 0:
            index += len(self.samples)
        if not 0 <= index < len(self.samples):
            raise IndexError(f"index {index} out of range for {len(self.samples)} samples")
        return index

    def _fit(self, width: int, height: int) -> tuple[int, int]:
        return T.fit_size(width, height, self.resize) if self.resize else (width, height)

    def _decoded_label(self, sample: Sample, size_wh: tuple[int, int]) -> np.ndarray:
        """The sample's label in train ids, at the image's native size ``(w, h)``."""
        assert sample.label is not None
        label = decode_label(read_label(sample.label, sample.codec), sample.codec, self.classes, sample.label,
                             ignore_unknown=self.ignore_unknown_labels)
        height, width = label.shape
        if (width, height) != tuple(size_wh):
            if not self.resize_mismatched_labels:
                raise DatasetError(
                    f"label {sample.label} is {width}x{height} but its image {sample.image} is "
                    f"{size_wh[0]}x{size_wh[1]}"
                )
            label = T.resize_label(label, size_wh)
        return label

    def _ignore(self, height: int, width: int) -> np.ndarray:
        dtype = np.uint8 if self.classes.ignore_index <= 255 else np.uint16
        return np.full((height, width), self.classes.ignore_index, dtype=dtype)

    def load_image(self, index: int) -> np.ndarray:
        """Image ``index`` as ``H x W x 3`` uint8 RGB, resized to fit ``resize``; no random ops."""
        image = read_image(self.samples[self._check_index(index)].image)
        return T.resize_to_fit(image, None, self.resize)[0]

    def load_label(self, index: int) -> np.ndarray:
        """Label ``index`` in train ids at the size ``load_image`` gives, without decoding the image.

        This is what rare class sampling counts. Unlabelled samples give an all-ignore label.
        """
        sample = self.samples[self._check_index(index)]
        width, height = image_size(sample.image)
        fit_w, fit_h = self._fit(width, height)
        if sample.label is None or not self.labelled:
            return self._ignore(fit_h, fit_w)
        return T.resize_label(self._decoded_label(sample, (width, height)), (fit_w, fit_h))

    def __getitem__(self, key: Any) -> dict[str, Any]:
        index, draw = _parse_key(key)
        index = self._check_index(index)
        sample = self.samples[index]
        image = read_image(sample.image)
        height, width = image.shape[:2]
        label = self._decoded_label(sample, (width, height)) if self.labelled else None

        view = [0.0, 0.0, 1.0, 1.0, 0.0]  # the whole image, not mirrored
        if self.train:
            rng = self.rng_for(index, draw)
            fit_w, fit_h = self._fit(width, height)
            factor = T.random_scale_factor(self.scale_range, rng)
            scaled_w, scaled_h = T.scaled_size(fit_w, fit_h, factor)
            image, label = T.resize(image, label, (scaled_w, scaled_h))  # one resize for both
            image, label, (top, left) = T.random_crop(
                image,
                label,
                self.crop_size,
                rng,
                cat_max_ratio=self.cat_max_ratio if label is not None else 1.0,
                ignore_index=self.classes.ignore_index,
            )
            flipped = T.draw_flip(rng)
            if flipped:
                image, label = T.hflip(image, label)
            crop_h, crop_w = self.crop_size
            view = [top / scaled_h, left / scaled_w, (top + crop_h) / scaled_h, (left + crop_w) / scaled_w, float(flipped)]
        else:
            image = T.resize_to_fit(image, None, self.resize)[0]  # the label keeps its full size
        if label is None:
            label = self._ignore(*image.shape[:2])
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "label": torch.from_numpy(label.astype(np.int64)),
            "index": index,
            "name": sample.name,
            # Where the item lies in the image: (top, left, bottom, right) as fractions of its height and
            # width (beyond 1 where the crop was padded), and 1.0 when mirrored after cropping.
            "view": torch.tensor(view, dtype=torch.float64),
        }


class InfiniteRandomSampler(Sampler):
    """An endless, seeded stream of dataset keys: a fresh permutation of ``range(length)`` per pass.

    Yields ``(index, draw)`` (see the module docstring) or plain indices with ``yield_draw=False``.
    Draw ``k`` is a pure function of ``(seed, k)``, so ``start=k`` resumes a stream exactly.
    ``seed=None`` takes one from torch's global generator when the sampler is made; pass an explicit
    seed for runs that are resumed, since the restored global RNG state differs.
    """

    def __init__(
        self, length: int, *, seed: int | None = None, shuffle: bool = True, start: int = 0, yield_draw: bool = True
    ):
        if length < 1:
            raise ValueError("cannot sample from an empty dataset")
        self.length = int(length)
        self.seed = int(torch.randint(0, 2**62, (1,)).item()) if seed is None else int(seed)
        self.shuffle = shuffle
        self.start = int(start)
        self.yield_draw = yield_draw

    def set_start(self, draw: int) -> None:
        """Begin the next iteration at draw ``draw`` (e.g. ``iteration * batch_size`` on resume)."""
        self.start = int(draw)

    def index_at(self, draw: int) -> int:
        epoch, position = divmod(int(draw), self.length)
        if not self.shuffle:
            return position
        return int(np.random.default_rng([self.seed, epoch]).permutation(self.length)[position])

    def __iter__(self) -> Iterator[Any]:
        draw = self.start
        permutation, permutation_epoch = None, -1
        while True:
            epoch, position = divmod(draw, self.length)
            if not self.shuffle:
                index = position
            else:
                if epoch != permutation_epoch:
                    permutation = np.random.default_rng([self.seed, epoch]).permutation(self.length)
                    permutation_epoch = epoch
                index = int(permutation[position])
            yield (index, draw) if self.yield_draw else index
            draw += 1


# --------------------------------------------------------------------------------------------
# Building and checking from a config
# --------------------------------------------------------------------------------------------


def _dataset_root(cfg: DatasetConfig, samples: Sequence[Sample]) -> Path | None:
    if cfg.kind == "toy":
        return samples[0].image.parent.parent if samples else None  # <toy folder>/images/<stem>.png
    return Path(cfg.root).expanduser() if cfg.root else None


def build_dataset(
    cfg: DatasetConfig,
    classes: ClassSpec,
    split: str,
    *,
    train: bool,
    crop_size: Sequence[int] = (512, 512),
    scale_range: Sequence[float] = (0.5, 2.0),
    labelled: bool = True,
    cat_max_ratio: float = 0.75,
    seed: int | None = None,
) -> SegmentationDataset:
    """The dataset of ``split`` of ``cfg``; raises ``DatasetError`` naming the folder or file at fault.

    ``seed=None`` uses ``torch.initial_seed()`` (see the module docstring on determinism).
    """
    samples = find_samples(cfg, split, labelled=labelled)
    return SegmentationDataset(
        samples,
        classes,
        train=train,
        crop_size=crop_size,
        scale_range=scale_range,
        labelled=labelled,
        resize=cfg.resize or None,
        cat_max_ratio=cat_max_ratio,
        seed=seed,
        salt=f"{cfg.kind}|{cfg.domain}|{cfg.condition}|{split}",
        resize_mismatched_labels=cfg.kind in RESIZE_MISMATCHED_LABELS,
        root=_dataset_root(cfg, samples),
        kind=cfg.kind,
        split=split,
        ignore_unknown_labels=cfg.ignore_unknown_labels,
    )

