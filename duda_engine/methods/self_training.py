"""DAFormer-style self-training of one network with its own EMA teacher (any backbone).

This is the "lightweight self-training" baseline of the DUDA paper when the backbone is light, and
the heavyweight anchor when it is heavy. Rare class sampling happens in the data pipeline.
"""

from __future__ import annotations

import torch

from duda_engine.config import ExperimentConfig
from duda_engine.data.classes import CITYSCAPES_THING_CLASSES, ClassSpec
from duda_engine.distributed import average_gradients
from duda_engine.methods.augment import block_mask, classmix, mix, strong_augment
from duda_engine.methods.common import Batch, autocast, make_optimizer, prepare_networks, step_generator
from duda_engine.methods.ema import ema_alpha, make_ema_teacher, update_ema
from duda_engine.methods.losses import cross_entropy, feature_distance
from duda_engine.methods.pseudo_labels import pseudo_label
from duda_engine.models import build_segmentor


class SelfTraining:
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
        st, ignore = self.st, self.classes.ignore_index
        generator = step_generator(self.config.seed, step)
        self.student.train()
        self.optimizer.zero_grad(set_to_none=True)
        losses: dict[str, torch.Tensor] = {}

        # 1. The EMA teacher follows the student (alpha_t = min(1 - 1/(t+1), alpha)).
        update_ema(self.teacher, self.student, ema_alpha(step, st.ema_alpha))

        # 2. Supervised loss on the source batch (+ ImageNet feature distance on thing classes).
        with autocast(self.device, self.amp):
            source_logits, source_features = self.student.forward_with_features(source.images)
        source_loss = cross_entropy(source_logits, source.labels, ignore)
        losses["loss/source"] = source_loss.detach()
        if self.imagenet is not None:
            with torch.no_grad(), autocast(self.device, self.amp):
                _, imagenet_features = self.imagenet.forward_with_features(source.images)
            fdist = feature_distance(source_features[-1], imagenet_features[-1], source.labels, CITYSCAPES_THING_CLASSES)
            source_loss = source_loss + st.fdist_weight * fdist
            losses["loss/fdist"] = fdist.detach()
        source_loss.backward()

        # 3. The teacher labels the target batch; weight = share of confident pixels.
        with torch.no_grad(), autocast(self.device, self.amp):
            teacher_probs = torch.softmax(self.teacher(target.images).float(), dim=1)
        pseudo, pseudo_weight = pseudo_label(teacher_probs, st.pseudo_threshold, st.ignore_top, st.ignore_bottom)
        losses["pseudo/confident_share"] = pseudo_weight.mean()

        # 4. ClassMix: half of each source image's classes pasted onto a target image, then strong augmentation.
        if st.classmix:
            mask = classmix(source.labels, self.classes.num_classes, ignore, generator, st.classmix_on_device).to(self.device)
            mixed_images = mix(mask, source.images, target.images)
            mixed_labels = mix(mask, source.labels, pseudo)
            mixed_weight = mix(mask, torch.ones_like(pseudo_weight), pseudo_weight)
        else:
            mixed_images, mixed_labels, mixed_weight = target.images, pseudo, pseudo_weight
        mixed_images = strong_augment(mixed_images, st.color_jitter_strength, st.color_jitter_p, st.blur, generator)

        # 5. Pseudo-labelled loss on the mixed images.
        with autocast(self.device, self.amp):
            mixed_logits = self.student(mixed_images)
        mixed_loss = cross_entropy(mixed_logits, mixed_labels, ignore, mixed_weight)
        losses["loss/target"] = mixed_loss.detach()

        # 6. MIC (optional): predict the teacher's labels from a target image with most blocks masked out.
        if st.mic_weight > 0:
            keep = block_mask(target.labels.shape, st.mic_block_size, st.mic_mask_ratio, generator, self.device)
            with autocast(self.device, self.amp):
                masked_logits = self.student(target.images * keep)
            mic_loss = cross_entropy(masked_logits, pseudo, ignore, pseudo_weight)
            mixed_loss = mixed_loss + st.mic_weight * mic_loss
            losses["loss/mic"] = mic_loss.detach()
        mixed_loss.backward()

        average_gradients(self.student)
        self.optimizer.step()
        self.scheduler.step()
        losses["lr"] = torch.tensor(self.scheduler.get_last_lr()[0])
        return losses

    def state_dict(self) -> dict:
        state = {
            "student": self.student.state_dict(),
            "teacher": self.teacher.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
        }
        if self.imagenet is not None:
            state["imagenet"] = self.imagenet.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.student.load_state_dict(state["student"])
        self.teacher.load_state_dict(state["teacher"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.imagenet is not None:
            self.imagenet.load_state_dict(state["imagenet"])
