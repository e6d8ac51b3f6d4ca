"""Evaluation: confusion-matrix mIoU of a model on a dataset, whole-image and sliding-window inference,
palette images."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from duda_engine.config import ExperimentConfig
from duda_engine.data.classes import SYNTHIA_13_CLASSES, SYNTHIA_16_CLASSES, ClassSpec

if TYPE_CHECKING:
    from duda_engine.data.datasets import SegmentationDataset


def confusion_matrix(prediction: torch.Tensor, label: torch.Tensor, num_classes: int, ignore_index: int) -> torch.Tensor:
    """``[K, K]`` int64 counts; row = ground-truth class, column = predicted class; ignore skipped."""
    valid = label != ignore_index
    valid &= (label >= 0) & (label < num_classes)
    index = label[valid].long() * num_classes + prediction[valid].long()
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes).cpu()


def iou_per_class(matrix: torch.Tensor) -> torch.Tensor:
    """IoU_k = TP / (TP + FP + FN); NaN where class k is neither in the labels nor predicted."""
    matrix = matrix.double()
    true_positive = matrix.diag()
    union = matrix.sum(0) + matrix.sum(1) - true_positive
    iou = true_positive / union
    iou[union == 0] = math.nan
    return iou


@dataclass
class EvalResult:
    miou: float  # mean IoU in percent over the scored classes present
    per_class: dict[str, float]  # class name -> IoU in percent (NaN: absent from labels and predictions)
    pixel_accuracy: float
    num_images: int
    scored_classes: list[str] = field(default_factory=list)
    confusion: list[list[int]] = field(default_factory=list)  # [label][prediction] pixel counts

    def confused_with(self, name: str, top: int = 3) -> list[tuple[str, float]]:
        """Where the pixels labelled ``name`` went: the ``top`` predicted classes, with their share in percent."""
        names = list(self.per_class)
        row = self.confusion[names.index(name)]
        total = sum(row)
        ranked = sorted(range(len(row)), key=lambda j: -row[j])[:top]
        return [(names[j], 100.0 * row[j] / total) for j in ranked if row[j]] if total else []


class ConfusionMeter:
    """Accumulates a confusion matrix over a dataset and turns it into an :class:`EvalResult`."""

    def __init__(self, classes: ClassSpec):
        self.classes = classes
        self.matrix = torch.zeros(classes.num_classes, classes.num_classes, dtype=torch.int64)
        self.num_images = 0

    def update(self, prediction: torch.Tensor, label: torch.Tensor) -> None:
        self.matrix += confusion_matrix(prediction, label, self.classes.num_classes, self.classes.ignore_index)
        self.num_images += prediction.shape[0] if prediction.dim() == 3 else 1

    def result(self, class_subset: tuple[int, ...] | None = None) -> EvalResult:
        iou = iou_per_class(self.matrix)
        scored = list(class_subset) if class_subset else list(range(self.classes.num_classes))
        scored_iou = iou[scored]
        present = ~torch.isnan(scored_iou)
        miou = float(scored_iou[present].mean() * 100) if present.any() else 0.0
        total = self.matrix.sum()
        accuracy = float(self.matrix.diag().sum().double() / total * 100) if total > 0 else 0.0
        return EvalResult(
            miou=miou,
            per_class={self.classes.names[k]: float(iou[k] * 100) for k in range(self.classes.num_classes)},
            pixel_accuracy=accuracy,
            num_images=self.num_images,
            scored_classes=[self.classes.names[k] for k in scored],
            confusion=self.matrix.tolist(),
        )


@torch.no_grad()
def sliding_window_logits(
    model: torch.nn.Module, images: torch.Tensor, num_classes: int, window: tuple[int, int], stride: tuple[int, int]
) -> torch.Tensor:
    """Average the logits of overlapping windows (``[B,3,H,W]`` -> ``[B,K,H,W]``)."""
    batch, _, height, width = images.shape
    win_h, win_w = min(window[0], height), min(window[1], width)
    rows = max(math.ceil((height - win_h) / stride[0]), 0) + 1
    cols = max(math.ceil((width - win_w) / stride[1]), 0) + 1
    logits = images.new_zeros(batch, num_classes, height, width)
    counts = images.new_zeros(1, 1, height, width)
    for row in range(rows):
        for col in range(cols):
            top = min(row * stride[0], height - win_h)
            left = min(col * stride[1], width - win_w)
            crop = images[:, :, top : top + win_h, left : left + win_w]
            logits[:, :, top : top + win_h, left : left + win_w] += model(crop).float()
            counts[:, :, top : top + win_h, left : left + win_w] += 1
    return logits / counts


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module,
    images: torch.Tensor,
    num_classes: int,
    output_size: tuple[int, int],
    mode: str = "whole",
    window: tuple[int, int] = (512, 512),
    stride: tuple[int, int] = (341, 341),
) -> torch.Tensor:
    """Logits at ``output_size`` (the label's full resolution) for float images in [0, 1]."""
    if mode == "slide":
        logits = sliding_window_logits(model, images, num_classes, window, stride)
    else:
        logits = model(images).float()
    if tuple(logits.shape[-2:]) != tuple(output_size):
        logits = F.interpolate(logits, size=output_size, mode="bilinear", align_corners=False)
    return logits


def palette_array(classes: ClassSpec) -> np.ndarray:
    """``[256, 3]`` uint8 lookup: class colours, black for ignore and unknown ids."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for k, colour in enumerate(classes.colours[:256]):
        palette[k] = colour
    return palette


def class_id_map(label: np.ndarray | torch.Tensor, classes: ClassSpec) -> np.ndarray:
    """A label or a prediction (``H x W``) as class ids ``0..K-1``, with ``classes.ignore_index`` for every
    other value; uint8 when the ignore value fits in it, else uint16 (as the datasets' labels)."""
    if isinstance(label, torch.Tensor):
        label = label.cpu().numpy()
    dtype = np.uint8 if classes.ignore_index <= 255 else np.uint16
    return np.where((label >= 0) & (label < classes.num_classes), label, classes.ignore_index).astype(dtype)


def colorize(label: np.ndarray | torch.Tensor, classes: ClassSpec) -> np.ndarray:
    """Colour a class-id map (``H x W``) with the class palette; returns ``H x W x 3`` uint8."""
    if isinstance(label, torch.Tensor):
        label = label.cpu().numpy()
    ids = np.where((label >= 0) & (label < classes.num_classes), label, 255).astype(np.uint8)
    return palette_array(classes)[ids]


def class_subset(config: ExperimentConfig) -> tuple[int, ...] | None:
    """The class ids a SYNTHIA benchmark scores (``eval.class_subset``), or None for all."""
    return {"synthia16": SYNTHIA_16_CLASSES, "synthia13": SYNTHIA_13_CLASSES}.get(config.eval.class_subset)


@torch.no_grad()
def evaluate_model(
    model: torch.nn.Module,
    dataset: SegmentationDataset,
    config: ExperimentConfig,
    classes: ClassSpec,
    device: torch.device,
) -> EvalResult:
    """Target mIoU of ``model`` on ``dataset`` (whole-image or sliding window, labels at full size)."""
    was_training = model.training
    model.eval()
    meter = ConfusionMeter(classes)
    count = len(dataset) if not config.train.max_val_images else min(len(dataset), config.train.max_val_images)
    e = config.eval
    for index in range(count):
        item = dataset[index]
        images = item["image"][None].to(device).float().div_(255.0)
        label = item["label"].to(device)
        logits = predict_logits(model, images, classes.num_classes, tuple(label.shape), e.mode, tuple(e.window), tuple(e.stride))
        meter.update(logits.argmax(1)[0], label)
    model.train(was_training)
    return meter.result(class_subset(config))
