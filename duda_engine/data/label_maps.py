"""Label-value lookup tables: dataset-specific label ids -> Cityscapes train ids.

A table is a 1-D ``np.ndarray`` indexed by the raw label value (256 entries for 8-bit labels,
65536 for SYNTHIA's 16-bit ones); ``apply_label_map`` looks every pixel up, sending values outside
the table to the ignore value. The module-level tables are read-only and use ignore value 255; build
a table with another ignore value with ``lookup_table(mapping, size, ignore_index)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

import numpy as np

from duda_engine.data.classes import IGNORE_INDEX

# Cityscapes label id -> train id (``cityscapesscripts/helpers/labels.py``); every other id -> ignore.
# GTA5's labels hold Cityscapes label ids, so it uses the same table.
CITYSCAPES_ID_TO_TRAIN_ID: dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip
GTA5_ID_TO_TRAIN_ID: dict[int, int] = dict(CITYSCAPES_ID_TO_TRAIN_ID)

# SYNTHIA-RAND-CITYSCAPES class id (first channel of GT/LABELS) -> train id. Terrain (9), truck (14)
# and train (16) do not occur in SYNTHIA.
SYNTHIA_ID_TO_TRAIN_ID: dict[int, int] = {
    3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 1: 10,
    10: 11, 17: 12, 8: 13, 19: 15, 12: 17, 11: 18,
}  # fmt: skip


def _table_dtype(max_value: int) -> np.dtype:
    if max_value <= np.iinfo(np.uint8).max:
        return np.dtype(np.uint8)
    if max_value <= np.iinfo(np.uint16).max:
        return np.dtype(np.uint16)
    return np.dtype(np.int64)


@lru_cache(maxsize=64)
def _cached_table(items: tuple[tuple[int, int], ...], size: int, ignore_index: int) -> np.ndarray:
    max_value = max([ignore_index, *(v for _, v in items)])
    table = np.full(size, ignore_index, dtype=_table_dtype(max_value))
    for key, value in items:
        if not 0 <= key < size:
            raise ValueError(f"label value {key} does not fit a table of {size} entries")
        table[key] = value
    table.setflags(write=False)
    return table


def lookup_table(mapping: Mapping[int, int], size: int = 256, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """A read-only table of ``size`` entries: ``table[k] = mapping.get(k, ignore_index)``.

    The dtype is the smallest unsigned integer type that holds every value (uint8 for train ids
    with ignore value 255). Tables are cached, so calling this per image is cheap.
    """
    if size < 1:
        raise ValueError("a lookup table needs at least one entry")
    return _cached_table(tuple(sorted((int(k), int(v)) for k, v in mapping.items())), int(size), int(ignore_index))


def identity_table(num_classes: int, size: int = 256, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Values ``0..num_classes-1`` map to themselves, everything else to ``ignore_index``."""
    return lookup_table({k: k for k in range(min(num_classes, size))}, size, ignore_index)


CITYSCAPES_LABEL_TABLE: np.ndarray = lookup_table(CITYSCAPES_ID_TO_TRAIN_ID, 256)
GTA5_LABEL_TABLE: np.ndarray = lookup_table(GTA5_ID_TO_TRAIN_ID, 256)
SYNTHIA_LABEL_TABLE: np.ndarray = lookup_table(SYNTHIA_ID_TO_TRAIN_ID, 65536)


def apply_label_map(label: np.ndarray, table: np.ndarray, *, default: int | None = None) -> np.ndarray:
    """Map every pixel of an integer ``label`` through ``table``.

    Values outside ``0..len(table)-1`` (negative, or above the table as a 16-bit value in a
    256-entry table) become ``default``, which is the table's last entry when not given (the ignore
    value for tables made by ``lookup_table`` unless the mapping sets the last entry). The result
    has the table's dtype and the label's shape.
    """
    label = np.asarray(label)
    if not np.issubdtype(label.dtype, np.integer) and label.dtype != np.bool_:
        raise TypeError(f"label must be an integer array, got {label.dtype}")
    size = len(table)
    if label.dtype == np.uint8 and size >= 256 or label.dtype == np.uint16 and size >= 65536:
        return table[label]
    if label.dtype == np.bool_:
        return table[label.astype(np.uint8)]
    fill = table[-1] if default is None else default
    values = label.astype(np.int64, copy=False)
    inside = (values >= 0) & (values < size)
    out = table[np.where(inside, values, 0)]
    if not inside.all():
        if not np.can_cast(np.min_scalar_type(fill), out.dtype):
            out = out.astype(np.int64)
        out[~inside] = fill
    return out
