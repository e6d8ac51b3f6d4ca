"""Rare class sampling (DAFormer): draw source images that hold rare classes more often.

1. ``compute_class_pixel_counts(dataset)``: pixels per class of every label (labels only, at the
   size the dataset resizes to), cached as JSON (``rcs_stats_<hash>.json``) in the dataset's root
   folder when it is writable, else in ``$DUDA_CACHE_DIR`` or ``~/.cache/duda_studio``.
2. ``class_probabilities(freq, T)``: ``P(c) ∝ exp((1 - f_c) / T)`` over the classes that occur.
3. ``RareClassSampler``: pick a class by ``P``, then uniformly an image holding more than
   ``min_pixels`` of it. DAFormer's threshold (3000) is an absolute pixel count; here it is scaled
   per image by ``label area / (1024 * 512)`` (``reference_size``), so it is 3000 pixels for a
   1024x512 label, 750 for a 512x256 one and ~5300 for a GTA5 label resized to 1280x720. Classes
   without a qualifying image are left out (their probability goes to the others).
4. ``RareClassTorchSampler``: an endless, seeded ``torch.utils.data.Sampler`` of ``(index, draw)``
   keys for ``SegmentationDataset`` (see ``datasets.py`` on determinism).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from duda_engine.data.label_maps import CITYSCAPES_ID_TO_TRAIN_ID, SYNTHIA_ID_TO_TRAIN_ID

STATS_VERSION = 1
REFERENCE_SIZE = (1024, 512)  # (W, H) of the label on which min_pixels is counted
CACHE_ENV = "DUDA_CACHE_DIR"


class PixelCounts(list):
    """``list[dict[int, int]]`` (class -> pixels, per image, classes with 0 pixels left out), plus
    ``areas``: each label's pixel count (ignore included), which scales ``min_pixels``."""

    def __init__(self, counts: Sequence[Mapping[int, int]] = (), areas: Sequence[int] | None = None):
        super().__init__(dict(c) for c in counts)
        self.areas: list[int] = list(areas) if areas is not None else [sum(c.values()) for c in self]
        if len(self.areas) != len(self):
            raise ValueError(f"{len(self)} count entries but {len(self.areas)} areas")


# --------------------------------------------------------------------------------------------
# Statistics and their cache
# --------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$DUDA_CACHE_DIR``, else ``~/.cache/duda_studio``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "duda_studio").expanduser()


