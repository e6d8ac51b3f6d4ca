"""Geometric transforms: resize to fit, rescale, crop with cat_max_ratio, flip."""

from __future__ import annotations

import numpy as np
import pytest

from duda_engine.data import transforms as T


def _pair(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    label = rng.integers(0, 19, (height, width), dtype=np.uint8)
    return image, label


def test_fit_size_keeps_aspect_and_fits_the_box():
    assert T.fit_size(1914, 1052, (1280, 720)) == (1280, 704)  # GTA5 as DAFormer resizes it
    assert T.fit_size(2048, 1024, (1024, 512)) == (1024, 512)
    assert T.fit_size(100, 50, (1024, 512)) == (1024, 512)  # small images are upscaled to fit
    assert T.fit_size(50, 100, (1024, 512)) == (256, 512)  # portrait: height limits


def test_resize_to_fit_resizes_image_and_label_together():
    image, label = _pair(52, 96)
    out_image, out_label = T.resize_to_fit(image, label, (48, 48))
    assert out_image.shape == (26, 48, 3) and out_image.dtype == np.uint8
    assert out_label.shape == (26, 48) and out_label.dtype == np.uint8
    assert set(np.unique(out_label)) <= set(np.unique(label))  # nearest: no new values
    same_image, same_label = T.resize_to_fit(image, label, None)
    assert same_image is image and same_label is label


def test_resize_label_nearest_is_exact_for_integer_factors_and_any_dtype():
    label = np.array([[1, 2], [3, 4]], dtype=np.int64)
    up = T.resize_label(label, (4, 4))
    np.testing.assert_array_equal(up, [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])
    np.testing.assert_array_equal(T.resize_label(up, (2, 2)), label)
    assert up.dtype == np.int64


def test_random_rescale_is_in_range_and_reproducible():
    image, label = _pair(40, 80)
    sizes = set()
    for seed in range(20):
        out_image, out_label = T.random_rescale(image, label, (0.5, 2.0), np.random.default_rng(seed))
        height, width = out_image.shape[:2]
        assert out_label.shape == (height, width)
        assert 20 <= height <= 80 and 40 <= width <= 160
        assert abs(width / height - 2.0) < 0.1
        sizes.add((height, width))
        again, _ = T.random_rescale(image, label, (0.5, 2.0), np.random.default_rng(seed))
        np.testing.assert_array_equal(out_image, again)
    assert len(sizes) > 10
    with pytest.raises(ValueError):
        T.random_rescale(image, label, (2.0, 1.0), np.random.default_rng(0))


def test_random_crop_has_the_crop_size_and_matches_the_source():
    image, label = _pair(60, 90)
    out_image, out_label, corner = T.random_crop(image, label, (32, 48), np.random.default_rng(3), cat_max_ratio=1.0)
    assert out_image.shape == (32, 48, 3) and out_label.shape == (32, 48)
    # the crop is a window of the input, the same for image and label
    found = [
        (top, left)
        for top in range(60 - 32 + 1)
        for left in range(90 - 48 + 1)
        if np.array_equal(label[top : top + 32, left : left + 48], out_label)
    ]
    assert found == [corner]  # and the corner it reports is where it cut
    top, left = corner
    np.testing.assert_array_equal(image[top : top + 32, left : left + 48], out_image)


def test_random_crop_pads_small_inputs_with_zero_and_ignore():
    image, label = _pair(10, 20)
    out_image, out_label, _ = T.random_crop(image, label, (16, 32), np.random.default_rng(0), ignore_index=255)
    assert out_image.shape == (16, 32, 3) and out_label.shape == (16, 32)
    np.testing.assert_array_equal(out_image[:10, :20], image)
    assert (out_image[10:] == 0).all() and (out_image[:, 20:] == 0).all()
    assert (out_label[10:] == 255).all() and (out_label[:, 20:] == 255).all()
    # an ignore value above 255 upcasts a uint8 label rather than overflowing
    _, wide, _ = T.random_crop(image, label, (16, 32), np.random.default_rng(0), ignore_index=1000)
    assert wide[15, 31] == 1000


def test_cat_max_ratio_avoids_crops_dominated_by_one_class():
    # class 0 everywhere except a 10-column band of class 1; a 10x10 crop passes the 0.75 rule only if
    # it holds 3 to 7 columns of the band (10 of 91 positions: 11%).
    label = np.zeros((10, 100), dtype=np.uint8)
    label[:, 45:55] = 1
    image = np.zeros((10, 100, 3), dtype=np.uint8)

    def passing(cat_max_ratio: float) -> int:
        count = 0
        for seed in range(200):
            _, crop, _ = T.random_crop(image, label, (10, 10), np.random.default_rng(seed), cat_max_ratio=cat_max_ratio)
            ratio = T.dominant_class_ratio(crop)
            count += ratio is not None and ratio < 0.75
        return count

    plain, guarded = passing(1.0), passing(0.75)
    assert plain < 45  # 11% of 200 = 22 expected
    assert guarded > 120  # 11 tries: 1 - 0.89**11 = 72% of 200 = 144 expected
    # a label where no crop can pass still gives a crop of the right size
    _, crop, _ = T.random_crop(image, np.zeros_like(label), (10, 10), np.random.default_rng(0))
    assert crop.shape == (10, 10)


def test_dominant_class_ratio_ignores_the_ignore_value():
    label = np.array([[0, 0, 0, 1, 255, 255]], dtype=np.uint8)
    assert T.dominant_class_ratio(label) == pytest.approx(0.75)
    assert T.dominant_class_ratio(np.full((3, 3), 255, np.uint8)) is None
    assert T.dominant_class_ratio(np.zeros((3, 3), np.uint8)) is None


def test_hflip_mirrors_and_returns_contiguous_arrays():
    image, label = _pair(4, 5)
    flipped_image, flipped_label = T.hflip(image, label)
    np.testing.assert_array_equal(flipped_label[:, 0], label[:, -1])
    np.testing.assert_array_equal(flipped_image[:, 0], image[:, -1])
    assert flipped_image.flags["C_CONTIGUOUS"] and flipped_label.flags["C_CONTIGUOUS"]
    assert T.random_hflip(image, label, np.random.default_rng(0), p=0.0)[1] is label
    np.testing.assert_array_equal(T.random_hflip(image, label, np.random.default_rng(0), p=1.0)[1], flipped_label)
