"""Geometric transforms of an (image, label) pair, as pure functions on numpy arrays.

Images are ``H x W x 3`` uint8 (RGB), labels ``H x W`` integer arrays (any integer dtype) or
``None``. Random functions take a ``np.random.Generator`` and draw from nothing else, so a pair
transformed twice with equally seeded generators comes out identical. The training pipeline
(mmseg's, as DAFormer uses it) is: resize to fit -> random rescale -> random crop with
``cat_max_ratio`` -> random horizontal flip.
"""

from __future__ import annotations

import cv2
import numpy as np

from duda_engine.data.classes import IGNORE_INDEX

Pair = tuple[np.ndarray, np.ndarray | None]


def fit_size(width: int, height: int, target_wh: tuple[int, int] | list[int]) -> tuple[int, int]:
    """The ``(w, h)`` of a ``width x height`` image scaled, aspect kept, to fit inside ``target_wh``.

    The scale is ``min(W / width, H / height)``: it fits the box exactly on one side, and upscales
    images smaller than the box (as mmseg's ``Resize(keep_ratio=True)`` does).
    """
    target_w, target_h = int(target_wh[0]), int(target_wh[1])
    scale = min(target_w / width, target_h / height)
    return max(1, int(width * scale + 0.5)), max(1, int(height * scale + 0.5))


