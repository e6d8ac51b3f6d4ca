"""The ``export`` verb's packaging flags: ``--int8``, ``--accuracy``, ``--speed``, ``--card`` run :func:`package`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from duda_engine.checkpoint import CheckpointError, atomic_write_bytes
from duda_engine.config import ConfigError
from duda_engine.config_loading import load_config
from duda_engine.data.samples import DatasetError
from duda_engine.export import ExportError, command_export


def _size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW, e.g. 512x1024, got {text!r}") from None
    return height, width


def add_shipping_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the packaging flags to the ``export`` parser; with any of them, the verb runs :func:`package`."""
    group = parser.add_argument_group(
        "packaging (ONNX only; the files are exported at the target evaluation's input size, not --height/--width)")
    group.add_argument("--int8", action="store_true",
                       help="also write <output stem>.int8.onnx, statically quantised on target training images")
    group.add_argument("--accuracy", action="store_true", help="measure each file's target mIoU on the validation set")
    group.add_argument("--speed", action="append", type=_size, metavar="HxW", nargs="?", const=None,
                       help="time each file with ONNX Runtime at HxW (repeatable; bare: also the training crop and 512x1024)")
    group.add_argument("--card", action="store_true", help="write model_card.md and model_card.json beside the files (implies --accuracy)")
    group.add_argument("--calibration-images", type=int, default=32, help="target training images for int8 calibration (default 32)")
    group.add_argument("--config", default="", help="the run's config (default: the one saved in the checkpoint)")
    group.add_argument("--baselines", default="", help='JSON file: {"name": {"miou": .., "per_class": {..}}} shown in the card')
    parser.set_defaults(handler=command_export_or_package)
    return parser


def command_export_or_package(args: argparse.Namespace) -> int:
    if not (args.int8 or args.accuracy or args.speed or args.card):
        return command_export(args)
    from duda_engine.ship.packaging import default_speed_sizes, package, run_config

    if args.format != "onnx":
        print("error: --int8, --accuracy, --speed and --card need --format onnx", file=sys.stderr)
        return 2
    output = Path(args.output)
    try:
        config = load_config(args.config) if args.config else run_config(args.checkpoint)
        speed_sizes = [size for size in args.speed or [] if size]
        if args.speed and None in args.speed:  # a bare --speed: the default sizes too
            speed_sizes = list(dict.fromkeys(default_speed_sizes(config) + speed_sizes))
        result = package(
            args.checkpoint,
            output.parent,
            config,
            int8=args.int8,
            accuracy=args.accuracy or args.card,
            card=args.card,
            calibration_images=args.calibration_images,
            speed_sizes=speed_sizes,
            baselines=json.loads(Path(args.baselines).read_text()) if args.baselines else None,
            stem=output.name.removesuffix(".onnx"),
        )
    except (ExportError, CheckpointError, ConfigError, DatasetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    f = result.float_file
    print(f"exported {f.path} ({f.size_bytes / 2**20:.2f} MiB) at {f.height}x{f.width} (HxW), max |diff| vs PyTorch {f.max_abs_diff:.2e}")
    if result.int8_file:
        q = result.int8_file
        print(f"int8 {q.path} ({q.size_bytes / 2**20:.2f} MiB), argmax agreement with float {q.argmax_agreement:.2%} "
              f"on {q.check_images} target val images")
    for kind, evaluation in result.accuracy.items():
        print(f"{kind}: target mIoU {evaluation.miou:.2f} over {evaluation.num_images} images")
    for kind, speeds in result.speed.items():
        for s in speeds:
            print(f"{kind} at {s.height}x{s.width}: {s.images_per_second:.1f} images/s, "
                  f"latency p50 {s.latency_p50_ms:.1f} ms, p95 {s.latency_p95_ms:.1f} ms")
    if result.card_paths:
        print(f"model card: {', '.join(map(str, result.card_paths))}")
    if args.json:
        text = (json.dumps(result.to_dict(), indent=2) + "\n").encode()
        atomic_write_bytes(Path(args.json), lambda handle: handle.write(text))
    return 0
