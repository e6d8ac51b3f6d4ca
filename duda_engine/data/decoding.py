"""Reading a sample's files: an image as RGB, a label file's raw values, and those values as train ids.

Every failure is a ``DatasetError`` naming the file: unreadable or corrupt images, colour or
non-integer labels, and label values the layout does not know (every layout; a dataset's
``ignore_unknown_labels`` switch turns them into ignore instead).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from duda_engine.data.classes import ClassSpec
from duda_engine.data.label_maps import (
    CITYSCAPES_ID_TO_TRAIN_ID,
    SYNTHIA_ID_TO_TRAIN_ID,
    apply_label_map,
    lookup_table,
)
from duda_engine.data.samples import (
    CODEC_CLASS_IDS,
    CODEC_LABEL_IDS,
    CODEC_SYNTHIA,
    CODEC_TOY,
    CODEC_TRAIN_IDS,
    DatasetError,
)

TOY_IGNORE_VALUE = 255

# A corrupt file is reported as a DatasetError naming it; OpenCV's own warnings about it would only
# interleave with the progress bar and the error.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # the toy generator writes 255 for ignore, whatever classes.ignore_index is


def read_image(path: Path | str) -> np.ndarray:
    """An image file as ``H x W x 3`` uint8 RGB; ``DatasetError`` naming the file if unreadable.

    EXIF orientation is ignored, so images stay pixel-aligned with their label files.
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise DatasetError(f"cannot read image {path}: {error.strerror or error}") from error
    image = None
    if data.size:
        try:
            image = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        except cv2.error as error:
            raise DatasetError(f"cannot decode image {path}: {error}") from error
    if image is None:
        raise DatasetError(f"cannot decode image {path}: the file is empty, corrupt or not an image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def image_size(path: Path | str) -> tuple[int, int]:
    """``(width, height)`` of an image from its header only (decodes it when PIL cannot)."""
    try:
        with Image.open(path) as image:
            return image.size
    except Exception:  # PIL does not know the format, or the file is damaged: decode (raises DatasetError)
        height, width = read_image(path).shape[:2]
        return width, height


def read_label(path: Path | str, codec: str) -> np.ndarray:
    """A label file's raw values as an ``H x W`` integer array, before mapping to train ids.

    SYNTHIA (16-bit, class id in the PNG's first channel, i.e. index 2 of OpenCV's BGR(A) order) is
    read with OpenCV; everything else with PIL, which keeps palette PNGs (GTA5) as their indices.
    """
    if codec == CODEC_SYNTHIA:
        try:
            data = np.fromfile(path, dtype=np.uint8)
            label = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
        except (OSError, cv2.error) as error:
            raise DatasetError(f"cannot read label {path}: {error}") from error
        if label is None:
            raise DatasetError(f"cannot decode label {path}: the file is empty, corrupt or not an image")
        if label.ndim == 3:
            label = label[:, :, 2] if label.shape[2] >= 3 else label[:, :, 0]
        return np.ascontiguousarray(label)
    try:
        with Image.open(path) as image:
            mode = image.mode
            label = np.array(image)
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
        raise DatasetError(f"cannot read label {path}: {error}") from error
    if label.dtype == np.bool_:
        label = label.astype(np.uint8)
    if not np.issubdtype(label.dtype, np.integer):
        raise DatasetError(f"label {path} holds {mode} (non-integer) values; labels must hold class ids")
    if label.ndim == 3:
        channels = label[:, :, :3] if label.shape[2] >= 3 else label[:, :, :1]
        if channels.shape[2] == 3 and not (
            np.array_equal(channels[:, :, 0], channels[:, :, 1])
            and np.array_equal(channels[:, :, 0], channels[:, :, 2])
        ):
            raise DatasetError(f"label {path} is a colour ({mode}) image; labels must be single-channel class ids")
        label = np.ascontiguousarray(channels[:, :, 0])
    return label


def _table_size(raw: np.ndarray) -> int:
    return 256 if raw.dtype == np.uint8 else 65536


# The raw values each codec knows besides the class ids and the ignore value: Cityscapes label ids 0..33
# (GTA5 uses them too; ids outside the 19 classes are ignored by design), SYNTHIA's class ids 0..22, and
# 255 that train-id files (Cityscapes, ACDC, Dark Zurich) and the toy generator write for ignore.
CITYSCAPES_LABEL_ID_COUNT = 34
SYNTHIA_CLASS_ID_COUNT = 23
TRAIN_ID_IGNORE_VALUE = 255
UNKNOWN_LABELS_SWITCH = "ignore_unknown_labels"  # the DatasetConfig field that turns unknown values into ignore


def known_label_values(codec: str, classes: ClassSpec, size: int) -> np.ndarray:
    """A boolean table of ``size`` entries: ``True`` for every raw value the codec gives a meaning
    (a class, the ignore value, or an id the layout defines and ignores)."""
    known = np.zeros(size, dtype=bool)
    extra: list[int] = [classes.ignore_index]
    if codec == CODEC_LABEL_IDS:
        known[: min(CITYSCAPES_LABEL_ID_COUNT, size)] = True
    elif codec == CODEC_SYNTHIA:
        known[: min(SYNTHIA_CLASS_ID_COUNT, size)] = True
    elif codec in (CODEC_TRAIN_IDS, CODEC_CLASS_IDS, CODEC_TOY):
        known[: min(classes.num_classes, size)] = True
        if codec in (CODEC_TRAIN_IDS, CODEC_TOY):
            extra.append(TRAIN_ID_IGNORE_VALUE)
    else:
        raise ValueError(f"unknown label codec {codec!r}")
    for value in extra:
        if 0 <= value < size:
            known[value] = True
    return known


def unknown_label_values(raw: np.ndarray, codec: str, classes: ClassSpec) -> np.ndarray:
    """The distinct raw values of a label that its codec does not know (sorted; empty when none)."""
    if not raw.size:
        return np.zeros(0, dtype=np.int64)
    values = raw.astype(np.int64, copy=False).ravel()
    if values.min() < 0:
        negative = np.unique(values[values < 0])
        return np.concatenate([negative, unknown_label_values(raw[raw >= 0], codec, classes)])
    counts = np.bincount(values)
    present = np.flatnonzero(counts)
    known = known_label_values(codec, classes, len(counts))
    return present[~known[present]]


def unknown_values_message(path: Path | str, values: np.ndarray, codec: str, classes: ClassSpec) -> str:
    shown = ", ".join(str(v) for v in values[:8]) + (", ..." if len(values) > 8 else "")
    if codec == CODEC_LABEL_IDS:
        meaning = f"Cityscapes label ids 0..{CITYSCAPES_LABEL_ID_COUNT - 1}"
    elif codec == CODEC_SYNTHIA:
        meaning = f"SYNTHIA class ids 0..{SYNTHIA_CLASS_ID_COUNT - 1}"
    else:
        meaning = f"class ids 0..{classes.num_classes - 1}"
    return (f"label {path} holds values {shown} that are neither {meaning} nor the ignore value "
            f"{classes.ignore_index} (set {UNKNOWN_LABELS_SWITCH}: true to treat them as ignore)")


def decode_label(
    raw: np.ndarray, codec: str, classes: ClassSpec, path: Path | str = "", *, ignore_unknown: bool = False
) -> np.ndarray:
    """Raw label values -> train ids ``0..K-1`` with ``classes.ignore_index`` for ignore.

    The result is uint8 when the ignore value fits in a byte, else uint16. A value the codec does not
    know (``unknown_label_values``) raises ``DatasetError`` naming the file, in every layout, unless
    ``ignore_unknown``, which maps it to the ignore value.
    """
    num_classes, ignore = classes.num_classes, classes.ignore_index
    if not ignore_unknown:
        unknown = unknown_label_values(raw, codec, classes)
        if unknown.size:
            raise DatasetError(unknown_values_message(path, unknown, codec, classes))
    if codec == CODEC_LABEL_IDS:
        return apply_label_map(raw, lookup_table(CITYSCAPES_ID_TO_TRAIN_ID, 256, ignore), default=ignore)
    if codec == CODEC_SYNTHIA:
        return apply_label_map(raw, lookup_table(SYNTHIA_ID_TO_TRAIN_ID, 65536, ignore), default=ignore)
    identity = {k: k for k in range(num_classes)}
    if codec == CODEC_TRAIN_IDS:
        return apply_label_map(raw, lookup_table(identity, _table_size(raw), ignore), default=ignore)
    if codec in (CODEC_CLASS_IDS, CODEC_TOY):
        accepted = {ignore, TOY_IGNORE_VALUE} if codec == CODEC_TOY else {ignore}
        mapping = identity | {v: ignore for v in accepted if v >= num_classes}
        return apply_label_map(raw, lookup_table(mapping, _table_size(raw), ignore), default=ignore)
    raise ValueError(f"unknown label codec {codec!r}")
