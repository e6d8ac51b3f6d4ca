"""Static int8 quantisation of an exported ONNX student (ONNX Runtime's QDQ format), verified on real images.

Weights are int8 per output channel (symmetric), activations uint8 per tensor, with ranges calibrated
(min-max) on target *training* images read by the engine's dataset reader, resized to fit as the
evaluation does: the images the model will see, without their labels. The int8 file keeps the float
file's input size and metadata (plus how it was quantised); it replaces ``output`` only after its
argmax agreed with the float file's on held-out target images at least ``min_agreement`` of pixels.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from duda_engine.checkpoint import replaced_on_success
from duda_engine.config import ExperimentConfig
from duda_engine.data.datasets import build_dataset
from duda_engine.export import METADATA_KEY, ExportError, read_metadata
from duda_engine.ship.runtime import onnx_session
from duda_engine.validation import class_spec

# Share of pixels where int8 and float must predict the same class. Quantisation noise flips pixels
# whose two best classes are nearly tied (mostly along class boundaries); measured on trained toy
# students it leaves well above 95 % agreeing, so below 90 % something is broken, not merely noisy.
MIN_AGREEMENT = 0.9


@dataclass
class Int8Result:
    path: Path
    argmax_agreement: float  # share of pixels where int8 and float predict the same class, on the check images
    check_images: int
    calibration_images: int
    seconds: float
    size_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "path": str(self.path)}


def target_images(config: ExperimentConfig, split: str, count: int) -> list[np.ndarray]:
    """``count`` images (``H x W x 3`` uint8) spread evenly over ``split`` of the target, resized to fit."""
    dataset = build_dataset(config.target, class_spec(config), split, train=False, labelled=False)
    count = min(count, len(dataset))
    indices = sorted({round(i * (len(dataset) - 1) / max(count - 1, 1)) for i in range(count)})
    return [dataset.load_image(index) for index in indices]


def network_input(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """One image as the network takes it: float32 ``[1, 3, H, W]`` in [0, 1] at ``size`` (bilinear)."""
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float().div_(255)
    if tuple(tensor.shape[-2:]) != tuple(size):
        tensor = F.interpolate(tensor, size=size, mode="bilinear", align_corners=False)
    return tensor.numpy()


def argmax_agreement(float_path: Path, int8_path: Path, inputs: Sequence[np.ndarray]) -> float:
    reference, quantised = onnx_session(float_path), onnx_session(int8_path)
    agree = total = 0
    for images in inputs:
        expected = reference.run(["logits"], {"images": images})[0].argmax(1)
        actual = quantised.run(["logits"], {"images": images})[0].argmax(1)
        agree += int((expected == actual).sum())
        total += expected.size
    return agree / total


def quantize_int8(
    float_path: str | Path,
    output: str | Path,
    calibration: Sequence[np.ndarray],
    check: Sequence[np.ndarray],
    *,
    min_agreement: float = MIN_AGREEMENT,
) -> Int8Result:
    """Quantise the exported float file ``float_path`` to ``output``, calibrated on ``calibration`` images
    and checked on ``check`` images (uint8 ``H x W x 3``, resized to the file's input size)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Calibration(CalibrationDataReader):
        def __init__(self, inputs: list[np.ndarray]):
            self.batches = iter(inputs)

        def get_next(self) -> dict[str, np.ndarray] | None:
            images = next(self.batches, None)
            return None if images is None else {"images": images}

    if not calibration or not check:
        raise ExportError("int8 quantisation needs at least one calibration and one check image")
    started = time.perf_counter()
    float_path, output = Path(float_path), Path(output)
    metadata = read_metadata(float_path)
    size = (int(metadata["height"]), int(metadata["width"]))
    reader = Calibration([network_input(image, size) for image in calibration])
    with tempfile.TemporaryDirectory(prefix=".int8.", dir=output.parent if output.parent.exists() else None) as work:
        prepared, quantised = Path(work) / "prepared.onnx", Path(work) / "quantised.onnx"
        quant_pre_process(str(float_path), str(prepared))  # shape inference and graph folding, as ONNX Runtime advises
        quantize_static(
            str(prepared),
            str(quantised),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        model = onnx.load(str(quantised))
        metadata["quantization"] = {
            "format": "ONNX Runtime static QDQ",
            "weights": "int8, per output channel",
            "activations": "uint8, per tensor",
            "calibration": f"min-max over {len(calibration)} target training images",
        }
        del model.metadata_props[:]
        model.metadata_props.add(key=METADATA_KEY, value=json.dumps(metadata))
        with replaced_on_success(output) as tmp:
            onnx.save(model, str(tmp))
            agreement = argmax_agreement(float_path, tmp, [network_input(image, size) for image in check])
            if not agreement >= min_agreement:
                raise ExportError(
                    f"the int8 model agrees with the float model on {agreement:.1%} of pixels "
                    f"(at least {min_agreement:.0%} required); {output} was not written"
                )
    return Int8Result(
        path=output,
        argmax_agreement=agreement,
        check_images=len(check),
        calibration_images=len(calibration),
        seconds=time.perf_counter() - started,
        size_bytes=output.stat().st_size,
    )
