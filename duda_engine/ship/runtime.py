"""Running an exported ONNX student with ONNX Runtime, as a module the engine's evaluation and ``predict`` take.

An exported file has a fixed input height and width (``duda_engine.export`` exports at one size, any
batch): :class:`OnnxSegmentor` resizes other images to that size (bilinear) and its logits back to theirs,
so it maps ``[B, 3, H, W]`` images in ``[0, 1]`` to ``[B, K, H, W]`` logits like the PyTorch student. At
the exported size the two compute the same thing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from duda_engine.config import ConfigError, ExperimentConfig
from duda_engine.data.classes import ClassSpec
from duda_engine.data.datasets import build_dataset
from duda_engine.evaluate import EvalResult
from duda_engine.export import read_metadata
from duda_engine.validation import class_spec


def onnx_session(path: str | Path, threads: int = 0):
    """An ONNX Runtime CPU session; ``threads`` 0 lets ONNX Runtime choose (one per physical core)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxSegmentor(nn.Module):
    """An exported student file behind the PyTorch student's interface (no parameters; CPU inference)."""

    def __init__(self, path: str | Path, threads: int = 0):
        super().__init__()
        self.path = Path(path)
        self.metadata: dict[str, Any] = read_metadata(self.path)
        self.preset = self.metadata["preset"]
        self.num_classes = len(self.metadata["classes"])
        self.input_size = (int(self.metadata["height"]), int(self.metadata["width"]))
        self.session = onnx_session(self.path, threads)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        size = tuple(images.shape[-2:])
        inputs = images.detach().float().cpu()
        if size != self.input_size:
            inputs = F.interpolate(inputs, size=self.input_size, mode="bilinear", align_corners=False)
        logits = torch.from_numpy(self.session.run(["logits"], {"images": inputs.numpy()})[0])
        if size != self.input_size:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return logits.to(images.device)


def onnx_classes(metadata: dict[str, Any]) -> ClassSpec:
    """The classes an exported file predicts, from its metadata."""
    return ClassSpec(tuple(metadata["classes"]), tuple(tuple(c) for c in metadata["colours"]), metadata["ignore_index"])


def load_onnx_student(path: str | Path) -> tuple[OnnxSegmentor, ClassSpec, dict[str, Any]]:
    """Like ``duda_engine.student.load_student`` for an exported ``.onnx`` file: model, classes, metadata."""
    model = OnnxSegmentor(path)
    return model, onnx_classes(model.metadata), model.metadata


def evaluation_size(config: ExperimentConfig) -> tuple[int, int]:
    """(H, W) the target evaluation feeds the network: the first val image resized to fit, or the sliding window."""
    val = build_dataset(config.target, class_spec(config), config.target.val_split, train=False)
    height, width = val.load_image(0).shape[:2]
    if config.eval.mode == "slide":
        return min(config.eval.window[0], height), min(config.eval.window[1], width)
    return height, width


def exported_miou(path: str | Path, config: ExperimentConfig) -> EvalResult:
    """Target mIoU of an exported file on the target's validation set, by the engine's own evaluation."""
    from duda_engine.evaluate import evaluate_model

    model, classes, _ = load_onnx_student(path)
    if classes.names != class_spec(config).names:
        raise ConfigError("classes", f"the classes of {path} differ from the config's")
    val = build_dataset(config.target, classes, config.target.val_split, train=False)
    return evaluate_model(model, val, config, classes, torch.device("cpu"))
