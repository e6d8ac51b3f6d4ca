"""How fast is a training step, and how fast is the deployed student: ``python -m duda_engine bench``.

Training mode times ``method.train_step`` for each *case* (a method with its networks) under each
*variant* (a set of speed switches: ``train.amp``, ``train.channels_last``, ``train.compile``, or a
bench-side change that is not a config switch yet), on synthetic tensors already on the device and
through the real data pipeline, where the time spent waiting for the next batch is measured on its
own. Warm-up iterations are excluded; on CUDA the device is synchronised around every timing. Every
speed-up is against ``fp32_eager`` measured in the same run, never against a stored number.

``check_parity(config_a, config_b, iterations, tolerance)`` runs two configs from the same seed on the
same batch and compares their per-iteration losses: a faster variant only becomes a default if it
trains the same network.

Inference mode (``--inference``) times the forward pass of the light presets (bf16 on CUDA, fp32 on
CPU) and reports images per second.

Results: a table on stdout and, with ``--json PATH``, the same as JSON with the device, the settings
and the exact command.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import gc
import json
import math
import os
import platform
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from duda_engine.checkpoint import atomic_write_bytes
from duda_engine.config import METHODS, ConfigError, ExperimentConfig, config_from_dict, load_config
from duda_engine.data.classes import CITYSCAPES
from duda_engine.data.datasets import DatasetError
from duda_engine.methods import build_method
from duda_engine.methods.common import Batch, autocast, to_batch
from duda_engine.models import UnknownPresetError, build_segmentor, count_parameters, get_preset
from duda_engine.validation import class_spec, resolve_device, validate_config

REPORT_FORMAT = "duda-bench-v1"
BASELINE = "fp32_eager"
DATA_MODES = ("synthetic", "pipeline")
LIGHT_PRESETS = ("mit_b0", "mit_b1", "mit_b2", "resnet18", "resnet50", "mobilenetv3")
COMPILE_MIN_WARMUP = 3  # torch.compile compiles during the first iterations (train and no-grad graphs)
# The bench config: no LR warm-up (the weights really change, so parity means something), and the
# timed iterations sit past DUDA's pre-adaptation and ramp, where the full step (KD included) runs.
BENCH_TOTAL_ITERATIONS = 1000
BENCH_FIRST_STEP = 600


class BenchError(ValueError):
    """A wrong bench option (an unknown case, variant or preset)."""


# --------------------------------------------------------------------------------------------
# What is measured: cases (method + networks) and variants (speed switches).
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One method with its networks; ``auxiliary`` is DUDA's large student (and EMA teacher)."""

    name: str
    method: str
    student: str
    auxiliary: str = ""


CASES: dict[str, Case] = {
    case.name: case
    for case in (
        Case("source_only_b0", "source_only", "mit_b0"),
        Case("self_training_b5", "self_training", "mit_b5"),
        Case("duda_b5_b0", "duda", "mit_b0", "mit_b5"),
        Case("duda_r101_r18", "duda", "resnet18", "resnet101"),
    )
}


def parse_case(spec: str) -> Case:
    """A case by name (``duda_b5_b0``) or spelled out: ``METHOD:STUDENT``, or ``duda:AUXILIARY:STUDENT``."""
    if spec in CASES:
        return CASES[spec]
    parts = spec.split(":")
    method = parts[0]
    if method not in METHODS or len(parts) < 2:
        raise BenchError(
            f"unknown case {spec!r}: use one of {', '.join(CASES)}, or METHOD:STUDENT, or duda:AUXILIARY:STUDENT "
            f"(methods: {', '.join(METHODS)})"
        )
    expected = 3 if method == "duda" else 2
    if len(parts) != expected:
        shape = "duda:AUXILIARY:STUDENT" if method == "duda" else f"{method}:STUDENT"
        raise BenchError(f"case {spec!r} must be written {shape}")
    for preset in parts[1:]:
        try:
            get_preset(preset)
        except UnknownPresetError as error:
            raise BenchError(f"case {spec!r}: {error}") from None
    if method == "duda":
        return Case(spec, method, student=parts[2], auxiliary=parts[1])
    return Case(spec, method, student=parts[1])


@dataclass(frozen=True)
class Variant:
    """A set of speed switches; ``tweaks`` are bench-side changes that are not config switches yet."""

    name: str
    description: str
    amp: bool = False  # train.amp (bf16 autocast; CUDA only in methods.common.autocast)
    channels_last: bool = False  # train.channels_last
    compile: bool = False  # train.compile
    compile_mode: str = "default"  # train.compile_mode ("reduce-overhead": CUDA graphs)
    batch_teacher_forwards: bool = False  # duda.batch_teacher_forwards
    tweaks: tuple[str, ...] = ()  # see apply_tweaks
    cpu_skip: str = ""  # why it does not apply on CPU ("" = it does)
    cuda_skip: str = ""  # why it is not measured on CUDA ("" = it is)
    not_yet: str = ""  # why it cannot be measured on any device yet

    def switches(self) -> dict[str, bool]:
        return {"train.amp": self.amp, "train.channels_last": self.channels_last, "train.compile": self.compile,
                "train.compile_mode": self.compile_mode, "duda.batch_teacher_forwards": self.batch_teacher_forwards}


_BF16_ON_CPU = "bf16 autocast is CUDA-only (methods.common.autocast is a no-op on CPU)"

