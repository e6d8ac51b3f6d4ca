"""The adapted student for deployment: ``python -m duda_engine export --checkpoint student.pt --output student.onnx``.

Formats:

- ``onnx``: an ONNX model (``torch.onnx.export`` with the dynamo exporter; needs the ``onnx`` and
  ``onnxscript`` packages), checked with ONNX Runtime (``onnxruntime``).
- ``torch_export``: a ``torch.export`` ExportedProgram saved with ``torch.export.save`` (``.pt2``),
  checked by loading it back with ``torch.export.load``. Needs nothing beyond PyTorch.

The exported network takes what the student takes: float32 RGB images ``[B, 3, H, W]`` in ``[0, 1]``
(its preset's normalisation is inside), at the height and width it was exported at, any batch size;
it returns logits ``[B, K, H, W]``. The class names and colours, and the ``mean``/``std`` the model
normalises its input with, travel inside the file (ONNX metadata ``duda_student``; the
ExportedProgram's extra file ``duda_student.json``).

The file is written beside its destination and renamed over it only after the exported model's
outputs matched PyTorch's on random inputs (batch 1 and 3) within the tolerance: a reader never sees
half a file, and a mismatching export never replaces a good one.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from duda_engine.checkpoint import CheckpointError, atomic_write_bytes, replaced_on_success
from duda_engine.models import get_preset
from duda_engine.student import load_student

FORMATS = ("onnx", "torch_export")
METADATA_KEY = "duda_student"
EXTRA_FILE = "duda_student.json"
EXAMPLE_BATCH = 2  # a batch of 1 would make torch.export specialise the batch dimension to 1
VERIFY_BATCHES = (1, 3)
MAX_BATCH = 1024


class ExportError(ValueError):
    """The student cannot be exported in that format, or its export does not match PyTorch."""


@dataclass
class ExportResult:
    path: Path
    format: str
    preset: str
    height: int
    width: int
    max_abs_diff: float  # largest |exported - PyTorch| logit over the verification inputs
    argmax_agreement: float  # share of pixels where both predict the same class
    tolerance: float
    seconds: float  # export + verification
    size_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "path": str(self.path)}


def _missing(*modules: str) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def check_format(fmt: str) -> None:
    """Raise ``ExportError`` when ``fmt`` is unknown or its packages are not installed."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r} (known: {', '.join(FORMATS)})")
    if fmt == "onnx":
        missing = _missing("onnx", "onnxscript", "onnxruntime")
        if missing:
            raise ExportError(
                f"ONNX export needs {', '.join(missing)} (pip install {' '.join(missing)}), "
                "or use --format torch_export"
            )


def student_metadata(model: nn.Module, classes, meta: dict[str, Any], height: int, width: int) -> dict[str, Any]:
    """What a deployment needs to read the output: classes, colours, input convention."""
    normalization = get_preset(model.preset).normalization
    return {
        "preset": model.preset,
        "classes": list(classes.names),
        "colours": [list(c) for c in classes.colours],
        "ignore_index": classes.ignore_index,
        "input": "float32 RGB images [B, 3, H, W] in [0, 1]; the model normalises them: (image - mean) / std",
        "mean": list(normalization.mean),
        "std": list(normalization.std),
        "output": "logits [B, K, H, W]; the class of a pixel is the argmax over K",
        "height": height,
        "width": width,
        "step": meta.get("step"),
        "target_miou": meta.get("target_miou"),
    }


def _dynamic_batch() -> dict[str, dict[int, Any]]:
    return {"images": {0: torch.export.Dim("batch", min=1, max=MAX_BATCH)}}


def _export_onnx(model: nn.Module, example: torch.Tensor, path: Path, metadata: dict[str, Any]):
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        input_names=["images"],
        output_names=["logits"],
        dynamic_shapes=_dynamic_batch(),
        verbose=False,
    )
    program.model.metadata_props[METADATA_KEY] = json.dumps(metadata)
    program.save(path, external_data=False)

    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda images: torch.from_numpy(session.run(["logits"], {"images": images.numpy()})[0])


def _export_program(model: nn.Module, example: torch.Tensor, path: Path, metadata: dict[str, Any]):
    program = torch.export.export(model, (example,), dynamic_shapes=_dynamic_batch())
    with open(path, "wb") as handle:
        torch.export.save(program, handle, extra_files={EXTRA_FILE: json.dumps(metadata)})
    with open(path, "rb") as handle:  # a handle: torch.export.load wants a .pt2 name otherwise
        loaded = torch.export.load(handle).module()
    return lambda images: loaded(images)


