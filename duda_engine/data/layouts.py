"""Finding the (image, label) samples of each dataset layout on disk, without decoding anything.

``find_samples(cfg, split, labelled=...)`` walks the folders of one dataset kind and pairs
every image with its label file; every problem (missing folder, unknown split, images without labels,
nothing found) is a ``DatasetError`` that names the folder or files and the layout the kind expects.
Layouts are the ones the datasets ship in (Cityscapes ``leftImg8bit/`` + ``gtFine/``, GTA5 ``images/`` +
``labels/``, SYNTHIA ``RGB/`` + ``GT/LABELS/``, ACDC and Dark Zurich ``rgb_anon/`` + ``gt/``);
the custom layout is in ``custom_layout.py``; ``samples.py`` holds the ``Sample`` record, the codecs and
``LAYOUTS``, each layout in words for error messages and the UI.
"""

from __future__ import annotations

from pathlib import Path

from duda_engine.config import DatasetConfig
from duda_engine.data.custom_layout import find_custom
from duda_engine.data.samples import (
    CODEC_LABEL_IDS,
    CODEC_SYNTHIA,
    CODEC_TOY,
    CODEC_TRAIN_IDS,
    LAYOUTS,
    DatasetError,
    Sample,
    pair_mirrored,
    require_dir,
    require_root,
    subdirs,
    unknown_split,
)

ACDC_CONDITIONS = ("fog", "night", "rain", "snow")
WHOLE_FOLDER_SPLITS = ("train", "all")  # GTA5 and SYNTHIA have no split folders: these mean every image


# --------------------------------------------------------------------------------------------
# One finder per kind
# --------------------------------------------------------------------------------------------


def _find_flat(
    cfg: DatasetConfig, split: str, labelled: bool, image_dir: str, label_dir: str, codec: str
) -> list[Sample]:
    root = require_root(cfg)
    if split not in WHOLE_FOLDER_SPLITS:
        raise unknown_split(cfg.kind, split, root, WHOLE_FOLDER_SPLITS)
    image_root = require_dir(root / image_dir, cfg.kind)
    label_root = require_dir(root / label_dir, cfg.kind) if labelled else None
    return pair_mirrored(cfg.kind, image_root, label_root, ".png", [(".png", codec)])


def _find_gta5(cfg: DatasetConfig, split: str, labelled: bool) -> list[Sample]:
    return _find_flat(cfg, split, labelled, "images", "labels", CODEC_LABEL_IDS)


def _find_synthia(cfg: DatasetConfig, split: str, labelled: bool) -> list[Sample]:
    return _find_flat(cfg, split, labelled, "RGB", "GT/LABELS", CODEC_SYNTHIA)


def _find_cityscapes(cfg: DatasetConfig, split: str, labelled: bool) -> list[Sample]:
    root = require_root(cfg)
    images = require_dir(root / "leftImg8bit", "cityscapes")
    if not (images / split).is_dir():
        raise unknown_split("cityscapes", split, images, subdirs(images))
    labels = require_dir(root / "gtFine" / split, "cityscapes", "label folder") if labelled else None
    return pair_mirrored(
        "cityscapes",
        images / split,
        labels,
        "_leftImg8bit.png",
        [("_gtFine_labelTrainIds.png", CODEC_TRAIN_IDS), ("_gtFine_labelIds.png", CODEC_LABEL_IDS)],
    )


def _find_acdc(cfg: DatasetConfig, split: str, labelled: bool) -> list[Sample]:
    root = require_root(cfg)
    if cfg.condition not in ACDC_CONDITIONS:
        raise DatasetError(
            f"acdc dataset at {root}: condition must be one of {', '.join(ACDC_CONDITIONS)}, got {cfg.condition!r}"
        )
    images = require_dir(root / "rgb_anon" / cfg.condition, "acdc")
    if not (images / split).is_dir():
        raise unknown_split("acdc", split, images, subdirs(images))
    labels = None
    if labelled:
        hint = " (ACDC withholds the test labels)" if split == "test" else ""
        labels = root / "gt" / cfg.condition / split
        if not labels.is_dir():
            raise DatasetError(
                f"acdc dataset: missing label folder {labels}{hint} (expected layout: {LAYOUTS['acdc']})"
            )
    return pair_mirrored("acdc", images / split, labels, "_rgb_anon.png", [("_gt_labelTrainIds.png", CODEC_TRAIN_IDS)])


def _find_dark_zurich(cfg: DatasetConfig, split: str, labelled: bool) -> list[Sample]:
    root = require_root(cfg)
    images = require_dir(root / "rgb_anon", "dark_zurich")
    if not (images / split).is_dir():
        raise unknown_split("dark_zurich", split, images, subdirs(images))
    image_root = images / split
    if split == "train":
        image_root = require_dir(image_root / "night", "dark_zurich")
        if labelled:
            raise DatasetError(
                f"dark_zurich dataset: the train split ({image_root}) has no labels; "
                "it is the unlabelled target set (use it with labelled=False)"
            )
    labels = None
    if labelled:
        labels = root / "gt" / split
        if not labels.is_dir():
            hint = " (Dark Zurich withholds the test labels)" if split == "test" else ""
            raise DatasetError(
                f"dark_zurich dataset: missing label folder {labels}{hint} (expected layout: {LAYOUTS['dark_zurich']})"
            )
    return pair_mirrored(
        "dark_zurich", image_root, labels, "_rgb_anon.png", [("_gt_labelTrainIds.png", CODEC_TRAIN_IDS)]
    )

def toy_folder(cfg: DatasetConfig, split: str) -> Path:
    """The generated toy folder of ``cfg.domain`` and ``split`` (made on first use)."""
    from duda_engine.toy.domains import ensure_toy_domain

    cache_root = Path(cfg.root).expanduser() if cfg.root else None
    try:
        return Path(ensure_toy_domain(cfg.domain, cfg.toy_size, split, cache_root=cache_root))
    except DatasetError:
        raise
    except (ValueError, KeyError) as error:
        raise DatasetError(f"toy dataset {cfg.domain!r} ({cfg.toy_size}), split {split!r}: {error}") from error


def _find_toy(cfg: DatasetConfig, split: str, labelled: bool) -> list[Sample]:
    folder = toy_folder(cfg, split)
    images = require_dir(folder / "images", "toy")
    labels = require_dir(folder / "labels", "toy") if labelled else None
    return pair_mirrored("toy", images, labels, ".png", [(".png", CODEC_TOY)])


_FINDERS = {
    "gta5": _find_gta5,
    "synthia": _find_synthia,
    "cityscapes": _find_cityscapes,
    "acdc": _find_acdc,
    "dark_zurich": _find_dark_zurich,
    "custom": find_custom,
    "toy": _find_toy,
}


def find_samples(cfg: DatasetConfig, split: str, *, labelled: bool = True) -> list[Sample]:
    """Every sample of ``split``, sorted by path; raises ``DatasetError`` naming what is wrong."""
    finder = _FINDERS.get(cfg.kind)
    if finder is None:
        raise DatasetError(f"unknown dataset kind {cfg.kind!r} (known: {', '.join(_FINDERS)})")
    if not split:
        raise DatasetError(f"{cfg.kind} dataset: no split given")
    return finder(cfg, split, labelled)