VARIANTS: dict[str, Variant] = {
    variant.name: variant
    for variant in (
        Variant(BASELINE, "fp32, eager, NCHW: the baseline of every ratio"),
        Variant("channels_last", "NHWC images and convolution weights", channels_last=True),
        Variant(
            "fused_adamw",
            "AdamW(fused=True) instead of the foreach implementation",
            tweaks=("fused_adamw",),
            cuda_skip="make_optimizer already uses fused AdamW on CUDA: fp32_eager includes it",
        ),
        Variant(
            "teacher_inference_mode",
            "teacher forward passes under torch.inference_mode instead of no_grad",
            tweaks=("teacher_inference_mode",),
        ),
        Variant("compile", "torch.compile every network", compile=True),
        Variant("bf16", "bf16 autocast", amp=True, cpu_skip=_BF16_ON_CPU),
        Variant(
            "bf16_channels_last", "bf16 autocast + channels_last", amp=True, channels_last=True, cpu_skip=_BF16_ON_CPU
        ),
        Variant("bf16_compile", "bf16 autocast + torch.compile", amp=True, compile=True, cpu_skip=_BF16_ON_CPU),
        Variant(
            "bf16_channels_last_compile",
            "bf16 autocast + channels_last + torch.compile",
            amp=True,
            channels_last=True,
            compile=True,
            cpu_skip=_BF16_ON_CPU,
        ),
        Variant(
            "cuda_graphs",
            "CUDA graphs: torch.compile(mode='reduce-overhead') of every network",
            compile=True,
            compile_mode="reduce-overhead",
            cpu_skip="CUDA graphs exist on CUDA only",
        ),
        Variant(
            "bf16_channels_last_cuda_graphs",
            "bf16 autocast + channels_last + CUDA graphs",
            amp=True,
            channels_last=True,
            compile=True,
            compile_mode="reduce-overhead",
            cpu_skip="CUDA graphs exist on CUDA only",
        ),
        Variant(
            "batched_teacher_forwards",
            "each steady DUDA teacher predicts the target and the source batch in one forward pass",
            batch_teacher_forwards=True,
        ),
    )
}


def parse_variants(names: Iterable[str]) -> list[Variant]:
    """Variants by name, in the order given, the baseline first (added when missing)."""
    chosen: list[Variant] = [VARIANTS[BASELINE]]
    for name in names:
        if name not in VARIANTS:
            raise BenchError(f"unknown variant {name!r} (known: {', '.join(VARIANTS)})")
        if VARIANTS[name] not in chosen:
            chosen.append(VARIANTS[name])
    return chosen


def _cpu_compiler() -> str | None:
    return next((c for c in (os.environ.get("CXX"), "g++", "clang++", "c++") if c and shutil.which(c)), None)


def skip_reason(variant: Variant, case: Case | None, device: torch.device) -> str:
    """Why ``variant`` is not measured for ``case`` on ``device`` ("" = it is measured)."""
    if device.type != "cuda" and variant.cpu_skip:
        return variant.cpu_skip
    if device.type == "cuda" and variant.cuda_skip:
        return variant.cuda_skip
    if variant.not_yet:
        return variant.not_yet
    if "teacher_inference_mode" in variant.tweaks and case is not None and case.method in ("source_only", "oracle"):
        return "this method has no teacher"
    if variant.batch_teacher_forwards and case is not None and case.method != "duda":
        return "only DUDA's teachers predict more than one batch in a step"
    if variant.compile and device.type == "cpu" and _cpu_compiler() is None:
        return "torch.compile on CPU needs a C++ compiler; none found (set CXX)"
    return ""


# --------------------------------------------------------------------------------------------
# Settings, device, timing and memory.
# --------------------------------------------------------------------------------------------


@dataclass
class BenchSettings:
    """Everything one bench run measures; ``command()`` spells it as a CLI call."""

    inference: bool = False  # student inference instead of training steps
    cases: list[str] = field(default_factory=lambda: list(CASES))
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    presets: list[str] = field(default_factory=lambda: list(LIGHT_PRESETS))  # inference mode
    height: int = 0  # 0: 512 (training) or 512 of 1024x512 (inference)
    width: int = 0  # 0: 512 (training) or 1024 (inference)
    batch: int = 0  # 0: 2 (training: per domain, 2 source + 2 target) or 1 (inference)
    iterations: int = 50  # timed iterations
    warmup: int = 5  # untimed iterations first (at least 3 with torch.compile)
    data: str = "both"  # synthetic | pipeline | both
    config: str = ""  # a run config whose datasets the pipeline reads ("" = the toy GTA->real pair)
    workers: int = -1  # data loader processes (-1: the config's train.num_workers)
    device: str = "auto"
    threads: int = 0  # CPU threads for torch (0: torch's default)
    interleave: bool = False  # build every variant of a case first, then alternate their timed steps
    seed: int = 0
    parity_iterations: int = 0  # > 0: check every measured variant against fp32_eager over this many steps
    parity_tolerance: float = 1e-3  # fp32 variants: max |a - b| / max(|a|, 1) of any loss
    parity_tolerance_bf16: float = 5e-2  # bf16 variants
    json: str = ""

    def resolved_size(self) -> tuple[int, int]:
        default = (512, 1024) if self.inference else (512, 512)
        return self.height or default[0], self.width or default[1]

    def resolved_batch(self) -> int:
        return self.batch or (1 if self.inference else 2)

    def data_modes(self) -> tuple[str, ...]:
        return DATA_MODES if self.data == "both" else (self.data,)

    def command(self) -> str:
        height, width = self.resolved_size()
        args = ["python", "-m", "duda_engine", "bench"]
        if self.inference:
            args += ["--inference", "--presets", *self.presets]
        else:
            args += ["--methods", *self.cases, "--variants", *self.variants, "--data", self.data]
            if self.config:
                args += ["--config", self.config]
            if self.workers >= 0:
                args += ["--workers", str(self.workers)]
            if self.parity_iterations:
                args += [
                    "--parity-iterations",
                    str(self.parity_iterations),
                    "--parity-tolerance",
                    f"{self.parity_tolerance:g}",
                    "--parity-tolerance-bf16",
                    f"{self.parity_tolerance_bf16:g}",
                ]
        args += [
            "--height",
            str(height),
            "--width",
            str(width),
            "--batch",
            str(self.resolved_batch()),
            "--iterations",
            str(self.iterations),
            "--warmup",
            str(self.warmup),
            "--device",
            self.device,
            *(["--threads", str(self.threads)] if self.threads else []),
            *(["--interleave"] if self.interleave and not self.inference else []),
            "--seed",
            str(self.seed),
        ]
        if self.json:
            args += ["--json", self.json]
        return shlex.join(args)


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def device_info(device: torch.device) -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "type": device.type,
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        info.update(
            name=properties.name,
            memory_gib=round(properties.total_memory / 2**30, 1),
            capability=f"{properties.major}.{properties.minor}",
            cuda=torch.version.cuda,
        )
    else:
        info["name"] = f"{info['cpu_model']} ({info['cpu_count']} cores)"
    return info


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def spread(values_ms: list[float]) -> dict[str, float]:
    """Median and spread of per-iteration times in ms."""
    array = np.asarray(values_ms, dtype=float)
    p10, p25, p50, p75, p90 = np.percentile(array, [10, 25, 50, 75, 90])
    return {
        "median": float(p50),
        "p10": float(p10),
        "p90": float(p90),
        "p25": float(p25),
        "p75": float(p75),
        "iqr": float(p75 - p25),
        "mean": float(array.mean()),
        "min": float(array.min()),
        "max": float(array.max()),
    }


