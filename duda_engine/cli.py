"""``python -m duda_engine train|eval|predict|export|bench``: the engine without the web app.

``bench`` is research tooling that lives in the repository's ``bench/speed`` package; it is imported
only when that command runs, and takes its own options (``python -m duda_engine bench --help``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image
from tqdm import tqdm

from duda_engine.callbacks import Callbacks
from duda_engine.checkpoint import CheckpointError
from duda_engine.config import ConfigError, ExperimentConfig
from duda_engine.config_loading import load_config
from duda_engine.data.dataset_check import DatasetCheckError
from duda_engine.data.datasets import build_dataset
from duda_engine.data.decoding import read_image
from duda_engine.data.samples import DatasetError
from duda_engine.evaluate import EvalResult, colorize, evaluate_model, predict_logits
from duda_engine.export import add_export_parser
from duda_engine.models import PretrainedWeightsError
from duda_engine.ship.command import add_shipping_arguments
from duda_engine.ship.runtime import load_onnx_student
from duda_engine.student import NETWORK_NAMES, load_student
from duda_engine.validation import class_spec, resolve_device

USER_ERRORS = (ConfigError, DatasetError, CheckpointError, PretrainedWeightsError)


def logged_step(line: str) -> int | None:
    """The step of a ``metrics.jsonl`` line; None for a line that does not parse (cut short by a kill)."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None


class ConsoleCallbacks(Callbacks):
    """A progress bar with ETA, a line per evaluation, sample PNGs under ``<output_dir>/samples`` and the
    training curve (losses and schedules every ``train.log_interval`` steps) in ``<output_dir>/metrics.jsonl``."""

    def __init__(self, output_dir: Path, quiet: bool = False):
        self.output_dir, self.quiet = output_dir, quiet
        self.metrics_file = output_dir / "metrics.jsonl"
        self.bar: tqdm | None = None

    def on_start(self, total_steps, start_step):
        self.bar = tqdm(total=total_steps, initial=start_step, unit="it", dynamic_ncols=True, disable=self.quiet)
        self.keep_metrics_up_to(start_step)

    def keep_metrics_up_to(self, step: int) -> None:
        """A resumed run logs again the steps after its checkpoint: drop the earlier start's lines for them
        (and a line a killed process left half-written)."""
        if not self.metrics_file.exists():
            return
        lines = self.metrics_file.read_text().splitlines(keepends=True)
        kept = [line for line in lines if (logged := logged_step(line)) is not None and logged <= step]
        partial = self.metrics_file.with_suffix(".jsonl.tmp")
        partial.write_text("".join(kept))
        partial.replace(self.metrics_file)

    def on_metrics(self, step, values):
        with self.metrics_file.open("a") as out:
            out.write(json.dumps({"step": step, **values}) + "\n")
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            shown = {k.split("/")[-1]: f"{v:.3g}" for k, v in values.items() if k.startswith("loss/")}
            self.bar.set_postfix(shown, refresh=False)

    def on_evaluation(self, step, result: EvalResult):
        self.write(f"[{step}] target mIoU {result.miou:.2f}  (pixel accuracy {result.pixel_accuracy:.1f})")

    def on_samples(self, step, samples, classes):
        folder = self.output_dir / "samples" / f"step_{step:07d}"
        folder.mkdir(parents=True, exist_ok=True)
        for sample in samples:
            stem = Path(sample.name).stem
            Image.fromarray(sample.image).save(folder / f"{stem}_input.png")
            for role, ids in sample.class_ids.items():
                Image.fromarray(colorize(ids, classes)).save(folder / f"{stem}_{role}.png")

    def on_checkpoint(self, step, path, kind):
        self.write(f"[{step}] {kind} checkpoint {path}")

    def on_status(self, message):
        self.write(message)

    def write(self, message: str) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.write(message)
        else:
            print(message, flush=True)


