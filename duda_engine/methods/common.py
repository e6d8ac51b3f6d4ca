"""What every method shares: the batch on the device, the optimiser and its schedule, autocast."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from duda_engine.config import ExperimentConfig
from duda_engine.methods.schedules import lr_factor


@dataclass
class Batch:
    """Images as float in [0, 1] ``[B,3,H,W]`` and labels ``[B,H,W]`` (ignore where unlabelled).

    ``indices`` ``[B]`` (dataset indices) and ``views`` ``[B,5]`` (where each crop lies in its image,
    see ``SegmentationDataset``) stay on the CPU; they locate precomputed teacher predictions.
    """

    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor | None = None
    views: torch.Tensor | None = None


def to_batch(items: dict[str, torch.Tensor], device: torch.device, channels_last: bool = False) -> Batch:
    images = items["image"].to(device, non_blocking=True).float().div_(255.0)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return Batch(
        images=images,
        labels=items["label"].to(device, non_blocking=True).long(),
        indices=torch.as_tensor(items["index"]) if "index" in items else None,
        views=items.get("view"),
    )


def prepare_networks(config: ExperimentConfig, *networks: nn.Module) -> None:
    """Apply the speed options to networks already on their device: channels_last, torch.compile (in place)."""
    for network in networks:
        if config.train.channels_last:
            network.to(memory_format=torch.channels_last)
        if config.train.compile:
            network.compile(mode=config.train.compile_mode)


def make_optimizer(model: nn.Module, config: ExperimentConfig, device: torch.device):
    """AdamW over the encoder (lr) and the head (lr x head_lr_mult), warm-up + poly schedule."""
    o = config.optim
    groups = model.param_groups(o.lr, o.head_lr_mult)
    optimizer = torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay, fused=device.type == "cuda")
    total = config.train.iterations
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total, o.warmup_iters, o.poly_power)
    )
    return optimizer, scheduler


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA; a no-op elsewhere."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def update_batchnorm_statistics(network: nn.Module, images: torch.Tensor, device: torch.device, amp: bool) -> None:
    """One training-mode forward pass without gradients, its output discarded: each BatchNorm layer's
    running statistics take one momentum step towards ``images``' batch statistics (nothing else changes)."""
    network.train()
    with autocast(device, amp):
        network(images)


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """A CPU generator whose draws depend only on (seed, step, stream): augmentations survive a resume."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 7 + stream)