def _proc_status_kib(key: str) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


class MemoryProbe:
    """Peak memory of what runs between ``start()`` and ``peak_mib()``.

    CUDA: ``torch.cuda.max_memory_allocated`` (absolute: weights, optimiser state, activations).
    CPU: the rise of the process's peak resident set (Linux: freed heap returned with ``malloc_trim``,
    the high-water mark reset through ``/proc/self/clear_refs``); ``None`` where that is not possible.
    Data loader worker processes are not counted.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.kind = "cuda_max_allocated" if device.type == "cuda" else "cpu_peak_rss_delta"
        self.base_kib: int | None = None

    def start(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current VmRSS
        except OSError:
            self.base_kib = None
            return
        self.base_kib = _proc_status_kib("VmRSS")

    def peak_mib(self) -> float | None:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        peak = _proc_status_kib("VmHWM")
        if self.base_kib is None or peak is None:
            return None
        return (peak - self.base_kib) / 1024


# --------------------------------------------------------------------------------------------
# The run config of a case, and its batches.
# --------------------------------------------------------------------------------------------

TOY_BENCH_DATA = {
    "source": {"kind": "toy", "domain": "synthetic_a"},
    "target": {"kind": "toy", "domain": "real"},
}


def _toy_size_for(crop: tuple[int, int], scale_high: float) -> str:
    from duda_engine.data.toy import TOY_SIZES

    width, height = TOY_SIZES["demo"]
    return "demo" if crop[0] <= height * scale_high and crop[1] <= width * scale_high else "full"


def bench_config(
    case: Case,
    variant: Variant,
    *,
    height: int,
    width: int,
    batch: int,
    device: str,
    seed: int = 0,
    base: dict[str, Any] | None = None,
    workers: int = -1,
) -> ExperimentConfig:
    """The run config that ``case`` under ``variant`` trains with; ``base`` supplies datasets and classes.

    Networks start from random weights (no ImageNet files, no frozen teachers, no feature distance:
    those need files that a bench run cannot assume).
    """
    data = json.loads(json.dumps(base)) if base else {}
    for key in ("name", "output_dir"):
        data.pop(key, None)
    data.update(name=f"bench-{case.name}", method=case.method, seed=seed, output_dir="runs/bench")
    if not base:
        data.update(json.loads(json.dumps(TOY_BENCH_DATA)))
    train = data.setdefault("train", {})
    scale_high = float(train.get("scale_range", [0.5, 2.0])[1])
    if not base:
        size = _toy_size_for((height, width), scale_high)
        data["source"]["toy_size"] = data["target"]["toy_size"] = size
    train.update(
        iterations=BENCH_TOTAL_ITERATIONS,
        batch_size=batch,
        crop_size=[height, width],
        device=device,
    )
    for key, value in variant.switches().items():  # "section.field" -> value
        section, name = key.split(".")
        data.setdefault(section, {})[name] = value
    if workers >= 0:
        train["num_workers"] = workers
    model = data.setdefault("model", {})
    model.update(student=case.student, student_pretrained="", auxiliary_pretrained="")
    if case.auxiliary:
        model["auxiliary"] = case.auxiliary
    data.setdefault("optim", {})["warmup_iters"] = 0
    data.setdefault("self_training", {})["fdist_weight"] = 0.0
    data.setdefault("duda", {})["frozen_teachers"] = []
    return config_from_dict(data)


def synthetic_batches(
    config: ExperimentConfig, num_classes: int, device: torch.device, seed: int = 0
) -> tuple[Batch, Batch]:
    """One source and one target batch of random images and blocky random labels, on ``device``."""
    generator = torch.Generator().manual_seed(seed)
    batch, (height, width) = config.train.batch_size, config.train.crop_size

    def items() -> dict[str, torch.Tensor]:
        image = torch.randint(0, 256, (batch, 3, height, width), generator=generator, dtype=torch.uint8)
        blocks = torch.randint(
            0, num_classes, (batch, 1, math.ceil(height / 16), math.ceil(width / 16)), generator=generator
        )
        label = F.interpolate(blocks.float(), scale_factor=16, mode="nearest")[:, 0, :height, :width].long()
        return {"image": image, "label": label}

    channels_last = config.train.channels_last
    return to_batch(items(), device, channels_last), to_batch(items(), device, channels_last)


class PipelineBatches:
    """The training data pipeline exactly as ``train`` builds it: datasets, step keys, loaders."""

    def __init__(self, config: ExperimentConfig, uses_target: bool, start_step: int):
        from duda_engine.data.pipeline import build_training_data, step_loader

        validate_config(config)
        data = build_training_data(config, class_spec(config))
        workers = config.train.num_workers
        self.source = iter(step_loader(data.source, data.source_keys(start_step), workers))
        self.target = iter(step_loader(data.target, data.target_keys(start_step), workers)) if uses_target else None

    def next(self, device: torch.device, channels_last: bool) -> tuple[Batch, Batch | None]:
        source = to_batch(next(self.source), device, channels_last)
        target = to_batch(next(self.target), device, channels_last) if self.target is not None else None
        return source, target


# --------------------------------------------------------------------------------------------
# Bench-side tweaks: speed changes that are not config switches (yet).
# --------------------------------------------------------------------------------------------


def _use_fused_adamw(method) -> None:
    """Replace each of the method's AdamW optimisers by a fused one with the same groups and schedule."""
    pairs = [("optimizer", "scheduler"), ("auxiliary_optimizer", "auxiliary_scheduler")]
    for optimizer_name, scheduler_name in pairs:
        old = getattr(method, optimizer_name, None)
        if old is None:
            continue
        scheduler = getattr(method, scheduler_name)
        groups = [
            {
                **{k: v for k, v in group.items() if k not in ("fused", "foreach", "initial_lr")},
                "lr": group.get("initial_lr", group["lr"]),
            }
            for group in old.param_groups
        ]
        new = torch.optim.AdamW(groups, fused=True)
        setattr(method, optimizer_name, new)
        setattr(method, scheduler_name, torch.optim.lr_scheduler.LambdaLR(new, scheduler.lr_lambdas))


