"""What is measured: cases (a method with its networks) and variants (sets of speed switches)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from duda_engine.config import METHODS
from duda_engine.models import UnknownPresetError, get_preset

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
