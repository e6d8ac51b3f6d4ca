"""Checking a dataset before training.

``scan_dataset`` reads every image and label of the splits a run uses once (decode, size, channel
count, label values against the class table), in a thread pool, reports every problem (the first
``MAX_LISTED`` named, all counted by kind) and caches its verdict in a cache folder outside the dataset,
keyed by the files' names, sizes and modification times: a second check of an unchanged tree only
stats the files. ``check_dataset`` is the cheap check the config validator runs (folders, pairing, the
first sample); ``describe_dataset`` summarises both splits for a listing and never raises.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from duda_engine.config import DatasetConfig
from duda_engine.data.classes import ClassSpec
from duda_engine.data.decoding import (
    decode_label,
    image_size,
    read_label,
    unknown_label_values,
    unknown_values_message,
)
from duda_engine.data.layouts import find_samples
from duda_engine.data.samples import LAYOUTS, RESIZE_MISMATCHED_LABELS, DatasetError, MissingLabels, Sample

CHECK_VERSION = 1  # part of the cache key: a change to what is checked invalidates old verdicts
MAX_LISTED = 50  # problems named in a report; every problem is counted
LABELS_REQUIRED, LABELS_OPTIONAL, LABELS_NONE = "required", "optional", "none"
LAYOUT_PROBLEM = "layout"  # the kind of problem a missing folder or split, or a folder without images, is

Progress = Callable[[int, int], None]  # (files done, files in all)


@dataclass
class CheckReport:
    """The verdict of ``scan_dataset``: ``ok`` when no problem was found."""

    ok: bool = True
    problems: list[str] = field(default_factory=list)  # the first MAX_LISTED, one line each, naming the file
    counts: dict[str, int] = field(default_factory=dict)  # problem kind -> how many
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)  # split -> {"images", "labelled"}
    files: int = 0  # images and labels read
    seconds: float = 0.0
    cached: bool = False

    @property
    def total_problems(self) -> int:
        return sum(self.counts.values())

    def summary(self, separator: str = "; ") -> str:
        """Every listed problem, and how many more of each kind there are."""
        more = self.total_problems - len(self.problems)
        tail = [f"and {more} more ({', '.join(f'{n} {kind}' for kind, n in sorted(self.counts.items()))})"] if more > 0 else []
        return separator.join(self.problems + tail)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckReport:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


class DatasetCheckError(DatasetError):
    """A dataset failed ``scan_dataset``; ``report`` holds every problem."""

    def __init__(self, where: str, report: CheckReport):
        self.where, self.report = where, report
        count = report.total_problems
        super().__init__(f"{where}: {count} problem{'s' if count != 1 else ''}: {report.summary()}")


# --------------------------------------------------------------------------------------------
# Reading one sample
# --------------------------------------------------------------------------------------------


def _check_sample(sample: Sample, classes: ClassSpec, kind: str, ignore_unknown: bool) -> list[tuple[str, str]]:
    """``(problem kind, message)`` for everything wrong with one sample's files."""
    problems: list[tuple[str, str]] = []
    size = None
    try:
        data = np.fromfile(sample.image, dtype=np.uint8)
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION) if data.size else None
    except (OSError, cv2.error) as error:
        image = None
        problems.append(("unreadable image", f"cannot read image {sample.image}: {error}"))
    else:
        if image is None:
            problems.append(("unreadable image", f"cannot decode image {sample.image}: the file is empty, corrupt or "
                                                 "not an image"))
    if image is not None:
        channels = 1 if image.ndim == 2 else image.shape[2]
        if channels not in (1, 3, 4):
            problems.append(("bad image", f"image {sample.image} has {channels} channels (1, 3 or 4 expected)"))
        size = (image.shape[1], image.shape[0])
    if sample.label is None:
        return problems
    try:
        raw = read_label(sample.label, sample.codec)
    except DatasetError as error:
        problems.append(("unreadable label", str(error)))
        return problems
    if not ignore_unknown:
        unknown = unknown_label_values(raw, sample.codec, classes)
        if unknown.size:
            problems.append(("unknown label values", unknown_values_message(sample.label, unknown, sample.codec, classes)))
    if size is not None and (raw.shape[1], raw.shape[0]) != size and kind not in RESIZE_MISMATCHED_LABELS:
        problems.append(("size mismatch", f"label {sample.label} is {raw.shape[1]}x{raw.shape[0]} but its image "
                                          f"{sample.image} is {size[0]}x{size[1]}"))
    return problems