def _inference_mode_forward(module: nn.Module) -> None:
    """Run ``module``'s forward under ``torch.inference_mode``; the clone makes the output a normal tensor."""
    forward = module.forward

    def forward_in_inference_mode(*args, **kwargs):
        with torch.inference_mode():
            output = forward(*args, **kwargs)
        return output.clone()

    module.forward = forward_in_inference_mode


def apply_tweaks(method, tweaks: Iterable[str]) -> None:
    """``fused_adamw``: fused AdamW optimisers. ``teacher_inference_mode``: frozen teachers under inference mode."""
    for tweak in tweaks:
        if tweak == "fused_adamw":
            _use_fused_adamw(method)
        elif tweak == "teacher_inference_mode":
            # DUDA: its EMA teachers and frozen teachers (never the auxiliary, which trains); self-training: its teacher.
            teachers = [getattr(method, name, None) for name in ("ema", "student_ema")] + list(
                getattr(method, "frozen", [])
            )
            teachers = [t for t in teachers if t is not None] or [
                t for t in [getattr(method, "teacher", None)] if t is not None
            ]
            for teacher in teachers:
                _inference_mode_forward(teacher)
        else:
            raise BenchError(f"unknown tweak {tweak!r}")


# --------------------------------------------------------------------------------------------
# Measuring training steps, and parity.
# --------------------------------------------------------------------------------------------


def _seed(seed: int) -> None:
    from duda_engine.train import seed_everything

    seed_everything(seed)


def _loss_values(losses: dict[str, torch.Tensor]) -> dict[str, float]:
    return {name: float(value) for name, value in losses.items() if "loss" in name}


class TrainingRun:
    """One config's method and batches, stepped one iteration at a time; each timed step is recorded.

    ``data``: ``synthetic`` (one fixed batch, already on the device) or ``pipeline`` (the real loaders;
    the wait for each batch, including its copy to the device, is timed apart from the step).
    """

    def __init__(self, config: ExperimentConfig, data: str, tweaks: Iterable[str] = ()):
        self.config, self.data = config, data
        self.device = resolve_device(config.train.device)
        classes = class_spec(config)
        _seed(config.seed)
        self.method = build_method(config, classes, self.device)
        apply_tweaks(self.method, tweaks)
        self.fixed = (
            synthetic_batches(config, classes.num_classes, self.device, config.seed) if data == "synthetic" else None
        )
        self.pipeline = (
            PipelineBatches(config, self.method.uses_target, BENCH_FIRST_STEP) if data == "pipeline" else None
        )
        self.steps = 0
        self.iteration_ms: list[float] = []
        self.step_ms: list[float] = []
        self.wait_ms: list[float] = []
        self.warmup_s = 0.0
        self.last_losses: dict[str, float] = {}

    def step(self, timed: bool) -> None:
        device = self.device
        synchronize(device)
        started = time.perf_counter()
        if self.pipeline is not None:
            source, target = self.pipeline.next(device, self.config.train.channels_last)
            synchronize(device)
        else:
            source, target = self.fixed
        data_ready = time.perf_counter()
        losses = self.method.train_step(
            source, target if self.method.uses_target else None, BENCH_FIRST_STEP + self.steps
        )
        synchronize(device)
        finished = time.perf_counter()
        self.steps += 1
        if timed:
            self.iteration_ms.append((finished - started) * 1e3)
            self.step_ms.append((finished - data_ready) * 1e3)
            self.wait_ms.append((data_ready - started) * 1e3)
            self.last_losses = _loss_values(losses)
        else:
            self.warmup_s += finished - started

    def close(self) -> None:
        self.method = self.pipeline = self.fixed = None

    def result(self) -> dict[str, Any]:
        images = self.config.train.batch_size * (2 if self.config.method in ("self_training", "duda") else 1)
        timing = spread(self.iteration_ms)
        pipeline = self.data == "pipeline"
        return {
            "iterations": len(self.iteration_ms),
            "warmup": self.steps - len(self.iteration_ms),
            "warmup_s": round(self.warmup_s, 3),
            "ms_per_iter": timing,
            "step_ms": spread(self.step_ms),
            "data_wait_ms": spread(self.wait_ms) if pipeline else None,
            "data_wait_share": (sum(self.wait_ms) / sum(self.iteration_ms)) if pipeline else None,
            "images_per_s": images * 1e3 / timing["median"],
            "load_average": load_average(),
            "last_losses": self.last_losses,
        }


def _warmup_for(config: ExperimentConfig, warmup: int) -> int:
    return max(warmup, COMPILE_MIN_WARMUP) if config.train.compile else warmup


def measure_training(
    config: ExperimentConfig,
    *,
    data: str,
    iterations: int,
    warmup: int,
    tweaks: Iterable[str] = (),
) -> dict[str, Any]:
    """Time ``iterations`` training steps of ``config`` after ``warmup`` untimed ones, with its peak memory."""
    probe = MemoryProbe(resolve_device(config.train.device))
    probe.start()
    run = TrainingRun(config, data, tweaks)
    for _ in range(_warmup_for(config, warmup)):
        run.step(timed=False)
    for _ in range(iterations):
        run.step(timed=True)
    peak = probe.peak_mib()
    run.close()
    return {**run.result(), "peak_memory_mib": None if peak is None else round(peak, 1), "peak_memory_kind": probe.kind}


