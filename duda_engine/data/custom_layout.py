"""The custom layout: image and label folders (split sub-folders, ``{split}`` in the folder names, or
one folder for every split), or a list file of ``image label`` lines relative to the dataset's root.

Labels pair with images by their path below the folders (``label_suffix`` appended to the stem), or by
stem alone when exactly one label has it; every problem is a ``DatasetError`` naming the folder or files.
"""

from __future__ import annotations

from pathlib import Path

from duda_engine.config import DatasetConfig
from duda_engine.data.samples import (
    CODEC_CLASS_IDS,
    IMAGE_EXTENSIONS,
    LABEL_EXTENSIONS,
    LAYOUTS,
    MAX_NAMED,
    DatasetError,
    Sample,
    missing_labels_error,
    require_dir,
    require_root,
    sample_name,
    subdirs,
    unknown_split,
    walk_files,
)


def _custom_folders(cfg: DatasetConfig, root: Path, split: str) -> tuple[Path, Path]:
    """The image and label folders of a split: ``{split}`` in the names, ``<dir>/<split>/``, or the whole folder."""
    if "{split}" in cfg.image_dir or "{split}" in cfg.label_dir:
        image_root, label_root = root / cfg.image_dir.format(split=split), root / cfg.label_dir.format(split=split)
        if not image_root.is_dir():
            raise DatasetError(
                f"custom dataset: missing image folder {image_root} for split {split!r} "
                f"(expected layout: {LAYOUTS['custom']})"
            )
        return image_root, label_root
    image_root = require_dir(root / cfg.image_dir, "custom", "image folder")
    label_root = root / cfg.label_dir
    if (image_root / split).is_dir():
        return image_root / split, label_root / split
    splits = [d for d in subdirs(image_root) if d in ("train", "val", "test", "training", "validation")]
    if splits:
        raise unknown_split("custom", split, image_root, splits)
    return image_root, label_root  # no split folders: every split reads the whole folder


def _find_custom_folders(cfg: DatasetConfig, root: Path, split: str, labelled: bool) -> list[Sample]:
    image_root, label_root = _custom_folders(cfg, root, split)
    same_folder = labelled and label_root.resolve() == image_root.resolve()
    if same_folder and not cfg.label_suffix:
        raise DatasetError(
            f"custom dataset: images and labels share the folder {image_root}; "
            "set label_suffix to tell the labels apart"
        )
    images = walk_files(image_root, IMAGE_EXTENSIONS)
    if same_folder:
        images = [p for p in images if not p.stem.endswith(cfg.label_suffix)]
    if not images:
        raise DatasetError(
            f"custom dataset: no images ({', '.join(IMAGE_EXTENSIONS)}) found in {image_root} "
            f"(expected layout: {LAYOUTS['custom']})"
        )
    if not labelled:
        return [Sample(p, None, sample_name(p, image_root, ""), CODEC_CLASS_IDS) for p in images]
    require_dir(label_root, "custom", "label folder")
    by_path: dict[str, Path] = {}
    by_stem: dict[str, list[Path]] = {}
    for label in walk_files(label_root, LABEL_EXTENSIONS):
        relative = label.relative_to(label_root).as_posix().rsplit(".", 1)[0]
        by_path.setdefault(relative, label)  # sorted walk: .png before .tif for the same stem
        by_stem.setdefault(label.stem, []).append(label)
    samples, missing = [], []
    for image in images:
        relative = image.relative_to(image_root).as_posix().rsplit(".", 1)[0] + cfg.label_suffix
        label = by_path.get(relative)
        if label is None:
            candidates = by_stem.get(image.stem + cfg.label_suffix, [])
            label = candidates[0] if len(candidates) == 1 else None
        if label is None:
            missing.append((image, label_root / f"{relative}.png"))
        else:
            samples.append(Sample(image, label, sample_name(image, image_root, ""), CODEC_CLASS_IDS))
    if missing:
        raise missing_labels_error("custom", image_root, missing, len(images), samples)
    return samples


def _find_custom_list(cfg: DatasetConfig, root: Path, split: str, labelled: bool) -> list[Sample]:
    list_file = root / cfg.list_file.format(split=split)
    if not list_file.is_file():
        raise DatasetError(
            f"custom dataset: list file {list_file} does not exist"
            + (f" (split {split!r})" if "{split}" in cfg.list_file else "")
        )
    try:
        lines = list_file.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"custom dataset: cannot read list file {list_file}: {error}") from error
    samples, missing, unlabelled = [], [], []
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split("\t")] if "\t" in line else line.split()
        if len(parts) > 2:
            raise DatasetError(
                f"custom dataset: {list_file} line {number}: expected 'image_path label_path', "
                f"got {len(parts)} fields (separate paths holding spaces with a tab)"
            )
        image = root / parts[0]
        label = root / parts[1] if len(parts) == 2 else None
        if not image.is_file():
            missing.append(str(image))
            continue
        if labelled and label is None:
            unlabelled.append(f"line {number}")
            continue
        if labelled and not label.is_file():
            missing.append(str(label))
            continue
        name = Path(parts[0]).as_posix().rsplit(".", 1)[0]
        samples.append(Sample(image, label if labelled else None, name, CODEC_CLASS_IDS))
    if missing:
        more = f" and {len(missing) - MAX_NAMED} more" if len(missing) > MAX_NAMED else ""
        raise DatasetError(
            f"custom dataset: {len(missing)} files listed in {list_file} do not exist: "
            f"{', '.join(missing[:MAX_NAMED])}{more}"
        )
    if unlabelled:
        raise DatasetError(
            f"custom dataset: {list_file} lists images without a label path ({', '.join(unlabelled[:MAX_NAMED])})"
        )
    if not samples:
        raise DatasetError(f"custom dataset: list file {list_file} lists no images")
    return samples


def find_custom(cfg: DatasetConfig, split: str, labelled: bool) -> list[Sample]:
    root = require_root(cfg)
    if cfg.list_file:
        return _find_custom_list(cfg, root, split, labelled)
    if not cfg.image_dir or (labelled and not cfg.label_dir):
        raise DatasetError(f"custom dataset at {root}: needs image_dir and label_dir, or a list_file")
    return _find_custom_folders(cfg, root, split, labelled)

