"""Teacher pseudo-labels with DAFormer's confidence weight."""

from __future__ import annotations

import torch


def pseudo_label(
    probabilities: torch.Tensor, threshold: float, ignore_top: int = 0, ignore_bottom: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hard labels and pixel weights from teacher probabilities ``[B,K,H,W]``.

    The label is the argmax; every pixel of image b gets weight q_b = share of its pixels whose max
    probability is at least ``threshold``; rows at the top and bottom can be ignored (weight 0).
    """
    confidence, labels = probabilities.max(dim=1)
    share = (confidence >= threshold).float().mean(dim=(1, 2))
    weights = share[:, None, None].expand_as(confidence).clone()
    if ignore_top > 0:
        weights[:, :ignore_top] = 0
    if ignore_bottom > 0:
        weights[:, -ignore_bottom:] = 0
    return labels, weights
