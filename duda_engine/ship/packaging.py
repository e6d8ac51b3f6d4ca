"""``package``: a student checkpoint -> float and int8 ONNX files, their target mIoU and CPU speed, and a model card.

Every exported file has a fixed input size (see ``duda_engine.export``). The files written to ``out_dir``
are exported at the size the target evaluation feeds the network (the val images resized to fit, or the
sliding window), so their mIoU is measured without resizing; speed at other sizes (by default the
training crop and 1024x512) is measured on files exported at those sizes in a temporary folder.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from duda_engine.checkpoint import CheckpointError, sha256_file
from duda_engine.config import ExperimentConfig
from duda_engine.config_loading import config_from_dict
from duda_engine.evaluate import EvalResult
from duda_engine.export import ExportResult, export_student
from duda_engine.ship.card import iou_or_none, model_card, write_card
from duda_engine.ship.int8 import Int8Result, quantize_int8, target_images
from duda_engine.ship.runtime import evaluation_size, exported_miou
from duda_engine.ship.speed import SpeedResult, measure_speed
from duda_engine.student import load_student
from duda_engine.validation import class_spec

SERVING_SIZE = (512, 1024)  # (H, W): the 1024x512 input speed is reported at by default


@dataclass
class PackageResult:
    out_dir: Path
    float_file: ExportResult
    int8_file: Int8Result | None
    accuracy: dict[str, EvalResult] = field(default_factory=dict)  # "float" / "int8" -> target evaluation
    speed: dict[str, list[SpeedResult]] = field(default_factory=dict)  # "float" / "int8" -> one per size
    sha256: dict[str, str] = field(default_factory=dict)  # file name -> digest
    card: dict[str, Any] | None = None
    card_paths: tuple[Path, Path] | None = None

    def files(self) -> dict[str, Path]:
        """kind -> path of the files written."""
        return {"float": self.float_file.path} | ({"int8": self.int8_file.path} if self.int8_file else {})

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "float": self.float_file.to_dict(),
            "int8": self.int8_file.to_dict() if self.int8_file else None,
            "accuracy": {kind: {"miou": r.miou, "per_class": {k: iou_or_none(v) for k, v in r.per_class.items()},
                                "num_images": r.num_images} for kind, r in self.accuracy.items()},
            "speed": {kind: [s.to_dict() for s in speeds] for kind, speeds in self.speed.items()},
            "sha256": self.sha256,
            "card": [str(p) for p in self.card_paths] if self.card_paths else None,
        }


def default_speed_sizes(config: ExperimentConfig) -> list[tuple[int, int]]:
    """(H, W) sizes speed is measured at by default: the training crop and 1024x512."""
    return list(dict.fromkeys([tuple(config.train.crop_size), SERVING_SIZE]))


def run_config(checkpoint: str | Path) -> ExperimentConfig:
    """The engine config a student file or full checkpoint was trained with."""
    _, _, meta = load_student(checkpoint)
    if not meta.get("config"):
        raise CheckpointError(f"{checkpoint} holds no config; pass the run's config")
    return config_from_dict(meta["config"])


def _file_entry(kind: str, path: Path, result: PackageResult) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": path.name, "kind": kind, "sha256": result.sha256[path.name],
                             "size_bytes": path.stat().st_size}
    if kind == "float":
        entry["max_abs_diff_vs_pytorch"] = result.float_file.max_abs_diff
    else:
        entry["argmax_agreement_with_float"] = result.int8_file.argmax_agreement
    if kind in result.accuracy:
        evaluation = result.accuracy[kind]
        entry["target_miou"] = evaluation.miou
        entry["per_class"] = {name: iou_or_none(iou) for name, iou in evaluation.per_class.items()}
        entry["val_images"] = evaluation.num_images
    entry["speed"] = [s.to_dict() for s in result.speed.get(kind, [])]
    return entry


def package(
    checkpoint: str | Path,
    out_dir: str | Path,
    config: ExperimentConfig | None = None,
    *,
    int8: bool = True,
    accuracy: bool = True,
    card: bool = True,
    calibration_images: int = 32,
    check_images: int = 8,
    speed_sizes: list[tuple[int, int]] | None = None,
    speed_runs: int = 20,
    baselines: dict[str, dict[str, Any]] | None = None,
    stem: str = "student",
) -> PackageResult:
    """Export ``checkpoint`` to ``out_dir/<stem>.onnx`` (and ``<stem>.int8.onnx``), measure and describe them.

    ``config``: the run's engine config (default: the one saved in the checkpoint); its target dataset
    gives the calibration images (training split) and the mIoU (validation split). ``speed_sizes``: (H, W)
    sizes to time at (default :func:`default_speed_sizes`; ``[]``: none). ``baselines``: name ->
    ``{"miou", "per_class"}`` shown beside the files in the card. Raises ``ExportError``, ``CheckpointError``,
    ``ConfigError`` or ``DatasetError``.
    """
    out_dir = Path(out_dir)
    config = config or run_config(checkpoint)
    height, width = evaluation_size(config)
    float_path, int8_path = out_dir / f"{stem}.onnx", out_dir / f"{stem}.int8.onnx"
    result = PackageResult(out_dir, export_student(checkpoint, float_path, height=height, width=width), None)
    if int8:
        calibration = target_images(config, config.target.train_split, calibration_images)
        check = target_images(config, config.target.val_split, check_images)
        result.int8_file = quantize_int8(float_path, int8_path, calibration, check)
    for kind, path in result.files().items():
        result.sha256[path.name] = sha256_file(path)
        if accuracy:
            result.accuracy[kind] = exported_miou(path, config)

    sizes = default_speed_sizes(config) if speed_sizes is None else speed_sizes
    with tempfile.TemporaryDirectory(prefix=".speed.", dir=out_dir) as scratch:
        for size in sizes:
            files = result.files()
            if tuple(size) != (height, width):
                folder = Path(scratch) / f"{size[0]}x{size[1]}"
                files = {"float": export_student(checkpoint, folder / float_path.name, height=size[0], width=size[1]).path}
                if int8:
                    files["int8"] = quantize_int8(files["float"], folder / int8_path.name, calibration, check).path
            for kind, path in files.items():
                result.speed.setdefault(kind, []).append(measure_speed(path, runs=speed_runs))

    if card:
        _, _, meta = load_student(checkpoint)
        entries = [_file_entry(kind, path, result) for kind, path in result.files().items()]
        result.card = model_card(config=config, classes=class_spec(config), preset=result.float_file.preset,
                                 step=meta.get("step"), input_size=(height, width), files=entries, baselines=baselines)
        result.card_paths = write_card(out_dir, result.card)
    return result
