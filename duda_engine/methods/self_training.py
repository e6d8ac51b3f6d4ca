"""DAFormer-style self-training of one network with its own EMA teacher (any backbone).

This is the "lightweight self-training" baseline of the DUDA paper when the backbone is light, and
the heavyweight anchor when it is heavy. Rare class sampling happens in the data pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from duda_engine.config import ExperimentConfig, SelfTrainingConfig
from duda_engine.data.classes import ClassSpec
from duda_engine.distributed import average_gradients
from duda_engine.methods import Method, Stateful
from duda_engine.methods.augment import block_mask, classmix_masks, mix, strong_augment
from duda_engine.methods.common import (
    Batch,
    autocast,
    make_optimizer,
    prepare_networks,
    step_generator,
    update_batchnorm_statistics,
)
from duda_engine.methods.ema import ema_alpha, make_ema_teacher, update_ema
from duda_engine.methods.losses import cross_entropy, feature_distance
from duda_engine.methods.pseudo_labels import pseudo_label
from duda_engine.models import build_segmentor


class SelfTraining(Method):
    uses_target = True

    def __init__(self, config: ExperimentConfig, classes: ClassSpec, device: torch.device):
        self.config, self.classes, self.device = config, classes, device
        self.st = config.self_training
        self.amp = config.train.amp
        self.student = build_segmentor(
            config.model.student, classes.num_classes, pretrained=config.model.student_pretrained
        ).to(device)
        self.teacher = make_ema_teacher(self.student)
        self.imagenet = None
        if self.st.fdist_weight > 0:
            self.imagenet = make_ema_teacher(self.student)  # frozen copy of the ImageNet-initialised network
        prepare_networks(config, *(n for n in (self.student, self.teacher, self.imagenet) if n is not None))
        self.optimizer, self.scheduler = make_optimizer(self.student, config, device)

    def train_step(self, source: Batch, target: Batch, step: int) -> dict[str, torch.Tensor]:
        st = self.st
        generator = step_generator(self.config.seed, step)

        # 1. The EMA teacher follows the student (alpha_t = min(1 - 1/(t+1), alpha)).
        update_ema(self.teacher, self.student, ema_alpha(step, st.ema_alpha))

        # 2. The teacher labels the target batch; weight = share of confident pixels.
        with torch.no_grad(), autocast(self.device, self.amp):
            teacher_probs = torch.softmax(self.teacher(target.images).float(), dim=1)
        pseudo, pseudo_weight = pseudo_label(teacher_probs, st.pseudo_threshold, st.ignore_top, st.ignore_bottom)

        # 3. ClassMix: half of each source image's classes pasted onto a target image, then strong augmentation.
        mask, mixed_images = classmix_images(source, target, self.classes, st, generator, self.device)
        mixed = with_pseudo_labels(mask, mixed_images, source, pseudo, pseudo_weight)

        # 4. The student's losses (source, pseudo-labelled mixed images, optional feature distance and MIC).
        self.student.train()
        self.optimizer.zero_grad(set_to_none=True)
        losses = base_method_backward(self.student, self.imagenet, st, self.classes, source, target, mixed, generator,
                                      self.device, self.amp)
        losses["pseudo/confident_share"] = pseudo_weight.mean()
        average_gradients(self.student)
        self.optimizer.step()
        self.scheduler.step()
        losses["lr"] = torch.tensor(self.scheduler.get_last_lr()[0])
        return losses

    def checkpoint_parts(self) -> dict[str, Stateful | None]:
        return {
            "student": self.student,
            "teacher": self.teacher,
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "imagenet": self.imagenet,
        }


@dataclass
class MixedTarget:
    """The target batch as the base method trains on it."""

    pseudo: torch.Tensor  # the teachers' hard labels of the clean target images
    pseudo_weight: torch.Tensor  # per pixel: the image's share of confident pixels (0 where ignored)
    images: torch.Tensor  # the mixed images after strong augmentation
    labels: torch.Tensor  # source labels and pseudo-labels, mixed
    weight: torch.Tensor  # 1 on source pixels, the pseudo-label weight on target pixels


def classmix_images(
    source: Batch, target: Batch, classes: ClassSpec, st: SelfTrainingConfig, generator: torch.Generator,
    device: torch.device,
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """ClassMix (half of each source image's classes pasted onto a target image; needs only the source
    labels) and strong augmentation: the mask (None without ClassMix) and the mixed images."""
    mask, images = None, target.images
    if st.classmix:
        mask = classmix_masks(source.labels, classes.ignore_index, generator).to(device)
        images = mix(mask, source.images, target.images)
    return mask, strong_augment(images, st.color_jitter_strength, st.color_jitter_p, st.blur, generator)


def with_pseudo_labels(
    mask: torch.Tensor | None, images: torch.Tensor, source: Batch, pseudo: torch.Tensor, pseudo_weight: torch.Tensor
) -> MixedTarget:
    """The mixed images' labels: source labels where the mask took the source, pseudo-labels elsewhere."""
    if mask is None:
        return MixedTarget(pseudo, pseudo_weight, images, pseudo, pseudo_weight)
    labels = mix(mask, source.labels, pseudo)
    weight = mix(mask, torch.ones_like(pseudo_weight), pseudo_weight)
    return MixedTarget(pseudo, pseudo_weight, images, labels, weight)


