"""Source-only training (and the oracle, which is the same step on the target's own labels)."""

from __future__ import annotations

import torch

from duda_engine.config import ExperimentConfig
from duda_engine.data.classes import ClassSpec
from duda_engine.distributed import average_gradients
from duda_engine.methods import Method, Stateful
from duda_engine.methods.common import Batch, autocast, make_optimizer, prepare_networks
from duda_engine.methods.losses import cross_entropy
from duda_engine.models import build_segmentor


class SourceOnly(Method):
    """Supervised cross-entropy on labelled images of one domain; no target images are used."""

    uses_target = False

    def __init__(self, config: ExperimentConfig, classes: ClassSpec, device: torch.device):
        self.config, self.classes, self.device = config, classes, device
        self.student = build_segmentor(
            config.model.student, classes.num_classes, pretrained=config.model.student_pretrained
        ).to(device)
        prepare_networks(config, self.student)
        self.optimizer, self.scheduler = make_optimizer(self.student, config, device)
        self.amp = config.train.amp
        self.teacher = None

    def train_step(self, source: Batch, target: Batch | None, step: int) -> dict[str, torch.Tensor]:
        self.student.train()
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.amp):
            logits = self.student(source.images)
        loss = cross_entropy(logits, source.labels, self.classes.ignore_index)
        loss.backward()
        average_gradients(self.student)
        self.optimizer.step()
        self.scheduler.step()
        return {"loss/source": loss.detach(), "lr": torch.tensor(self.scheduler.get_last_lr()[0])}

    def checkpoint_parts(self) -> dict[str, Stateful | None]:
        return {"student": self.student, "optimizer": self.optimizer, "scheduler": self.scheduler}


class Oracle(SourceOnly):
    """The upper bound on bundled data: supervised on the target's labels (train.py feeds them as source)."""
