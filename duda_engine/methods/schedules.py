"""Schedules: learning rate (linear warm-up then polynomial decay) and the KD weight ramp."""

from __future__ import annotations

import math


def lr_factor(step: int, total: int, warmup: int, power: float) -> float:
    """Multiplier of the base learning rate at ``step``: warm-up from 1e-6 to 1, then ``(1 - t/T)^power``."""
    if warmup > 0 and step < warmup:
        return 1e-6 + (1 - 1e-6) * step / warmup
    return (1.0 - step / total) ** power if step < total else 0.0


def ramp(progress: float, shape: str) -> float:
    """0 -> 1 over ``progress`` in [0, 1]: linear, cosine (smooth start and end) or step (1 at the end)."""
    progress = min(max(progress, 0.0), 1.0)
    if shape == "linear":
        return progress
    if shape == "cosine":
        return 0.5 * (1.0 - math.cos(math.pi * progress))
    if shape == "step":
        return 1.0 if progress >= 1.0 else 0.0
    raise ValueError(f"unknown ramp shape {shape!r}")


def kd_weight(step: int, total: int, pre_adaptation: float, ramp_share: float, shape: str, weight: float) -> float:
    """DUDA's gradual distillation: 0 during pre-adaptation, then ramps to ``weight`` over ``ramp_share``."""
    start = pre_adaptation * total
    length = ramp_share * total
    if step < start:
        return 0.0
    if length <= 0:
        return weight
    return weight * ramp((step - start) / length, shape)
