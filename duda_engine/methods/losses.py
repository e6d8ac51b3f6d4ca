"""Losses: (weighted) cross-entropy, knowledge distillation, ImageNet feature distance."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int, pixel_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean over labelled pixels of ``weight * CE``; logits ``[B,K,H,W]``, labels ``[B,H,W]``."""
    per_pixel = F.cross_entropy(logits.float(), labels, ignore_index=ignore_index, reduction="none")
    valid = (labels != ignore_index).float()
    if pixel_weight is not None:
        per_pixel = per_pixel * pixel_weight
    return (per_pixel * valid).sum() / valid.sum().clamp_min(1.0)


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_probabilities: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """T^2 * mean over pixels of KL(p_teacher^T || p_student^T).

    ``teacher_probabilities`` are already softened at ``temperature`` (a fused set of teachers gives
    probabilities, not logits). The KL goes from the teacher to the student: the student is pushed to
    cover everything the teacher believes.
    """
    log_student = F.log_softmax(student_logits.float() / temperature, dim=1)
    teacher = teacher_probabilities.float()
    kl = (teacher * (torch.log(teacher.clamp_min(1e-8)) - log_student)).sum(dim=1)
    return temperature**2 * kl.mean()


def feature_distance(
    features: torch.Tensor,
    imagenet_features: torch.Tensor,
    labels: torch.Tensor,
    thing_classes: tuple[int, ...],
) -> torch.Tensor:
    """DAFormer's ImageNet feature distance: L2 between bottleneck features on thing-class pixels."""
    size = features.shape[-2:]
    downsampled = F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()
    mask = torch.isin(downsampled, torch.tensor(thing_classes, device=labels.device))
    distance = torch.norm(features.float() - imagenet_features.float(), dim=1)
    if not mask.any():
        return distance.sum() * 0
    return distance[mask].mean()
