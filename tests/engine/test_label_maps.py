"""Label-id -> train-id tables (GTA5/Cityscapes, SYNTHIA) and ``apply_label_map``."""

from __future__ import annotations

import numpy as np
import pytest

from duda_engine.data.label_maps import (
    CITYSCAPES_ID_TO_TRAIN_ID,
    CITYSCAPES_LABEL_TABLE,
    GTA5_LABEL_TABLE,
    SYNTHIA_ID_TO_TRAIN_ID,
    SYNTHIA_LABEL_TABLE,
    apply_label_map,
    identity_table,
    lookup_table,
)

# cityscapesscripts/helpers/labels.py, written out independently of the module under test.
EXPECTED_CITYSCAPES = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip
EXPECTED_SYNTHIA = {
    3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 1: 10,
    10: 11, 17: 12, 8: 13, 19: 15, 12: 17, 11: 18,
}  # fmt: skip


def test_tables_match_the_reference():
    assert CITYSCAPES_ID_TO_TRAIN_ID == EXPECTED_CITYSCAPES
    assert SYNTHIA_ID_TO_TRAIN_ID == EXPECTED_SYNTHIA
    assert CITYSCAPES_LABEL_TABLE.shape == (256,) and SYNTHIA_LABEL_TABLE.shape == (65536,)
    assert CITYSCAPES_LABEL_TABLE.dtype == np.uint8
    np.testing.assert_array_equal(GTA5_LABEL_TABLE, CITYSCAPES_LABEL_TABLE)


def test_gta_label_ids_map_pixel_by_pixel():
    label = np.arange(256, dtype=np.uint8).reshape(16, 16)
    mapped = apply_label_map(label, GTA5_LABEL_TABLE)
    assert mapped.shape == (16, 16)
    for value in range(256):
        row, col = divmod(value, 16)
        assert mapped[row, col] == EXPECTED_CITYSCAPES.get(value, 255), value


def test_synthia_16bit_values_map_including_values_above_255():
    values = np.array([[3, 4, 2, 21], [1, 300, 1000, 65535], [16, 18, 20, 11], [0, 256 + 3, 19, 12]], dtype=np.uint16)
    mapped = apply_label_map(values, SYNTHIA_LABEL_TABLE)
    expected = np.array([[0, 1, 2, 3], [10, 255, 255, 255], [255, 255, 255, 18], [255, 255, 15, 17]])
    np.testing.assert_array_equal(mapped, expected)
    for synthia_id, train_id in EXPECTED_SYNTHIA.items():
        assert SYNTHIA_LABEL_TABLE[synthia_id] == train_id
    # terrain (9), truck (14) and train (16) never appear as a SYNTHIA target
    assert not {9, 14, 16} & set(SYNTHIA_LABEL_TABLE[SYNTHIA_LABEL_TABLE != 255].tolist())


def test_values_outside_the_table_become_ignore():
    label = np.array([[-1, 7, 256, 70000]], dtype=np.int32)
    np.testing.assert_array_equal(apply_label_map(label, CITYSCAPES_LABEL_TABLE), [[255, 0, 255, 255]])
    np.testing.assert_array_equal(apply_label_map(label, CITYSCAPES_LABEL_TABLE, default=250), [[250, 0, 250, 250]])
    # a 16-bit label through the 8-bit table
    label16 = np.array([[26, 26 + 256]], dtype=np.uint16)
    np.testing.assert_array_equal(apply_label_map(label16, CITYSCAPES_LABEL_TABLE), [[13, 255]])


def test_lookup_table_with_another_ignore_value_and_read_only():
    table = lookup_table(EXPECTED_CITYSCAPES, 256, ignore_index=1000)
    assert table.dtype == np.uint16 and table[0] == 1000 and table[26] == 13
    with pytest.raises(ValueError):
        table[0] = 3
    assert lookup_table(EXPECTED_CITYSCAPES, 256, 1000) is table  # cached
    identity = identity_table(5, 256, 255)
    np.testing.assert_array_equal(identity[:7], [0, 1, 2, 3, 4, 255, 255])


def test_apply_label_map_rejects_float_labels():
    with pytest.raises(TypeError):
        apply_label_map(np.zeros((2, 2), np.float32), CITYSCAPES_LABEL_TABLE)