def check_progress_bar(side: str):
    """A progress bar for the check of one dataset (``scan_dataset``'s progress callback), on stderr."""
    bar: tqdm | None = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=f"checking the {side} dataset", unit="file", dynamic_ncols=True)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update


def print_user_error(error: Exception) -> None:
    """One line naming the field or file; a dataset check's problems one per line below it."""
    if isinstance(error, DatasetCheckError):
        count = error.report.total_problems
        print(f"error: {error.where}: {count} problem{'s' if count != 1 else ''}:", file=sys.stderr)
        for line in error.report.summary(separator="\n").splitlines():
            print(f"  {line}", file=sys.stderr)
        return
    print(f"error: {error}", file=sys.stderr)


def parse_overrides(pairs: list[str]) -> dict[str, object]:
    """``key.sub=value`` pairs; values are parsed as YAML (``3``, ``true``, ``[512, 512]``)."""
    overrides = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError("", f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def print_result(result: EvalResult, confusion: bool = False) -> None:
    print(f"mIoU {result.miou:.2f} over {len(result.scored_classes)} classes, {result.num_images} images")
    for name, iou in result.per_class.items():
        mark = "" if name in result.scored_classes else "  (not scored)"
        went = ""
        if confusion and (shares := result.confused_with(name)):
            went = "   labelled pixels predicted as: " + ", ".join(f"{other} {share:.0f}%" for other, share in shares)
        print(f"  {name:<16} {'   -' if np.isnan(iou) else f'{iou:5.1f}'}{mark}{went}")


def command_train(args) -> int:
    from duda_engine.train import train

    config = load_config(args.config, parse_overrides(args.set))
    if not args.quiet:
        print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="", flush=True)
    started = time.perf_counter()
    result = train(config, ConsoleCallbacks(Path(config.output_dir), quiet=args.quiet), resume=not args.restart,
                   check_progress=None if args.quiet else check_progress_bar)
    minutes = (time.perf_counter() - started) / 60
    if result.cancelled:
        print(f"cancelled after {result.steps} iterations")
        return 1
    print(f"done in {minutes:.1f} min: {result.steps} iterations, final target mIoU "
          f"{result.final.miou if result.final else float('nan'):.2f}, student {result.student_path}")
    return 0


def command_eval(args) -> int:
    config: ExperimentConfig = load_config(args.config, parse_overrides(args.set))
    device = resolve_device(config.train.device)
    model, classes, meta = load_student(args.checkpoint, device, args.network)
    if classes.names != class_spec(config).names:
        raise ConfigError("classes", f"the checkpoint's classes differ from the config's ({args.checkpoint})")
    val = build_dataset(config.target, classes, config.target.val_split, train=False)
    result = evaluate_model(model, val, config, classes, device)
    print_result(result, args.confusion)
    if args.json:
        report = {"network": args.network, "preset": meta["preset"], "step": meta.get("step"), "miou": result.miou,
                  "per_class": result.per_class, "confusion": result.confusion}
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