def measure_interleaved(
    runs: dict[str, tuple[ExperimentConfig, tuple[str, ...]]],
    *,
    data: str,
    iterations: int,
    warmup: int,
) -> dict[str, dict[str, Any]]:
    """Several variants side by side: all built first, then one timed step of each in turn.

    On a machine shared with other work, a change of load then slows every variant alike instead of
    whichever happened to run at that moment. Peak memory is not measured (all share one process).
    A variant that fails is reported as ``{"error": ...}`` and leaves the rotation.
    """
    live: dict[str, TrainingRun] = {}
    results: dict[str, dict[str, Any]] = {}
    for name, (config, tweaks) in runs.items():
        try:
            run = TrainingRun(config, data, tweaks)
            for _ in range(_warmup_for(config, warmup)):
                run.step(timed=False)
            live[name] = run
        except (ConfigError, DatasetError):
            raise
        except Exception as error:  # noqa: BLE001 - one failing variant must not end the others
            results[name] = {"error": _failure(error)}
    for _ in range(iterations):
        for name, run in list(live.items()):
            try:
                run.step(timed=True)
            except Exception as error:  # noqa: BLE001
                results[name] = {"error": _failure(error)}
                live.pop(name).close()
    for name, run in live.items():
        results[name] = {**run.result(), "peak_memory_mib": None, "peak_memory_kind": "n/a (interleaved)"}
        run.close()
    return {name: results[name] for name in runs}


def loss_trace(config: ExperimentConfig, iterations: int, tweaks: Iterable[str] = ()) -> list[dict[str, float]]:
    """The losses of ``iterations`` steps from ``config.seed`` on a fixed synthetic batch."""
    device = resolve_device(config.train.device)
    classes = class_spec(config)
    # Inductor draws dropout masks from its own generator unless told to fall back to eager's.
    patch = contextlib.nullcontext()
    if config.train.compile:
        import torch._inductor.config

        patch = torch._inductor.config.patch(fallback_random=True)
    with patch:
        _seed(config.seed)
        method = build_method(config, classes, device)
        apply_tweaks(method, tweaks)
        source, target = synthetic_batches(config, classes.num_classes, device, config.seed)
        trace = []
        for i in range(iterations):
            losses = method.train_step(source, target if method.uses_target else None, BENCH_FIRST_STEP + i)
            trace.append(_loss_values(losses))
    return trace


@dataclass
class ParityResult:
    """Per-iteration losses of two runs and their largest difference, relative to max(|a|, 1)."""

    tolerance: float
    losses_a: list[dict[str, float]]
    losses_b: list[dict[str, float]]
    max_difference: float
    worst: str  # where the largest difference is: "iteration 2, loss/kd"

    @property
    def passed(self) -> bool:
        return math.isfinite(self.max_difference) and self.max_difference <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "tolerance": self.tolerance,
            "max_difference": self.max_difference,
            "worst": self.worst,
            "iterations": len(self.losses_a),
            "losses_a": self.losses_a,
            "losses_b": self.losses_b,
        }


def compare_traces(a: list[dict[str, float]], b: list[dict[str, float]], tolerance: float) -> ParityResult:
    worst_value, worst_where = 0.0, ""
    for i, (losses_a, losses_b) in enumerate(zip(a, b, strict=True)):
        if set(losses_a) != set(losses_b):
            return ParityResult(
                tolerance, a, b, math.inf, f"iteration {i}: different losses {sorted(set(losses_a) ^ set(losses_b))}"
            )
        for name, value in losses_a.items():
            difference = abs(value - losses_b[name]) / max(abs(value), 1.0)
            if not math.isfinite(difference):
                return ParityResult(tolerance, a, b, math.inf, f"iteration {i}, {name}: not finite")
            if difference > worst_value:
                worst_value, worst_where = difference, f"iteration {i}, {name}"
    return ParityResult(tolerance, a, b, worst_value, worst_where)


def check_parity(
    config_a: ExperimentConfig,
    config_b: ExperimentConfig,
    iterations: int = 3,
    tolerance: float = 1e-3,
    *,
    tweaks_a: Iterable[str] = (),
    tweaks_b: Iterable[str] = (),
) -> ParityResult:
    """Train both configs from the same seed on the same synthetic batch for ``iterations`` steps.

    Passes when every loss of every iteration agrees within ``tolerance`` relative to max(|loss|, 1).
    """
    return compare_traces(
        loss_trace(config_a, iterations, tweaks_a), loss_trace(config_b, iterations, tweaks_b), tolerance
    )


# --------------------------------------------------------------------------------------------
# Student inference.
# --------------------------------------------------------------------------------------------


def measure_inference(
    preset: str,
    *,
    height: int,
    width: int,
    batch: int,
    iterations: int,
    warmup: int,
    device: torch.device,
    num_classes: int = 19,
    seed: int = 0,
) -> dict[str, Any]:
    """Forward passes of a freshly built ``preset`` (eval mode): bf16 autocast on CUDA, fp32 on CPU."""
    probe = MemoryProbe(device)
    probe.start()
    _seed(seed)
    model = build_segmentor(preset, num_classes).to(device).eval()
    images = torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(seed)).to(device)
    times = []
    with torch.inference_mode(), autocast(device, True):
        for i in range(warmup + iterations):
            synchronize(device)
            started = time.perf_counter()
            model(images)
            synchronize(device)
            if i >= warmup:
                times.append((time.perf_counter() - started) * 1e3)
    peak = probe.peak_mib()
    timing = spread(times)
    result = {
        "preset": preset,
        "parameters_m": round(count_parameters(model) / 1e6, 2),
        "dtype": "bf16" if device.type == "cuda" else "fp32",
        "iterations": iterations,
        "warmup": warmup,
        "ms_per_batch": timing,
        "images_per_s": batch * 1e3 / timing["median"],
        "peak_memory_mib": None if peak is None else round(peak, 1),
        "peak_memory_kind": probe.kind,
        "status": "ok",
    }
    del model, images
    return result