def stats_cache_key(dataset: Any) -> str:
    """A hash of what the counts depend on: label files (path, size, mtime, codec), label maps, resize, classes."""
    samples = []
    for sample in dataset.samples:
        try:
            status = sample.label.stat() if sample.label is not None else None
        except OSError:
            status = None
        stamp = [status.st_size, status.st_mtime_ns] if status is not None else None
        samples.append([str(sample.image), str(sample.label), sample.codec, stamp])
    payload = {
        "version": STATS_VERSION,
        "num_classes": dataset.classes.num_classes,
        "ignore_index": dataset.classes.ignore_index,
        "resize": list(dataset.resize) if dataset.resize else None,
        "labelled": dataset.labelled,
        "maps": [sorted(CITYSCAPES_ID_TO_TRAIN_ID.items()), sorted(SYNTHIA_ID_TO_TRAIN_ID.items())],
        "samples": samples,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _cache_candidates(dataset: Any, key: str, cache_dir: Path | str | None) -> list[Path]:
    name = f"rcs_stats_{key}.json"
    if cache_dir is not None:
        return [Path(cache_dir) / name]
    candidates = []
    root = getattr(dataset, "root", None)
    if root is not None and Path(root).is_dir():
        candidates.append(Path(root) / name)
    candidates.append(default_cache_dir() / name)
    return candidates


def _read_cache(path: Path, key: str, length: int) -> PixelCounts | None:
    try:
        data = json.loads(path.read_text())
        if data.get("version") != STATS_VERSION or data.get("key") != key or len(data["counts"]) != length:
            return None
        counts = [{int(c): int(n) for c, n in entry.items()} for entry in data["counts"]]
        return PixelCounts(counts, [int(a) for a in data["areas"]])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # missing, unreadable or stale: recompute


def _write_cache(path: Path, payload: dict[str, Any]) -> bool:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=".rcs_stats_", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(handle, "w") as file:
                json.dump(payload, file)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return True
    except OSError:
        return False


def count_label_pixels(label: np.ndarray, num_classes: int) -> dict[int, int]:
    """Pixels per class ``0..num_classes-1`` of one label (ignore and other values left out)."""
    values = label.ravel()
    if values.size == 0:
        return {}
    counts = np.bincount(values.astype(np.int64, copy=False), minlength=num_classes)[:num_classes]
    return {int(c): int(counts[c]) for c in np.flatnonzero(counts)}


class _LabelCounts(Dataset):
    def __init__(self, dataset: Any):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[dict[int, int], int]:
        label = self.dataset.load_label(index)
        return count_label_pixels(label, self.dataset.classes.num_classes), int(label.size)


def compute_class_pixel_counts(
    dataset: Any,
    *,
    cache: bool = True,
    cache_dir: Path | str | None = None,
    num_workers: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> PixelCounts:
    """Pixels per class of every label of ``dataset`` (a labelled ``SegmentationDataset``).

    Reads labels only (``dataset.load_label``). With ``cache``, looks for ``rcs_stats_<key>.json``
    in ``cache_dir`` if given, else in the dataset root and then the default cache folder, and
    writes it to the first of those that is writable. ``num_workers > 0`` counts in that many
    processes; ``progress(done, total)`` is called as images are counted.
    """
    if not getattr(dataset, "labelled", True):
        raise ValueError("rare class sampling needs a labelled dataset")
    total = len(dataset)
    key = stats_cache_key(dataset) if cache else ""
    candidates = _cache_candidates(dataset, key, cache_dir) if cache else []
    for path in candidates:
        cached = _read_cache(path, key, total)
        if cached is not None:
            return cached

    counts, areas = [], []
    if num_workers > 0:
        loader = DataLoader(_LabelCounts(dataset), batch_size=None, num_workers=num_workers)
        items: Any = iter(loader)
    else:
        counter = _LabelCounts(dataset)
        items = (counter[i] for i in range(total))
    for done, (entry, area) in enumerate(items, start=1):
        counts.append(entry)
        areas.append(area)
        if progress is not None:
            progress(done, total)
    stats = PixelCounts(counts, areas)

    if cache:
        payload = {
            "version": STATS_VERSION,
            "key": key,
            "num_classes": dataset.classes.num_classes,
            "names": [sample.name for sample in dataset.samples],
            "areas": stats.areas,
            "counts": [{str(c): n for c, n in entry.items()} for entry in stats],
        }
        for path in candidates:
            if _write_cache(path, payload):
                break
    return stats


# --------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------


def class_probabilities(freq: Sequence[float] | np.ndarray, temperature: float) -> np.ndarray:
    """``P(c) ∝ exp((1 - f_c) / T)`` for classes with ``freq > 0``, 0 for the others.

    ``freq`` holds per-class pixel counts or shares (normalised here to shares ``f_c``).
    """
    freq = np.asarray(freq, dtype=np.float64)
    if freq.ndim != 1:
        raise ValueError("freq must be a 1-D array of per-class pixel counts or shares")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if (freq < 0).any() or freq.sum() <= 0:
        raise ValueError("freq must be non-negative with at least one class present")
    share = freq / freq.sum()
    occurs = freq > 0
    logits = (1.0 - share[occurs]) / temperature
    weights = np.exp(logits - logits.max())
    probabilities = np.zeros_like(share)
    probabilities[occurs] = weights / weights.sum()
    return probabilities


def _seed_from_torch() -> int:
    return int(torch.randint(0, 2**62, (1,)).item())


class RareClassSampler:
    """Picks image indices: a class ``c`` by ``class_probabilities``, then an image with > threshold pixels of ``c``.

    ``stats``: per-image ``{class: pixels}`` (``compute_class_pixel_counts``). ``areas``: each label's
    pixel count; defaults to ``stats.areas`` when present, else the labelled pixels per image. An
    image qualifies for ``c`` if it holds more than ``min_pixels * area / (W_ref * H_ref)`` pixels of
    ``c`` (``reference_size = (W_ref, H_ref)``). ``seed`` (``None``: drawn from torch's global
    generator) fixes the stream of ``sample_at``.
    """

    def __init__(
        self,
        stats: Sequence[Mapping[int, int]],
        num_classes: int,
        temperature: float = 0.01,
        min_pixels: int = 3000,
        seed: int | None = None,
        *,
        areas: Sequence[int] | None = None,
        reference_size: tuple[int, int] = REFERENCE_SIZE,
    ):
        if len(stats) == 0:
            raise ValueError("rare class sampling needs statistics of at least one image")
        if areas is None:
            areas = getattr(stats, "areas", None) or [sum(c.values()) for c in stats]
        if len(areas) != len(stats):
            raise ValueError(f"{len(stats)} images but {len(areas)} areas")
        self.num_images = len(stats)
        self.num_classes = int(num_classes)
        self.temperature = float(temperature)
        self.min_pixels = float(min_pixels)
        self.seed = _seed_from_torch() if seed is None else int(seed)

        totals = np.zeros(self.num_classes, dtype=np.float64)
        for counts in stats:
            for c, n in counts.items():
                if 0 <= int(c) < self.num_classes:
                    totals[int(c)] += n
        reference_area = float(reference_size[0] * reference_size[1])
        self.thresholds = np.array([self.min_pixels * a / reference_area for a in areas], dtype=np.float64)
        self.samples_with_class: dict[int, np.ndarray] = {}
        for c in np.flatnonzero(totals):
            qualifying = [i for i, counts in enumerate(stats) if counts.get(int(c), 0) > self.thresholds[i]]
            if qualifying:
                self.samples_with_class[int(c)] = np.array(qualifying, dtype=np.int64)
        self.class_frequencies = totals / totals.sum() if totals.sum() > 0 else totals
        self.dropped_classes = [int(c) for c in np.flatnonzero(totals) if int(c) not in self.samples_with_class]

        self.classes = np.array(sorted(self.samples_with_class), dtype=np.int64)
        self.probabilities = np.zeros(self.num_classes, dtype=np.float64)
        if len(self.classes):
            full = class_probabilities(totals, self.temperature)
            kept = full[self.classes]
            self.probabilities[self.classes] = kept / kept.sum() if kept.sum() > 0 else 1.0 / len(kept)
        self._class_p = self.probabilities[self.classes] if len(self.classes) else None

    def sample(self, rng: np.random.Generator) -> int:
        """One image index: a class by ``probabilities``, then uniformly among its qualifying images.

        Without any qualifying class (e.g. every label all ignore), uniform over all images.
        """
        if self._class_p is None:
            return int(rng.integers(self.num_images))
        c = int(rng.choice(self.classes, p=self._class_p))
        candidates = self.samples_with_class[c]
        return int(candidates[rng.integers(len(candidates))])

    def sample_at(self, draw: int) -> int:
        """The index at position ``draw`` of this sampler's stream (a pure function of seed and draw)."""
        return self.sample(np.random.default_rng([self.seed, int(draw)]))

    def summary(self) -> list[dict[str, float]]:
        """Per sampled class: its pixel share, probability and number of qualifying images."""
        return [
            {
                "class": int(c),
                "frequency": float(self.class_frequencies[c]),
                "probability": float(self.probabilities[c]),
                "images": len(self.samples_with_class[int(c)]),
            }
            for c in self.classes
        ]


class RareClassTorchSampler(Sampler):
    """Endless ``(index, draw)`` keys (or plain indices with ``yield_draw=False``) from a ``RareClassSampler``.

    Draw ``k`` depends only on the sampler's seed and ``k``: ``start=k`` (or ``set_start``) resumes
    a stream exactly, whatever the number of DataLoader workers.
    """

    def __init__(self, sampler: RareClassSampler, *, start: int = 0, yield_draw: bool = True):
        self.sampler = sampler
        self.start = int(start)
        self.yield_draw = yield_draw

    def set_start(self, draw: int) -> None:
        self.start = int(draw)

    def __iter__(self) -> Iterator[Any]:
        for draw in itertools.count(self.start):
            index = self.sampler.sample_at(draw)
            yield (index, draw) if self.yield_draw else index


def build_rare_class_sampler(
    dataset: Any,
    *,
    temperature: float = 0.01,
    min_pixels: int = 3000,
    seed: int | None = None,
    cache_dir: Path | str | None = None,
    num_workers: int = 0,
) -> RareClassSampler:
    """Statistics (cached) and sampler for a labelled ``SegmentationDataset`` in one call."""
    stats = compute_class_pixel_counts(dataset, cache_dir=cache_dir, num_workers=num_workers)
    return RareClassSampler(stats, dataset.classes.num_classes, temperature, min_pixels, seed)
