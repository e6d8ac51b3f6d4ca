"""Inconsistency weights: more weight for the classes the small student has not adapted to yet.

Per class k, u_k = 1 - IoU_k(small student's prediction, teachers' pseudo-label) on the target batch,
smoothed over iterations by an EMA (classes absent from both keep their value). The weights are
c_k = K * u_k^gamma / sum_j u_j^gamma (mean 1), clipped to [low, high] and rescaled to mean 1 again.
A pixel labelled k weighs c_k, so on a batch where the frequent, agreed classes weigh < 1 the
weights scale the target loss down as well as reweighing its classes.
"""

from __future__ import annotations

import torch
from torch import nn


class InconsistencyWeights(nn.Module):
    def __init__(self, num_classes: int, gamma: float, momentum: float, clip: tuple[float, float]):
        super().__init__()
        self.num_classes, self.gamma, self.momentum, self.clip = num_classes, gamma, momentum, clip
        self.register_buffer("disagreement", torch.ones(num_classes))

    @torch.no_grad()
    def update(self, prediction: torch.Tensor, pseudo_label: torch.Tensor, ignore_index: int) -> None:
        """One EMA step from a batch; nothing is read back from the device (no boolean indexing)."""
        k = self.num_classes
        valid = pseudo_label != ignore_index
        index = torch.where(valid, pseudo_label * k + prediction, k * k).flatten()  # ignored pixels -> bin k*k
        counts = torch.zeros(k * k + 1, dtype=torch.long, device=index.device).scatter_add_(0, index, torch.ones_like(index))
        matrix = counts[: k * k].reshape(k, k).float()
        intersection = matrix.diag()
        union = matrix.sum(0) + matrix.sum(1) - intersection
        present = union > 0
        observed = 1.0 - intersection / union.clamp_min(1.0)
        moved = self.momentum * self.disagreement + (1 - self.momentum) * observed
        self.disagreement.copy_(torch.where(present, moved, self.disagreement))

    def weights(self) -> torch.Tensor:
        powered = self.disagreement.clamp_min(1e-6) ** self.gamma
        weights = self.num_classes * powered / powered.sum()
        weights = weights.clamp(self.clip[0], self.clip[1])
        return weights / weights.mean()

    def per_pixel(
        self, labels: torch.Tensor, loss_weight: torch.Tensor, ignore_index: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each pixel's class weight c[label], and the mean of c[label] over the labelled pixels weighted
        by ``loss_weight`` (the factor by which the class weights scale the loss)."""
        weights = self.weights()[labels.clamp(max=self.num_classes - 1)]
        counted = (labels != ignore_index).float() * loss_weight
        mean = (weights * counted).sum() / counted.sum().clamp_min(1e-6)
        return weights, mean