# --------------------------------------------------------------------------------------------
# A bench run.
# --------------------------------------------------------------------------------------------


def warm_up_process(device: torch.device) -> None:
    """One tiny training step and forward pass before anything is measured.

    One-time costs of a process (thread pools, kernel libraries, the CUDA context and cuBLAS workspace,
    allocator pools) would otherwise count as the first variant's memory and slow its first steps.
    """
    model = build_segmentor("mit_b0", 2).to(device)
    optimizer = torch.optim.AdamW(model.parameters())
    images = torch.rand(1, 3, 64, 64, device=device)
    model(images).mean().backward()
    optimizer.step()
    with torch.no_grad():
        model.eval()(images)
    synchronize(device)
    del model, optimizer, images
    _release(device)


def _failure(error: BaseException) -> str:
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return "out of memory"
    return f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"


def _base_config(settings: BenchSettings) -> dict[str, Any] | None:
    if not settings.config:
        return None
    return load_config(settings.config).to_dict()


def run_training_bench(settings: BenchSettings, log: Callable[[str], None] = lambda _: None) -> list[dict[str, Any]]:
    """Every (case, data, variant) of ``settings``: measured, skipped with a reason, or failed with one."""
    device = resolve_device(settings.device)
    cases = [parse_case(name) for name in settings.cases]
    variants = parse_variants(settings.variants)
    height, width = settings.resolved_size()
    batch = settings.resolved_batch()
    base = _base_config(settings)
    records: list[dict[str, Any]] = []
    for case in cases:
        configs = {
            v.name: bench_config(
                case,
                v,
                height=height,
                width=width,
                batch=batch,
                device=settings.device,
                seed=settings.seed,
                base=base,
                workers=settings.workers,
            )
            for v in variants
        }
        for data in settings.data_modes():
            group: dict[str, dict[str, Any]] = {}
            for variant in variants:
                record = group[variant.name] = {
                    "case": case.name,
                    "method": case.method,
                    "student": case.student,
                    "auxiliary": case.auxiliary or None,
                    "data": data,
                    "variant": variant.name,
                    "description": variant.description,
                    "switches": variant.switches(),
                    "tweaks": list(variant.tweaks),
                    "status": "ok",
                    "reason": "",
                    "speedup_vs_fp32_eager": None,
                    "parity": None,
                }
                reason = skip_reason(variant, case, device)
                if reason:
                    record.update(status="skipped", reason=reason)
                    log(f"{case.name} {data} {variant.name}: skipped ({reason})")
            measurable = [v for v in variants if group[v.name]["status"] == "ok"]
            if settings.interleave:
                log(f"{case.name} {data}: measuring {', '.join(v.name for v in measurable)} interleaved ...")
                measured = measure_interleaved(
                    {v.name: (configs[v.name], v.tweaks) for v in measurable},
                    data=data,
                    iterations=settings.iterations,
                    warmup=settings.warmup,
                )
            else:
                measured = {}
                for variant in measurable:
                    log(f"{case.name} {data} {variant.name}: measuring ...")
                    try:
                        measured[variant.name] = measure_training(
                            configs[variant.name],
                            data=data,
                            iterations=settings.iterations,
                            warmup=settings.warmup,
                            tweaks=variant.tweaks,
                        )
                    except (ConfigError, DatasetError):
                        raise
                    except Exception as error:  # noqa: BLE001 - one failing variant must not end the run
                        measured[variant.name] = {"error": _failure(error)}
                    _release(device)
            for name, result in measured.items():
                record = group[name]
                if "error" in result:
                    record.update(status="failed", reason=result["error"])
                    log(f"{case.name} {data} {name}: failed ({result['error']})")
                else:
                    record.update(result)
                    log(f"{case.name} {data} {name}: {result['ms_per_iter']['median']:.1f} ms/iter")
            records.extend(group.values())
            _release(device)
        if settings.parity_iterations:
            _attach_parity(records, case, variants, configs, settings, log)
    _attach_speedups(records)
    return records


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _attach_speedups(records: list[dict[str, Any]]) -> None:
    for record in records:
        if record["status"] != "ok":
            continue
        baseline = next(
            (
                r
                for r in records
                if r["case"] == record["case"]
                and r["data"] == record["data"]
                and r["variant"] == BASELINE
                and r["status"] == "ok"
            ),
            None,
        )
        if baseline is not None:
            record["speedup_vs_fp32_eager"] = baseline["ms_per_iter"]["median"] / record["ms_per_iter"]["median"]


