"""Reading a sample's files: an image as RGB, a label file's raw values, and those values as train ids.

Every failure is a ``DatasetError`` naming the file: unreadable or corrupt images, colour or
non-integer labels, and (for the strict codecs, custom and toy) values that are neither a class nor ignore.
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

TOY_IGNORE_VALUE = 255  # the toy generator writes 255 for ignore, whatever classes.ignore_index is


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


def decode_label(raw: np.ndarray, codec: str, classes: ClassSpec, path: Path | str = "") -> np.ndarray:
    """Raw label values -> train ids ``0..K-1`` with ``classes.ignore_index`` for ignore.

    The result is uint8 when the ignore value fits in a byte, else uint16. Strict codecs (custom,
    toy) raise ``DatasetError`` naming the file for any value that is neither a class nor ignore.
    """
    num_classes, ignore = classes.num_classes, classes.ignore_index
    if codec == CODEC_LABEL_IDS:
        return apply_label_map(raw, lookup_table(CITYSCAPES_ID_TO_TRAIN_ID, 256, ignore), default=ignore)
    if codec == CODEC_SYNTHIA:
        return apply_label_map(raw, lookup_table(SYNTHIA_ID_TO_TRAIN_ID, 65536, ignore), default=ignore)
    identity = {k: k for k in range(num_classes)}
    if codec == CODEC_TRAIN_IDS:
        return apply_label_map(raw, lookup_table(identity, _table_size(raw), ignore), default=ignore)
    if codec in (CODEC_CLASS_IDS, CODEC_TOY):
        accepted = {ignore, TOY_IGNORE_VALUE} if codec == CODEC_TOY else {ignore}
        if raw.size and (raw.min() < 0 or raw.max() >= num_classes):
            invalid = (raw < 0) | (raw >= num_classes)
            for value in accepted:
                invalid &= raw != value
            if invalid.any():
                values = np.unique(raw[invalid])
                shown = ", ".join(str(v) for v in values[:8]) + (", ..." if len(values) > 8 else "")
                raise DatasetError(
                    f"label {path} holds values {shown} that are neither a class id (0..{num_classes - 1}) "
                    f"nor the ignore value {ignore}"
                )
        mapping = identity | {v: ignore for v in accepted if v >= num_classes}
        return apply_label_map(raw, lookup_table(mapping, _table_size(raw), ignore), default=ignore)
    raise ValueError(f"unknown label codec {codec!r}")
