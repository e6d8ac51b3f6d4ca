"""The run config of a case and its batches, and the bench-side tweaks (speed changes that are not
config switches)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.speed.cases import BENCH_TOTAL_ITERATIONS, BenchError, Case, Variant
from duda_engine.config import ExperimentConfig
from duda_engine.config_loading import config_from_dict
from duda_engine.methods import Method
from duda_engine.methods.common import Batch, to_batch
from duda_engine.methods.duda import Duda
from duda_engine.validation import class_spec, validate_config

TOY_BENCH_DATA = {
    "source": {"kind": "toy", "domain": "synthetic_a"},
    "target": {"kind": "toy", "domain": "real"},
}


def _toy_size_for(crop: tuple[int, int], scale_high: float) -> str:
    from duda_engine.toy.domains import TOY_SIZES

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


def _fused(optimizer: torch.optim.Optimizer, scheduler) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """A fused AdamW with the groups of ``optimizer``, and the same schedule on it."""
    groups = [
        {
            **{k: v for k, v in group.items() if k not in ("fused", "foreach", "initial_lr")},
            "lr": group.get("initial_lr", group["lr"]),
        }
        for group in optimizer.param_groups
    ]
    fused = torch.optim.AdamW(groups, fused=True)
    return fused, torch.optim.lr_scheduler.LambdaLR(fused, scheduler.lr_lambdas)


def _use_fused_adamw(method: Method) -> None:
    """Replace each of the method's AdamW optimisers by a fused one with the same groups and schedule."""
    method.optimizer, method.scheduler = _fused(method.optimizer, method.scheduler)
    if isinstance(method, Duda):
        method.auxiliary_optimizer, method.auxiliary_scheduler = _fused(
            method.auxiliary_optimizer, method.auxiliary_scheduler
        )


def _predicting_teachers(method: Method) -> list[nn.Module]:
    """The networks a step only predicts with: DUDA's EMA teachers and frozen teachers (never the auxiliary,
    which trains); self-training's teacher."""
    if isinstance(method, Duda):
        return [method.ema, *([method.student_ema] if method.student_ema is not None else []), *method.frozen]
    return [method.teacher] if method.teacher is not None else []


def _inference_mode_forward(module: nn.Module) -> None:
    """Run ``module``'s forward under ``torch.inference_mode``; the clone makes the output a normal tensor."""
    forward = module.forward

    def forward_in_inference_mode(*args, **kwargs):
        with torch.inference_mode():
            output = forward(*args, **kwargs)
        return output.clone()

    module.forward = forward_in_inference_mode


def apply_tweaks(method: Method, tweaks: Iterable[str]) -> None:
    """``fused_adamw``: fused AdamW optimisers. ``teacher_inference_mode``: frozen teachers under inference mode."""
    for tweak in tweaks:
        if tweak == "fused_adamw":
            _use_fused_adamw(method)
        elif tweak == "teacher_inference_mode":
            for teacher in _predicting_teachers(method):
                _inference_mode_forward(teacher)
        else:
            raise BenchError(f"unknown tweak {tweak!r}")