def export_student(
    checkpoint: str | Path,
    output: str | Path,
    *,
    fmt: str = "onnx",
    height: int = 512,
    width: int = 1024,
    tolerance: float = 1e-3,
    seed: int = 0,
) -> ExportResult:
    """Export the student of ``checkpoint`` (a student file or a full training checkpoint) to ``output``.

    Raises ``ExportError`` (format unavailable, bad size, outputs differ by more than ``tolerance``)
    or ``CheckpointError``; ``output`` is only replaced by a verified file.
    """
    check_format(fmt)
    if height < 32 or width < 32:
        raise ExportError(f"--height and --width must be at least 32, got {height}x{width}")
    started = time.perf_counter()
    model, classes, meta = load_student(checkpoint, "cpu")
    model.eval()
    metadata = student_metadata(model, classes, meta, height, width)
    generator = torch.Generator().manual_seed(seed)
    example = torch.rand(EXAMPLE_BATCH, 3, height, width, generator=generator)
    checks = [torch.rand(batch, 3, height, width, generator=generator) for batch in VERIFY_BATCHES]

    output = Path(output)
    with replaced_on_success(output) as tmp:
        exporter = _export_onnx if fmt == "onnx" else _export_program
        with torch.no_grad():
            run_exported = exporter(model, example, tmp, metadata)
            max_diff, agree, total = 0.0, 0, 0
            for images in checks:
                expected = model(images)
                actual = run_exported(images)
                if actual.shape != expected.shape:
                    raise ExportError(
                        f"the exported model returns {list(actual.shape)}, PyTorch {list(expected.shape)}"
                    )
                max_diff = max(max_diff, (actual - expected).abs().max().item())
                agree += (actual.argmax(1) == expected.argmax(1)).sum().item()
                total += expected[:, 0].numel()
        if not max_diff <= tolerance:
            raise ExportError(
                f"the exported model's logits differ from PyTorch's by up to {max_diff:.3g} "
                f"(tolerance {tolerance:g}); {output} was not written"
            )
    return ExportResult(
        path=output,
        format=fmt,
        preset=model.preset,
        height=height,
        width=width,
        max_abs_diff=max_diff,
        argmax_agreement=agree / total,
        tolerance=tolerance,
        seconds=time.perf_counter() - started,
        size_bytes=output.stat().st_size,
    )


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The student metadata stored in an exported file (either format)."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        return json.loads(props[METADATA_KEY])
    extra = {EXTRA_FILE: ""}
    with open(path, "rb") as handle:
        torch.export.load(handle, extra_files=extra)
    return json.loads(extra[EXTRA_FILE])


# --------------------------------------------------------------------------------------------
# Command line.
# --------------------------------------------------------------------------------------------


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="student.pt (or a full training checkpoint)")
    parser.add_argument("--output", required=True, help="the file to write (student.onnx, student.pt2)")
    parser.add_argument("--format", choices=FORMATS, default="onnx", help="onnx (default) or torch_export")
    parser.add_argument("--height", type=int, default=512, help="input height the model is exported at (default 512)")
    parser.add_argument("--width", type=int, default=1024, help="input width (default 1024)")
    parser.add_argument(
        "--tolerance", type=float, default=1e-3, help="largest allowed |exported - PyTorch| logit (default 1e-3)"
    )
    parser.add_argument("--json", default="", help="also write the result as JSON to this file")


def command_export(args: argparse.Namespace) -> int:
    """The ``export`` subcommand."""
    try:
        result = export_student(
            args.checkpoint,
            args.output,
            fmt=args.format,
            height=args.height,
            width=args.width,
            tolerance=args.tolerance,
        )
    except (ExportError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"exported the {result.preset} student to {result.path} ({result.format}, {result.size_bytes / 2**20:.1f} MiB) "
        f"in {result.seconds:.1f} s"
    )
    print(
        f"verified on random inputs, batches {' and '.join(map(str, VERIFY_BATCHES))} at {result.height}x{result.width} (HxW): "
        f"max |diff| {result.max_abs_diff:.2e} (tolerance {result.tolerance:g}), "
        f"argmax agreement {result.argmax_agreement:.4%}"
    )
    if args.json:
        text = (json.dumps(result.to_dict(), indent=2) + "\n").encode()
        atomic_write_bytes(Path(args.json), lambda handle: handle.write(text))
    return 0


def add_export_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``export`` on the CLI's subparsers."""
    parser = subparsers.add_parser(
        "export",
        help="export a student checkpoint to ONNX or torch.export, verified against PyTorch",
        description=__doc__.split("\n\n")[0],
    )
    _add_arguments(parser)
    parser.set_defaults(handler=command_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m duda_engine export", description=__doc__.split("\n\n")[0])
    _add_arguments(parser)
    return command_export(parser.parse_args(argv))