# --------------------------------------------------------------------------------------------
# The verdict cache
# --------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$DUDA_CHECK_CACHE_DIR``, else ``$XDG_CACHE_HOME/duda/dataset-checks`` (``~/.cache`` by default)."""
    if os.environ.get("DUDA_CHECK_CACHE_DIR"):
        return Path(os.environ["DUDA_CHECK_CACHE_DIR"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "duda" / "dataset-checks"


def _cache_file(cache_dir: Path, cfg: DatasetConfig, classes: ClassSpec, splits: Sequence[tuple[str, str]]) -> Path:
    identity = json.dumps({"version": CHECK_VERSION, "dataset": asdict(cfg), "classes": asdict(classes),
                           "splits": list(splits), "listed": MAX_LISTED}, sort_keys=True, default=str)
    return cache_dir / f"{hashlib.sha256(identity.encode()).hexdigest()[:40]}.json"


def files_fingerprint(paths: Sequence[Path], extra: Sequence[str] = ()) -> str | None:
    """A digest of the files' names, sizes and modification times (and of ``extra`` lines: what the walk
    found, such as labels that are missing); None if a file cannot be stat'ed."""
    digest = hashlib.sha256()
    for line in extra:
        digest.update(f"{line}\n".encode())
    for path in sorted(set(paths)):
        try:
            stat = os.stat(path)
        except OSError:
            return None
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _read_cache(path: Path, fingerprint: str) -> CheckReport | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("fingerprint") != fingerprint or not isinstance(data.get("report"), dict):
        return None
    report = CheckReport.from_dict(data["report"])
    report.cached = True
    return report


def _write_cache(path: Path, fingerprint: str, report: CheckReport) -> None:
    """Write atomically (a temporary file renamed over the old one); a cache that cannot be written is skipped."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".check-", suffix=".tmp")
        try:
            with os.fdopen(handle, "w") as out:
                json.dump({"fingerprint": fingerprint, "report": report.as_dict() | {"cached": False}}, out)
            os.replace(temporary, path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(temporary)


# --------------------------------------------------------------------------------------------
# The check
# --------------------------------------------------------------------------------------------


def _samples_of(cfg: DatasetConfig, split: str, labels: str, report: CheckReport,
                add: Callable[[str, str], None]) -> list[Sample]:
    """The samples of a split to read; layout problems (no images, labels missing) go to ``add``."""
    if labels != LABELS_NONE:
        try:
            samples = find_samples(cfg, split, labelled=True)
            report.splits[split] = {"images": len(samples), "labelled": True}
            return samples
        except MissingLabels as error:
            if error.found or labels == LABELS_REQUIRED:  # some labels there: the others are missing
                for image, expected in error.missing:
                    add("missing label", f"image {image} has no label (expected {expected})")
                report.splits[split] = {"images": len(error.found) + len(error.missing), "labelled": True}
                return error.found
        except DatasetError as error:
            if labels == LABELS_REQUIRED:
                add(LAYOUT_PROBLEM, str(error))
                report.splits[split] = {"images": 0, "labelled": True}
                return []
    try:
        samples = find_samples(cfg, split, labelled=False)
    except DatasetError as error:
        add(LAYOUT_PROBLEM, str(error))
        report.splits[split] = {"images": 0, "labelled": False}
        return []
    report.splits[split] = {"images": len(samples), "labelled": False}
    return samples


def scan_dataset(
    cfg: DatasetConfig,
    classes: ClassSpec,
    splits: Sequence[tuple[str, str]],
    *,
    progress: Progress | None = None,
    cache_dir: Path | str | None = None,
    use_cache: bool = True,
    workers: int | None = None,
) -> CheckReport:
    """Read every image and label of ``splits`` (``(split, labels)``, labels one of ``required``,
    ``optional``: labelled if any label is there, ``none``) and report every problem.

    ``progress(done, total)`` is called as files are read. The verdict is cached under ``cache_dir``
    (``default_cache_dir()`` when None) unless ``use_cache`` is false.
    """
    started = time.perf_counter()
    report = CheckReport()
    listed: list[str] = report.problems
    counts: Counter[str] = Counter()

    def add(kind: str, message: str) -> None:
        counts[kind] += 1
        if len(listed) < MAX_LISTED:
            listed.append(message)

    samples: dict[Path, Sample] = {}
    for split, labels in splits:
        for sample in _samples_of(cfg, split, labels, report, add):
            previous = samples.get(sample.image)
            if previous is None or previous.label is None:  # a split read with labels wins
                samples[sample.image] = sample
    ordered = sorted(samples.values(), key=lambda s: str(s.image))
    paths = [s.image for s in ordered] + [s.label for s in ordered if s.label is not None]
    report.files = len(paths)

    cache_path = fingerprint = None
    if use_cache:
        cache_path = _cache_file(Path(cache_dir) if cache_dir else default_cache_dir(), cfg, classes, splits)
        walked = [json.dumps(report.splits, sort_keys=True), json.dumps(dict(counts), sort_keys=True), *listed]
        fingerprint = files_fingerprint(paths, walked)
        cached = _read_cache(cache_path, fingerprint) if fingerprint else None
        if cached is not None:
            if progress:
                progress(cached.files, cached.files)
            cached.seconds = time.perf_counter() - started
            return cached

    done, total = 0, len(paths)
    if progress:
        progress(0, total)
    ignore_unknown = cfg.ignore_unknown_labels
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        results = pool.map(lambda s: (s, _check_sample(s, classes, cfg.kind, ignore_unknown)), ordered)
        for sample, problems in results:
            for kind, message in problems:
                add(kind, message)
            done += 1 if sample.label is None else 2
            if progress:
                progress(done, total)
    report.counts = dict(counts)
    report.ok = not counts
    report.seconds = time.perf_counter() - started
    if cache_path is not None and fingerprint is not None:
        _write_cache(cache_path, fingerprint, report)
    return report


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
            label = decode_label(read_label(first.label, first.codec), first.codec, classes, first.label,
                                 ignore_unknown=cfg.ignore_unknown_labels)
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
