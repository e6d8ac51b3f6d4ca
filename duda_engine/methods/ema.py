"""The mean teacher: theta_tea <- alpha * theta_tea + (1 - alpha) * theta_stu."""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_alpha(step: int, max_alpha: float) -> float:
    """DAFormer's schedule: alpha_t = min(1 - 1 / (t + 1), max_alpha); step 0 copies the student."""
    return min(1.0 - 1.0 / (step + 1), max_alpha)


def make_ema_teacher(student: nn.Module) -> nn.Module:
    """A frozen copy of ``student`` in eval mode."""
    teacher = copy.deepcopy(student)
    teacher.eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher


@torch.no_grad()
def update_ema(teacher: nn.Module, student: nn.Module, alpha: float) -> None:
    """EMA over parameters and floating-point buffers; integer buffers (BN counters) are copied."""
    teacher_params = list(teacher.parameters())
    student_params = [p.detach() for p in student.parameters()]
    torch._foreach_mul_(teacher_params, alpha)
    torch._foreach_add_(teacher_params, student_params, alpha=1.0 - alpha)
    for teacher_buffer, student_buffer in zip(teacher.buffers(), student.buffers(), strict=True):
        if teacher_buffer.dtype.is_floating_point:
            teacher_buffer.mul_(alpha).add_(student_buffer, alpha=1.0 - alpha)
        else:
            teacher_buffer.copy_(student_buffer)