def command_predict(args) -> int:
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # a damaged image is reported once, below
    device = resolve_device(args.device)
    if Path(args.checkpoint).suffix == ".onnx":  # an exported student: ONNX Runtime on the CPU
        if args.network != "student":
            raise CheckpointError(f"{args.checkpoint} is an exported student: it holds no {args.network!r}")
        model, classes, _ = load_onnx_student(args.checkpoint)
    else:
        model, classes, _ = load_student(args.checkpoint, device, args.network)
    inputs = Path(args.input)
    files = sorted(p for p in inputs.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg")) if inputs.is_dir() else [inputs]
    if not files or not files[0].exists():
        raise DatasetError(f"no images at {inputs}")
    if not inputs.is_dir():
        read_image(files[0])  # a single image that cannot be read: an error, and nothing written
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    unreadable: list[DatasetError] = []
    for path in files:
        try:
            image = read_image(path)
        except DatasetError as error:  # one bad file in a folder: say so, and go on with the others
            unreadable.append(error)
            continue
        tensor = torch.from_numpy(image).permute(2, 0, 1)[None].to(device).float().div_(255)
        logits = predict_logits(model, tensor, classes.num_classes, image.shape[:2], args.mode, (args.window, args.window), (args.stride, args.stride))
        prediction = logits.argmax(1)[0].cpu().numpy().astype(np.uint8)
        Image.fromarray(prediction).save(out / f"{path.stem}_labelTrainIds.png")
        Image.fromarray(colorize(prediction, classes)).save(out / f"{path.stem}_color.png")
    print(f"wrote {len(files) - len(unreadable)} predictions to {out}")
    if unreadable:
        print(f"{len(unreadable)} of {len(files)} images could not be read (no prediction written for them):", file=sys.stderr)
        for error in unreadable:
            print(f"  {error}", file=sys.stderr)
        return 1
    return 0


NETWORK_HELP = ("which network of a full training checkpoint: the student (default); teacher: the EMA teacher "
                "(of the student in self-training, of the auxiliary in DUDA: 'ema' in duda.teachers); auxiliary: "
                "DUDA's large student; student_teacher: DUDA's EMA of the student ('student_ema', when kept)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m duda_engine", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a run from a config (resumes from its latest checkpoint)")
    train.add_argument("--config", required=True)
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    train.add_argument("--restart", action="store_true", help="ignore existing checkpoints in output_dir")
    train.add_argument("--quiet", action="store_true",
                       help="print only errors and the final summary (no config, progress bar or evaluation lines)")
    train.set_defaults(handler=command_train)

    evaluate = sub.add_parser("eval", help="target mIoU of a student (or full) checkpoint")
    evaluate.add_argument("--config", required=True, help="names the target dataset and evaluation mode")
    evaluate.add_argument("--checkpoint", required=True)
    evaluate.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    evaluate.add_argument("--json", help="also write the result as JSON to this file")
    evaluate.add_argument("--network", choices=NETWORK_NAMES, default="student", help=NETWORK_HELP)
    evaluate.add_argument("--confusion", action="store_true",
                          help="also print where each class's labelled pixels went (the three most predicted classes)")
    evaluate.set_defaults(handler=command_eval)

    predict = sub.add_parser(
        "predict", help="segment images with a student checkpoint or an exported .onnx file",
        description="Segment an image or every .png/.jpg under a folder. An image that cannot be read is listed "
                    "at the end and the others are still written; the exit status is then 1 (0: all written, "
                    "2: nothing to do, e.g. a single unreadable image or a bad checkpoint).")
    predict.add_argument("--checkpoint", required=True, help="student.pt, a full training checkpoint, or an exported .onnx file")
    predict.add_argument("--input", required=True, help="an image or a folder of images")
    predict.add_argument("--output", required=True)
    predict.add_argument("--device", default="auto")
    predict.add_argument("--mode", choices=("whole", "slide"), default="whole")
    predict.add_argument("--window", type=int, default=512)
    predict.add_argument("--stride", type=int, default=341)
    predict.add_argument("--network", choices=NETWORK_NAMES, default="student", help=NETWORK_HELP)
    predict.set_defaults(handler=command_predict)

    add_shipping_arguments(add_export_parser(sub))
    sub.add_parser("bench", add_help=False, help="time training steps per method and speed variant, or student "
                   "inference (research tooling in bench/speed; its options: bench --help)")
    return parser


def command_bench(argv: list[str]) -> int:
    """The speed bench, imported now: it is in the repository's ``bench/`` folder, not in the package."""
    try:
        from bench.speed.cli import main as bench_main
    except ModuleNotFoundError as error:
        if error.name not in ("bench", "bench.speed"):
            raise
        print("error: the speed bench is in the repository's bench/ folder: run this from a checkout's root",
              file=sys.stderr)
        return 2
    return bench_main(argv, prog="python -m duda_engine bench")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # the bench parses its own options
        return command_bench(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except USER_ERRORS as error:
        print_user_error(error)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