def base_method_backward(
    network: nn.Module, imagenet: nn.Module | None, st: SelfTrainingConfig, classes: ClassSpec, source: Batch,
    target: Batch, mixed: MixedTarget, generator: torch.Generator, device: torch.device, amp: bool,
) -> dict[str, torch.Tensor]:
    """The base method's losses of one network, backpropagated (the caller steps its optimizer): source
    cross-entropy (+ ImageNet feature distance on ``st.fdist_classes`` when ``imagenet`` is given),
    ``st.target_weight`` times the weighted cross-entropy on the pseudo-labelled mixed images (+ MIC: the
    teachers' labels predicted from the target images with most blocks masked out). With
    ``st.target_batchnorm`` the network's BatchNorm statistics first see the clean target batch. DUDA's
    large student trains with this step unchanged."""
    losses: dict[str, torch.Tensor] = {}
    ignore = classes.ignore_index
    if st.target_batchnorm:
        update_batchnorm_statistics(network, target.images, device, amp)
    with autocast(device, amp):
        source_logits, source_features = network.forward_with_features(source.images)
    source_loss = cross_entropy(source_logits, source.labels, ignore)
    losses["loss/source"] = source_loss.detach()
    if imagenet is not None:
        with torch.no_grad(), autocast(device, amp):
            _, imagenet_features = imagenet.forward_with_features(source.images)
        things = tuple(classes.names.index(name) for name in st.fdist_classes)
        fdist = feature_distance(source_features[-1], imagenet_features[-1], source.labels, things)
        source_loss = source_loss + st.fdist_weight * fdist
        losses["loss/fdist"] = fdist.detach()
    source_loss.backward()

    with autocast(device, amp):
        mixed_logits = network(mixed.images)
    pseudo_labelled = cross_entropy(mixed_logits, mixed.labels, ignore, mixed.weight)
    losses["loss/target"] = pseudo_labelled.detach()
    target_loss = st.target_weight * pseudo_labelled
    if st.mic_weight > 0:
        keep = block_mask(target.labels.shape, st.mic_block_size, st.mic_mask_ratio, generator, device)
        with autocast(device, amp):
            masked_logits = network(target.images * keep)
        mic_loss = cross_entropy(masked_logits, mixed.pseudo, ignore, mixed.pseudo_weight)
        target_loss = target_loss + st.mic_weight * mic_loss
        losses["loss/mic"] = mic_loss.detach()
    target_loss.backward()
    return losses