def _attach_parity(records, case: Case, variants: list[Variant], configs, settings: BenchSettings, log) -> None:
    measured = {r["variant"] for r in records if r["case"] == case.name and r["status"] == "ok"}
    if BASELINE not in measured:
        return
    log(f"{case.name}: parity over {settings.parity_iterations} iterations ...")
    reference = loss_trace(configs[BASELINE], settings.parity_iterations)
    for variant in variants:
        if variant.name not in measured:
            continue
        tolerance = settings.parity_tolerance_bf16 if variant.amp else settings.parity_tolerance
        try:
            trace = (
                reference
                if variant.name == BASELINE
                else loss_trace(configs[variant.name], settings.parity_iterations, variant.tweaks)
            )
            parity = compare_traces(reference, trace, tolerance).to_dict()
        except Exception as error:  # noqa: BLE001
            parity = {"passed": False, "tolerance": tolerance, "max_difference": None, "worst": _failure(error)}
        for record in records:
            if record["case"] == case.name and record["variant"] == variant.name and record["status"] == "ok":
                record["parity"] = parity
        verdict = "ok" if parity["passed"] else "FAILED"
        detail = parity["worst"] if parity["max_difference"] is None else parity["max_difference"]
        log(f"{case.name} {variant.name}: parity {verdict} ({detail})")


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per case and data: the fastest measured variant, and the fastest that kept parity (when checked)."""
    summary = []
    groups = list(dict.fromkeys((r["case"], r["data"]) for r in records))
    for case, data in groups:
        ok = [r for r in records if r["case"] == case and r["data"] == data and r["status"] == "ok"]
        if not ok:
            continue
        fastest = min(ok, key=lambda r: r["ms_per_iter"]["median"])
        checked = [r for r in ok if r["parity"] is not None and r["parity"]["passed"]]
        entry = {
            "case": case,
            "data": data,
            "fastest": fastest["variant"],
            "fastest_speedup": fastest["speedup_vs_fp32_eager"],
        }
        if checked:
            keeper = min(checked, key=lambda r: r["ms_per_iter"]["median"])
            entry.update(
                fastest_with_parity=keeper["variant"], fastest_with_parity_speedup=keeper["speedup_vs_fp32_eager"]
            )
        summary.append(entry)
    return summary


def run_inference_bench(settings: BenchSettings, log: Callable[[str], None] = lambda _: None) -> list[dict[str, Any]]:
    device = resolve_device(settings.device)
    height, width = settings.resolved_size()
    batch = settings.resolved_batch()
    num_classes = class_spec(load_config(settings.config)).num_classes if settings.config else CITYSCAPES.num_classes
    records = []
    for preset in settings.presets:
        try:
            get_preset(preset)
        except UnknownPresetError as error:
            raise BenchError(str(error)) from None
        log(f"inference {preset}: measuring ...")
        try:
            record = measure_inference(
                preset,
                height=height,
                width=width,
                batch=batch,
                iterations=settings.iterations,
                warmup=settings.warmup,
                device=device,
                num_classes=num_classes,
                seed=settings.seed,
            )
        except Exception as error:  # noqa: BLE001
            record = {"preset": preset, "status": "failed", "reason": _failure(error)}
        records.append(record)
        _release(device)
    return records


def run_bench(settings: BenchSettings, log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Measure what ``settings`` asks for; the report that ``--json`` writes."""
    device = resolve_device(settings.device)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    warm_up_process(device)
    height, width = settings.resolved_size()
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "mode": "inference" if settings.inference else "train",
        "command": settings.command(),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": device_info(device),
        "load_average_before": load_average(),
        "settings": {
            "height": height,
            "width": width,
            "batch": settings.resolved_batch(),
            "iterations": settings.iterations,
            "warmup": settings.warmup,
            "seed": settings.seed,
        },
    }
    if settings.inference:
        report["settings"]["presets"] = list(settings.presets)
        report["results"] = run_inference_bench(settings, log)
    else:
        report["settings"].update(
            cases=list(settings.cases),
            variants=list(settings.variants),
            data=settings.data,
            config=settings.config or None,
            workers=settings.workers if settings.workers >= 0 else None,
            interleave=settings.interleave,
            parity_iterations=settings.parity_iterations,
            first_step=BENCH_FIRST_STEP,
        )
        report["results"] = run_training_bench(settings, log)
        report["summary"] = summarize(report["results"])
    report["load_average_after"] = load_average()
    return report


# --------------------------------------------------------------------------------------------
# Output: the table and the JSON file.
# --------------------------------------------------------------------------------------------