def resize_label(label: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a label of any integer dtype to ``(w, h)``.

    Each output pixel takes the input pixel under its centre (OpenCV's ``INTER_NEAREST_EXACT``
    rule), done with numpy indexing so that every dtype (int64 too) works.
    """
    height, width = label.shape[:2]
    new_w, new_h = int(size_wh[0]), int(size_wh[1])
    if (new_w, new_h) == (width, height):
        return label
    rows = np.minimum(((np.arange(new_h) + 0.5) * (height / new_h)).astype(np.int64), height - 1)
    cols = np.minimum(((np.arange(new_w) + 0.5) * (width / new_w)).astype(np.int64), width - 1)
    return np.take(np.take(label, rows, axis=0), cols, axis=1)


def resize_image(image: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an image to ``(w, h)`` (area averaging when shrinking by 2x or more)."""
    height, width = image.shape[:2]
    new_w, new_h = int(size_wh[0]), int(size_wh[1])
    if (new_w, new_h) == (width, height):
        return image
    shrink = new_w * 2 <= width and new_h * 2 <= height
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    if resized.ndim == 2 and image.ndim == 3:  # cv2 drops a trailing channel axis of size 1
        resized = resized[:, :, None]
    return resized


def resize(image: np.ndarray, label: np.ndarray | None, size_wh: tuple[int, int]) -> Pair:
    """Resize the image (bilinear) and the label (nearest) to ``(w, h)``."""
    return resize_image(image, size_wh), None if label is None else resize_label(label, size_wh)


def resize_to_fit(image: np.ndarray, label: np.ndarray | None, target_wh: tuple[int, int] | list[int] | None) -> Pair:
    """Resize the pair, aspect kept, to fit ``target_wh = (W, H)``; ``None`` or empty: unchanged."""
    if not target_wh:
        return image, label
    height, width = image.shape[:2]
    return resize(image, label, fit_size(width, height, target_wh))


def random_scale_factor(scale_range: tuple[float, float] | list[float], rng: np.random.Generator) -> float:
    """A factor drawn uniformly from ``[low, high]``."""
    low, high = float(scale_range[0]), float(scale_range[1])
    if not 0 < low <= high:
        raise ValueError(f"scale_range must be [low, high] with 0 < low <= high, got {scale_range}")
    return low if low == high else float(rng.uniform(low, high))


def scaled_size(width: int, height: int, factor: float) -> tuple[int, int]:
    """``(w, h)`` scaled by ``factor``, rounded, at least one pixel."""
    return max(1, int(width * factor + 0.5)), max(1, int(height * factor + 0.5))


def random_rescale(
    image: np.ndarray,
    label: np.ndarray | None,
    scale_range: tuple[float, float] | list[float],
    rng: np.random.Generator,
) -> Pair:
    """Rescale the pair by a factor drawn uniformly from ``scale_range``."""
    factor = random_scale_factor(scale_range, rng)
    height, width = image.shape[:2]
    return resize(image, label, scaled_size(width, height, factor))


def pad_to(
    image: np.ndarray, label: np.ndarray | None, min_hw: tuple[int, int], ignore_index: int = IGNORE_INDEX
) -> Pair:
    """Pad at the bottom and right to at least ``min_hw = (H, W)``: image with 0, label with ignore."""
    height, width = image.shape[:2]
    pad_h, pad_w = max(0, int(min_hw[0]) - height), max(0, int(min_hw[1]) - width)
    if pad_h == 0 and pad_w == 0:
        return image, label
    image = np.pad(image, ((0, pad_h), (0, pad_w)) + ((0, 0),) * (image.ndim - 2), constant_values=0)
    if label is not None:
        if not np.can_cast(np.min_scalar_type(ignore_index), label.dtype):
            label = label.astype(np.int64)
        label = np.pad(label, ((0, pad_h), (0, pad_w)), constant_values=ignore_index)
    return image, label


def dominant_class_ratio(label: np.ndarray, ignore_index: int = IGNORE_INDEX) -> float | None:
    """The largest class's share of the labelled pixels, or ``None`` when fewer than two classes occur.

    ``None`` means "fails any ``cat_max_ratio`` test", as in mmseg (a crop of one class, or all
    ignore, is never accepted while retries are left).
    """
    values = label.ravel()
    if values.dtype.kind == "i" and values.size and values.min() < 0:
        values = values[values >= 0]
    counts = np.bincount(values.astype(np.int64, copy=False)) if values.size else np.zeros(0, np.int64)
    if 0 <= ignore_index < len(counts):
        counts[ignore_index] = 0
    present = counts[counts > 0]
    if len(present) < 2:
        return None
    return float(present.max() / present.sum())


def random_crop(
    image: np.ndarray,
    label: np.ndarray | None,
    crop_hw: tuple[int, int] | list[int],
    rng: np.random.Generator,
    *,
    cat_max_ratio: float = 0.75,
    max_tries: int = 10,
    ignore_index: int = IGNORE_INDEX,
) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int]]:
    """A random ``crop_hw = (H, W)`` crop and its ``(top, left)`` corner; pads first (image 0, label
    ignore, at the bottom and right) when the pair is smaller.

    With ``cat_max_ratio < 1`` and a label, mmseg's rule: draw up to ``1 + max_tries`` crop
    positions and take the first whose most frequent class covers less than ``cat_max_ratio`` of its
    labelled pixels (with at least two classes present); if none does, take the drawn position with
    the smallest dominant share (mmseg takes the last one; the least dominated one serves the rule's
    purpose better and is as cheap).
    """
    crop_h, crop_w = int(crop_hw[0]), int(crop_hw[1])
    image, label = pad_to(image, label, (crop_h, crop_w), ignore_index)
    height, width = image.shape[:2]

    def draw() -> tuple[int, int]:
        return int(rng.integers(0, height - crop_h + 1)), int(rng.integers(0, width - crop_w + 1))

    top, left = draw()
    if label is not None and cat_max_ratio < 1.0 and (height > crop_h or width > crop_w):
        best, best_score = (top, left), 3.0
        for attempt in range(max_tries + 1):
            if attempt:
                top, left = draw()
            ratio = dominant_class_ratio(label[top : top + crop_h, left : left + crop_w], ignore_index)
            if ratio is not None and ratio < cat_max_ratio:
                best = (top, left)
                break
            score = 2.0 if ratio is None else ratio  # one class or none: worse than any mix
            if score < best_score:
                best, best_score = (top, left), score
        top, left = best
    image = image[top : top + crop_h, left : left + crop_w]
    if label is not None:
        label = label[top : top + crop_h, left : left + crop_w]
    return image, label, (top, left)


def hflip(image: np.ndarray, label: np.ndarray | None) -> Pair:
    """Mirror the pair left-right (returns contiguous copies)."""
    image = np.ascontiguousarray(image[:, ::-1])
    return image, None if label is None else np.ascontiguousarray(label[:, ::-1])


def draw_flip(rng: np.random.Generator, p: float = 0.5) -> bool:
    """Whether to mirror: one uniform draw from ``rng``, always made."""
    return bool(rng.random() < p)


def random_hflip(image: np.ndarray, label: np.ndarray | None, rng: np.random.Generator, p: float = 0.5) -> Pair:
    """``hflip`` with probability ``p`` (``draw_flip``)."""
    return hflip(image, label) if draw_flip(rng, p) else (image, label)
