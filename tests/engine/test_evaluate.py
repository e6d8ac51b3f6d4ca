import math

import numpy as np
import torch

from duda_engine.data.classes import CITYSCAPES, ClassSpec
from duda_engine.evaluate import ConfusionMeter, class_id_map, colorize, confusion_matrix, iou_per_class, predict_logits

THREE = ClassSpec(("a", "b", "c"), ((255, 0, 0), (0, 255, 0), (0, 0, 255)))


def test_confusion_matrix_and_miou_by_hand():
    label = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 1]])
    prediction = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 2]])
    matrix = confusion_matrix(prediction, label, 3, 255)
    # rows = truth, columns = prediction; the ignored pixel is not counted
    assert matrix.tolist() == [[1, 1, 0], [0, 2, 1], [1, 0, 1]]
    iou = iou_per_class(matrix)
    # a: TP 1, FP 1, FN 1 -> 1/3; b: TP 2, FP 1, FN 1 -> 2/4; c: TP 1, FP 1, FN 1 -> 1/3
    assert torch.allclose(iou, torch.tensor([1 / 3, 0.5, 1 / 3], dtype=torch.float64))
    meter = ConfusionMeter(THREE)
    meter.update(prediction, label)
    result = meter.result()
    assert math.isclose(result.miou, 100 * (1 / 3 + 0.5 + 1 / 3) / 3)
    assert math.isclose(result.pixel_accuracy, 100 * 4 / 7)


def test_the_result_says_where_each_class_went():
    label = torch.tensor([[0, 0, 0, 0], [1, 1, 2, 255]])
    prediction = torch.tensor([[1, 1, 1, 0], [1, 2, 2, 0]])
    meter = ConfusionMeter(THREE)
    meter.update(prediction, label)
    result = meter.result()
    assert result.confusion == [[1, 3, 0], [0, 1, 1], [0, 0, 1]]  # [label][prediction], the ignored pixel left out
    assert result.confused_with("a") == [("b", 75.0), ("a", 25.0)]  # classes never predicted are not listed
    assert result.confused_with("b", top=1) == [("b", 50.0)]  # a tie keeps the class order
    assert ConfusionMeter(THREE).result().confused_with("c") == []  # no labelled pixels


def test_absent_classes_do_not_count_and_subsets_score_only_their_classes():
    meter = ConfusionMeter(THREE)
    meter.update(torch.tensor([0, 0, 1]), torch.tensor([0, 0, 1]))
    result = meter.result()
    assert math.isnan(result.per_class["c"])
    assert result.miou == 100.0
    assert meter.result(class_subset=(0,)).scored_classes == ["a"]


def test_sliding_window_equals_whole_image_for_a_pointwise_model():
    class Pointwise(torch.nn.Module):
        def forward(self, x):
            return torch.cat([x, 1 - x[:, :1]], dim=1)

    images = torch.rand(1, 3, 70, 100)
    whole = predict_logits(Pointwise(), images, 4, (70, 100))
    slide = predict_logits(Pointwise(), images, 4, (70, 100), mode="slide", window=(32, 48), stride=(20, 30))
    assert torch.allclose(whole, slide, atol=1e-6)
    upsampled = predict_logits(Pointwise(), images, 4, (140, 200))
    assert upsampled.shape == (1, 4, 140, 200)


def test_colorize_uses_the_palette_and_black_for_ignore():
    image = colorize(np.array([[0, 13, 255]]), CITYSCAPES)
    assert image.tolist() == [[[128, 64, 128], [0, 0, 142], [0, 0, 0]]]


def test_class_id_maps_keep_ids_and_mark_every_other_value_with_the_ignore_value():
    twins = ClassSpec(("road", "lane"), ((9, 9, 9), (9, 9, 9)))  # one colour, two classes
    ids = class_id_map(torch.tensor([[0, 1, 255], [-1, 2, 1]]), twins)
    assert ids.dtype == np.uint8 and ids.tolist() == [[0, 1, 255], [255, 255, 1]]
    wide = class_id_map(np.array([[1, 7]]), ClassSpec(("a", "b"), ((0, 0, 0), (1, 1, 1)), ignore_index=1000))
    assert wide.dtype == np.uint16 and wide.tolist() == [[1, 1000]]