def _fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _fmt_mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def format_table(report: dict[str, Any]) -> str:
    """The report as a plain-text table (what the CLI prints)."""
    device = report["device"]
    settings = report["settings"]
    lines = [
        f"device: {device['name']} ({device['type']}), torch {device['torch']}, {device['torch_threads']} threads; "
        f"load average {report.get('load_average_before')} -> {report.get('load_average_after')}",
        f"size {settings['height']}x{settings['width']} (HxW), batch {settings['batch']}"
        + ("" if report["mode"] == "inference" else " per domain")
        + f", {settings['iterations']} timed iterations after {settings['warmup']} warm-up",
    ]
    memory_kind = next((r.get("peak_memory_kind") for r in report["results"] if r.get("peak_memory_kind")), "")
    memory_header = "peak MiB (RSS delta)" if memory_kind == "cpu_peak_rss_delta" else "peak MiB"
    if report["mode"] == "inference":
        header = ("preset", "params (M)", "dtype", "ms/batch", "p10-p90", "images/s", memory_header, "note")
        rows = []
        for r in report["results"]:
            if r["status"] != "ok":
                rows.append((r["preset"], "", "", "", "", "", "", r["reason"]))
                continue
            t = r["ms_per_batch"]
            rows.append(
                (
                    r["preset"],
                    f"{r['parameters_m']:.1f}",
                    r["dtype"],
                    _fmt_ms(t["median"]),
                    f"{_fmt_ms(t['p10'])}-{_fmt_ms(t['p90'])}",
                    f"{r['images_per_s']:.2f}",
                    _fmt_mib(r["peak_memory_mib"]),
                    "",
                )
            )
    else:
        header = (
            "case",
            "data",
            "variant",
            "ms/iter",
            "p10-p90",
            "x fp32",
            "data wait ms (share)",
            memory_header,
            "parity",
            "note",
        )
        rows = []
        for r in report["results"]:
            if r["status"] != "ok":
                rows.append(
                    (r["case"], r["data"], r["variant"], "", "", "", "", "", "", f"{r['status']}: {r['reason']}")
                )
                continue
            t = r["ms_per_iter"]
            wait = (
                "-"
                if r["data_wait_ms"] is None
                else f"{_fmt_ms(r['data_wait_ms']['median'])} ({r['data_wait_share']:.0%})"
            )
            speedup = "-" if r["speedup_vs_fp32_eager"] is None else f"{r['speedup_vs_fp32_eager']:.2f}"
            parity = "-"
            if r["parity"] is not None:
                difference = r["parity"]["max_difference"]
                passed = r["parity"]["passed"]
                parity = ("n/a" if passed is None else "ok" if passed else "FAIL") + (
                    "" if difference is None else f" {difference:.1e}"
                )
            rows.append(
                (
                    r["case"],
                    r["data"],
                    r["variant"],
                    _fmt_ms(t["median"]),
                    f"{_fmt_ms(t['p10'])}-{_fmt_ms(t['p90'])}",
                    speedup,
                    wait,
                    _fmt_mib(r["peak_memory_mib"]),
                    parity,
                    "",
                )
            )
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    out = lines + [""]
    for row in (header, tuple("-" * w for w in widths), *rows):
        out.append("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    for entry in report.get("summary", []):
        line = f"{entry['case']} ({entry['data']}): fastest {entry['fastest']} (x{entry['fastest_speedup']:.2f})"
        if "fastest_with_parity" in entry:
            line += (
                f"; fastest with parity {entry['fastest_with_parity']} (x{entry['fastest_with_parity_speedup']:.2f})"
            )
        out.append(line)
    out.append(f"command: {report['command']}")
    return "\n".join(out)


def write_report(report: dict[str, Any], path: str | Path) -> None:
    text = (json.dumps(report, indent=2) + "\n").encode()
    atomic_write_bytes(Path(path), lambda handle: handle.write(text))


# --------------------------------------------------------------------------------------------
# Command line.
# --------------------------------------------------------------------------------------------


def _names(values: list[str] | None) -> list[str]:
    """``--methods a b`` and ``--methods a,b`` alike."""
    return [name for value in values or [] for name in value.split(",") if name]


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--inference", action="store_true", help="time student inference of light presets instead of training steps"
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        metavar="CASE",
        help=f"cases to time (default: all): {', '.join(CASES)}, or METHOD:STUDENT, or duda:AUXILIARY:STUDENT",
    )
    parser.add_argument(
        "--variants", nargs="+", metavar="NAME", help=f"speed variants (default: all): {', '.join(VARIANTS)}"
    )
    parser.add_argument(
        "--presets", nargs="+", metavar="PRESET", help=f"--inference: presets (default: {', '.join(LIGHT_PRESETS)})"
    )
    parser.add_argument("--height", type=int, default=0, help="image height (default 512)")
    parser.add_argument("--width", type=int, default=0, help="image width (default 512; --inference: 1024)")
    parser.add_argument("--batch", type=int, default=0, help="images per domain (default 2; --inference: 1)")
    parser.add_argument("--iterations", type=int, default=50, help="timed iterations (default 50)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed iterations first (default 5)")
    parser.add_argument(
        "--data",
        choices=("synthetic", "pipeline", "both"),
        default="both",
        help="synthetic tensors on the device, the real data pipeline, or both (default)",
    )
    parser.add_argument(
        "--config", default="", help="a run config whose datasets and classes the bench uses (default: toy GTA->real)"
    )
    parser.add_argument(
        "--workers", type=int, default=-1, help="data loader processes (default: the config's train.num_workers)"
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument(
        "--interleave",
        action="store_true",
        help="alternate the variants' timed steps (all built at once: more memory, no peak memory figures); "
        "fairer ratios on a machine shared with other work",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--parity-iterations",
        type=int,
        default=0,
        help="also compare each variant's losses with fp32_eager over N steps",
    )
    parser.add_argument(
        "--parity-tolerance", type=float, default=1e-3, help="fp32 variants: largest |a-b|/max(|a|,1) (default 1e-3)"
    )
    parser.add_argument("--parity-tolerance-bf16", type=float, default=5e-2, help="bf16 variants (default 5e-2)")
    parser.add_argument("--json", default="", help="also write the report as JSON to this file")
    parser.add_argument("--list", action="store_true", help="list the cases, variants and presets, then exit")


def settings_from_args(args: argparse.Namespace) -> BenchSettings:
    for name in ("iterations", "height", "width", "batch", "warmup", "parity_iterations", "threads"):
        value = getattr(args, name)
        if value < 0 or (name == "iterations" and value < 1):
            raise BenchError(f"--{name.replace('_', '-')} must be {'>= 1' if name == 'iterations' else '>= 0'}")
    defaults = BenchSettings()
    return BenchSettings(
        inference=args.inference,
        cases=_names(args.methods) or defaults.cases,
        variants=_names(args.variants) or defaults.variants,
        presets=_names(args.presets) or defaults.presets,
        height=args.height,
        width=args.width,
        batch=args.batch,
        iterations=args.iterations,
        warmup=args.warmup,
        data=args.data,
        config=args.config,
        workers=args.workers,
        device=args.device,
        threads=args.threads,
        interleave=args.interleave,
        seed=args.seed,
        parity_iterations=args.parity_iterations,
        parity_tolerance=args.parity_tolerance,
        parity_tolerance_bf16=args.parity_tolerance_bf16,
        json=args.json,
    )


def _listing() -> str:
    lines = ["cases (--methods):"]
    for case in CASES.values():
        networks = f"{case.auxiliary} -> {case.student}" if case.auxiliary else case.student
        lines.append(f"  {case.name:<20} {case.method}: {networks}")
    lines.append("variants (--variants):")
    lines += [f"  {v.name:<28} {v.description}" for v in VARIANTS.values()]
    lines.append(f"light presets (--inference --presets): {', '.join(LIGHT_PRESETS)}")
    return "\n".join(lines)


def command_bench(args: argparse.Namespace) -> int:
    """The ``bench`` subcommand: measure, print the table, write the JSON."""
    if args.list:
        print(_listing())
        return 0
    try:
        settings = settings_from_args(args)
        if not settings.inference:
            for name in settings.cases:
                parse_case(name)
            parse_variants(settings.variants)
        report = run_bench(settings, log=lambda message: print(f"[bench] {message}", file=sys.stderr, flush=True))
    except (BenchError, ConfigError, DatasetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_table(report))
    if settings.json:
        write_report(report, settings.json)
        print(f"wrote {settings.json}")
    failed = [r for r in report["results"] if r["status"] == "failed"]
    return 1 if failed else 0


def add_bench_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``bench`` on the CLI's subparsers."""
    parser = subparsers.add_parser(
        "bench",
        help="time training steps per method and speed variant, or student inference",
        description="Time the training step of each method under each speed variant (synthetic tensors and the "
        "real data pipeline), or student inference (--inference). Ratios are against fp32_eager in the same run.",
    )
    _add_arguments(parser)
    parser.set_defaults(handler=command_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``bench/run_bench.py``: the same as ``python -m duda_engine bench``."""
    parser = argparse.ArgumentParser(prog="python -m duda_engine bench", description=__doc__.split("\n\n")[0])
    _add_arguments(parser)
    return command_bench(parser.parse_args(argv))
