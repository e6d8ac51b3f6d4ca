"""DUDA: a large EMA teacher and a large auxiliary student adapt; a small student learns from them.

One iteration, with source batch (x_s, y_s) and target batch x_t:

  0. EMA:            g_tea <- EMA(g_stu)   (and f_ema <- EMA(f) when that teacher is used)
  1. ClassMix:       x_m from x_s, x_t and a mask M of source classes; strong augmentation of x_m
  2. Teachers label: p = fuse(softmax(teacher(x_t)) for each teacher); y_hat = argmax p; q = confident share;
                     y_m, w_m mix (y_s, 1) with (y_hat, q)
  3. Large student:  CE(g_stu(x_s), y_s) + CE_w(g_stu(x_m), y_m, w_m)          -> step g_stu
                     [+ ImageNet feature distance] [+ MIC]: self-training's step unchanged
  4. Small student:  CE(f(x_s), y_s) + CE_{w*c}(f(x_m), y_m, w_m * c[y_m])
                     + lambda_KD(t) * T^2 KL(s_m || softmax(f(x_m)/T))                          -> step f
                     [+ lambda_KD(t) * T^2 KL(s(x_s) || softmax(f(x_s)/T)) with ``duda.kd_on_source``]
                     where s = fuse(softmax(teacher(.)/T)) and s_m = M * s(x_s) + (1 - M) * s(x_t)

The distillation target of a mixed image is the mix of the teachers' soft predictions of the clean
source and target images, as its hard labels are (weak-to-strong). lambda_KD(t) is 0 during
pre-adaptation and then ramps up (gradual distillation). c are the inconsistency weights of the
classes on which the small student still disagrees with the teachers (mean 1 over the classes); they
apply after pre-adaptation, to the pseudo-labelled cross-entropy.

Teachers are the EMA teacher and optionally the auxiliary, the small student's own EMA and frozen
networks from earlier runs; frozen ones run live or, with ``duda.frozen_teachers_precompute``, are
read from predictions made once before training (``methods/precomputed.py``, which says what differs).
The teachers that do not change during a step (all but the auxiliary, which steps in 3) predict the
images they distil on already in 2, in the same forward pass as the target batch with
``duda.batch_teacher_forwards`` (in eval mode a pixel's prediction does not depend on the other images).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from duda_engine.checkpoint import sha256_file
from duda_engine.config import ConfigError, ExperimentConfig
from duda_engine.data.classes import ClassSpec
from duda_engine.data.pipeline import TrainingData
from duda_engine.distributed import average_gradients
from duda_engine.methods import Method, Stateful
from duda_engine.methods.augment import mix
from duda_engine.methods.common import (
    Batch,
    autocast,
    make_optimizer,
    prepare_networks,
    step_generator,
    update_batchnorm_statistics,
)
from duda_engine.methods.ema import ema_alpha, make_ema_teacher, update_ema
from duda_engine.methods.inconsistency import InconsistencyWeights
from duda_engine.methods.losses import cross_entropy, distillation_loss
from duda_engine.methods.precomputed import PrecomputedTeacher, at_temperature, describe
from duda_engine.methods.pseudo_labels import pseudo_label
from duda_engine.methods.schedules import kd_weight
from duda_engine.methods.self_training import base_method_backward, classmix_images, with_pseudo_labels
from duda_engine.models import build_segmentor
from duda_engine.student import load_student


def fuse(probabilities: list[torch.Tensor], fusion: str) -> torch.Tensor:
    """Combine the class probabilities ``[B,K,H,W]`` of several teachers.

    ``mean``: the average. ``confidence``: per pixel, each teacher weighted by its own max probability.
    """
    if len(probabilities) == 1:
        return probabilities[0]
    stacked = torch.stack(probabilities)
    if fusion == "mean":
        return stacked.mean(0)
    if fusion == "confidence":
        confidence = stacked.max(dim=2, keepdim=True).values
        return (stacked * confidence).sum(0) / confidence.sum(0)
    raise ValueError(f"unknown fusion {fusion!r}")


@torch.no_grad()
def teacher_logits(
    teachers: list[nn.Module], views: list[torch.Tensor], device, amp: bool, batched: bool = False
) -> list[list[torch.Tensor]]:
    """Every teacher's logits on every batch of ``views``, in eval mode, returned on ``device``:
    ``result[view][teacher]``. ``batched``: one forward pass per teacher over the views concatenated."""
    per_teacher = []
    for teacher in teachers:
        was_training = teacher.training
        teacher.eval()
        teacher_device = next(teacher.parameters()).device
        with autocast(teacher_device, amp):
            if batched and len(views) > 1:
                logits = teacher(torch.cat(views).to(teacher_device)).float().split([len(v) for v in views])
            else:
                logits = [teacher(v.to(teacher_device)).float() for v in views]
        teacher.train(was_training)
        per_teacher.append([view_logits.to(device) for view_logits in logits])
    return [[per_teacher[t][v] for t in range(len(teachers))] for v in range(len(views))]


def softmax_at(logits: list[torch.Tensor], temperature: float) -> list[torch.Tensor]:
    return [torch.softmax(one / temperature, dim=1) for one in logits]


class Duda(Method):
    uses_target = True

    def __init__(self, config: ExperimentConfig, classes: ClassSpec, device: torch.device):
        self.config, self.classes, self.device = config, classes, device
        self.st, self.duda = config.self_training, config.duda
        self.amp = config.train.amp
        m, k = config.model, classes.num_classes
        self.auxiliary = build_segmentor(m.auxiliary, k, pretrained=m.auxiliary_pretrained).to(device)
        self.ema = make_ema_teacher(self.auxiliary)
        # A frozen copy of the ImageNet-initialised auxiliary for the base method's feature distance.
        self.auxiliary_imagenet = make_ema_teacher(self.auxiliary) if self.st.fdist_weight > 0 else None
        self.student = build_segmentor(m.student, k, pretrained=m.student_pretrained).to(device)
        self.student_ema = make_ema_teacher(self.student) if "student_ema" in self.duda.teachers else None
        precompute = self.duda.frozen_teachers_precompute
        self.frozen = [] if precompute else [self._load_frozen(path) for path in self.duda.frozen_teachers]
        self.frozen_on_target: list[PrecomputedTeacher] = []  # filled by prepare() when precomputing
        self.frozen_on_source: list[PrecomputedTeacher] = []
        networks = (self.auxiliary, self.ema, self.auxiliary_imagenet, self.student, self.student_ema)
        prepare_networks(config, *(n for n in networks if n is not None))
        self.auxiliary_optimizer, self.auxiliary_scheduler = make_optimizer(self.auxiliary, config, device)
        self.optimizer, self.scheduler = make_optimizer(self.student, config, device)
        self.inconsistency = InconsistencyWeights(
            k, self.duda.inconsistency_gamma, self.duda.inconsistency_momentum, tuple(self.duda.inconsistency_clip)
        ).to(device)
        self.teacher = self.ema  # shown beside the student in prediction samples

    def _load_frozen(self, path: str) -> nn.Module:
        where = torch.device("cpu") if self.duda.frozen_teachers_on_cpu else self.device
        model, classes, _ = load_student(path, where)
        if classes.names != self.classes.names:
            raise ConfigError("duda.frozen_teachers", f"{path} predicts other classes than this run")
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        return model

    def prepare(self, data: TrainingData, output_dir: Path, wait: bool = False,
                status: Callable[[str], None] = lambda _: None) -> None:
        """With ``duda.frozen_teachers_precompute``: predict the training images once with each frozen
        teacher (or open what an earlier start of this run stored) and keep no network. ``wait``: another
        process (data-parallel rank 0) computes them; wait for its files."""
        d, e = self.duda, self.config.eval
        if not d.frozen_teachers_precompute:
            return
        if d.frozen_teachers:
            status("precomputing the frozen teachers' predictions on the training images (once per run)")
        self.frozen_on_target, self.frozen_on_source = [], []
        inference = {"mode": e.mode, "window": list(e.window), "stride": list(e.stride)}
        for i, path in enumerate(d.frozen_teachers):
            teacher, digest = None, sha256_file(Path(path))
            roles = [("target", data.target, self.frozen_on_target)]
            if d.kd_weight > 0 and (self.st.classmix or d.kd_on_source):  # distillation on ClassMix or source images
                roles.append(("source", data.source, self.frozen_on_source))
            for role, dataset, stores in roles:
                file = output_dir / "frozen_predictions" / f"teacher{i}-{role}.npy"
                expected = describe(dataset, {"teacher": str(path), "teacher_sha256": digest}, d.precompute_stride, inference)
                store = PrecomputedTeacher.open_if_current(file, expected)
                if store is None and wait:
                    store = PrecomputedTeacher.wait_for(file, expected)
                if store is None:
                    teacher = teacher or self._load_frozen(path)
                    device = next(teacher.parameters()).device
                    store = PrecomputedTeacher.compute(teacher, self.classes.num_classes, dataset, file, expected, device, self.amp)
                stores.append(store)
            del teacher

    def teachers(self) -> list[nn.Module]:
        by_name = {"ema": self.ema, "auxiliary": self.auxiliary, "student_ema": self.student_ema}
        return [by_name[name] for name in self.duda.teachers] + self.frozen

    def steady_teachers(self) -> list[nn.Module]:
        """The live teachers whose weights do not change during a step (all but the auxiliary student)."""
        return [teacher for teacher in self.teachers() if teacher is not self.auxiliary]

    def auxiliary_logits(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The auxiliary student's logits on ``images`` when it is one of the teachers (else none)."""
        if "auxiliary" not in self.duda.teachers:
            return []
        return teacher_logits([self.auxiliary], [images], self.device, self.amp)[0]

    def distillation_logits(
        self, steady: dict[str, list[torch.Tensor]], images: dict[str, torch.Tensor]
    ) -> dict[str, list[torch.Tensor]]:
        """Every live teacher's logits on each image batch it distils on: the steady teachers' from step 2,
        and the auxiliary student's (when a teacher) predicted now, after its update."""
        if "auxiliary" not in self.duda.teachers:
            return steady
        auxiliary = teacher_logits([self.auxiliary], list(images.values()), self.device, self.amp,
                                   self.duda.batch_teacher_forwards)
        return {view: steady[view] + logits for view, logits in zip(images, auxiliary, strict=True)}

    def stored(self, stores: list[PrecomputedTeacher], batch: Batch) -> list[torch.Tensor]:
        """The precomputed teachers' log-probabilities on the crops of ``batch`` (read once per step)."""
        size = tuple(batch.images.shape[-2:])
        return [store.log_probabilities(batch.indices, batch.views, size, self.device) for store in stores]

    def probabilities(self, live: list[torch.Tensor], stored: list[torch.Tensor], temperature: float) -> list[torch.Tensor]:
        """Each teacher's class probabilities at ``temperature``: the live ones' from their logits, then the
        precomputed ones' from their log-probabilities."""
        return softmax_at(live, temperature) + [at_temperature(one, temperature) for one in stored]

    def train_step(self, source: Batch, target: Batch, step: int) -> dict[str, torch.Tensor]:
        d, st, ignore = self.duda, self.st, self.classes.ignore_index
        total = self.config.train.iterations
        generator = step_generator(self.config.seed, step)
        kd = kd_weight(step, total, d.pre_adaptation, d.ramp, d.ramp_shape, d.kd_weight)  # gradual distillation
        losses: dict[str, torch.Tensor] = {}

        # 0. The EMA teachers follow their students.
        alpha = ema_alpha(step, st.ema_alpha)
        update_ema(self.ema, self.auxiliary, alpha)
        if self.student_ema is not None:
            update_ema(self.student_ema, self.student, alpha)

        # 1. ClassMix (the mixed images need only the source labels) and strong augmentation.
        mask, mixed_images = classmix_images(source, target, self.classes, st, generator, self.device)

        # 2. The teachers label the target batch. The steady teachers also predict now the source batch when
        #    they will distil on it (a mixed image's soft label mixes their source and target predictions;
        #    KD on source), in one forward pass with the target batch if batched.
        views = {"target": target.images}
        if kd > 0 and (st.classmix or d.kd_on_source):
            views["source"] = source.images
        predicted = teacher_logits(self.steady_teachers(), list(views.values()), self.device, self.amp, d.batch_teacher_forwards)
        steady = dict(zip(views, predicted, strict=True))  # view -> each steady teacher's logits
        stored = {"target": self.stored(self.frozen_on_target, target),  # precomputed frozen teachers, if any
                  "source": self.stored(self.frozen_on_source, source) if kd > 0 else []}
        fused = fuse(self.probabilities(steady["target"] + self.auxiliary_logits(target.images), stored["target"], 1.0),
                     d.fusion)
        pseudo, pseudo_weight = pseudo_label(fused, st.pseudo_threshold, st.ignore_top, st.ignore_bottom)
        losses["pseudo/confident_share"] = pseudo_weight.mean()
        mixed = with_pseudo_labels(mask, mixed_images, source, pseudo, pseudo_weight)

        # 3. The large auxiliary student: the unchanged base method (source CE + pseudo-labelled CE on the
        #    mixed images, with the configured ImageNet feature distance and MIC), as self-training trains.
        self.auxiliary.train()
        self.auxiliary_optimizer.zero_grad(set_to_none=True)
        base = base_method_backward(self.auxiliary, self.auxiliary_imagenet, st, self.classes, source, target, mixed,
                                    generator, self.device, self.amp)
        average_gradients(self.auxiliary)
        self.auxiliary_optimizer.step()
        self.auxiliary_scheduler.step()
        losses.update({"aux/" + name.replace("/", "_"): value for name, value in base.items()})
        losses["schedule/kd_weight"] = torch.tensor(kd)
        distil = self.distillation_logits(steady, views) if kd > 0 else {}

        # 4a. Inconsistency weights: classes where the small student disagrees with the teachers weigh more
        #     after pre-adaptation. Its labels come from a prediction (eval mode: no dropout, its BatchNorm
        #     statistics untouched; with self_training.target_batchnorm they take a step towards the clean
        #     target batch first).
        if st.target_batchnorm:
            update_batchnorm_statistics(self.student, target.images, self.device, self.amp)
        prediction = teacher_logits([self.student], [target.images], self.device, self.amp)[0][0].argmax(1)
        self.inconsistency.update(prediction, pseudo, ignore)
        if d.inconsistency and step >= d.pre_adaptation * total:
            class_weight, pixel_mean = self.inconsistency.per_pixel(mixed.labels, mixed.weight, ignore)
        else:
            class_weight, pixel_mean = 1.0, torch.tensor(1.0)
        losses["inconsistency/pixel_mean"] = pixel_mean  # the factor by which the weights scale the target loss

        # 4b. The small student on the source images: CE (+ KD from the fused teachers with kd_on_source).
        self.student.train()
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.amp):
            source_logits = self.student(source.images)
        source_loss = cross_entropy(source_logits, source.labels, ignore)
        if kd > 0 and d.kd_on_source:
            soft = fuse(self.probabilities(distil["source"], stored["source"], d.temperature), d.fusion)
            kd_source = distillation_loss(source_logits, soft, d.temperature)
            source_loss = source_loss + kd * kd_source
            losses["loss/kd_source"] = kd_source.detach()
        source_loss.backward()

        # 4c. The small student on the mixed images: weighted CE on the hard labels + KD on the soft ones.
        with autocast(self.device, self.amp):
            mixed_logits = self.student(mixed_images)
        pseudo_labelled = cross_entropy(mixed_logits, mixed.labels, ignore, mixed.weight * class_weight)
        target_loss = pseudo_labelled
        if kd > 0:
            kd_target = distillation_loss(mixed_logits, self.soft_labels_of_mixed(distil, stored, mask), d.temperature)
            target_loss = target_loss + kd * kd_target
            losses["loss/kd"] = kd_target.detach()
        target_loss.backward()
        average_gradients(self.student)
        self.optimizer.step()
        self.scheduler.step()

        losses["loss/source"], losses["loss/target"] = source_loss.detach(), pseudo_labelled.detach()
        losses["inconsistency/max_weight"] = self.inconsistency.weights().max()
        losses["lr"] = torch.tensor(self.scheduler.get_last_lr()[0])
        return losses

    def soft_labels_of_mixed(
        self, distil: dict[str, list[torch.Tensor]], stored: dict[str, list[torch.Tensor]], mask: torch.Tensor | None
    ) -> torch.Tensor:
        """The fused teachers' soft labels (at the KD temperature) of the mixed batch: each teacher's
        predictions of the clean source and target images mixed with the ClassMix mask, as the hard
        pseudo-labels are (its prediction of the target images without ClassMix)."""
        temperature = self.duda.temperature
        on_target = self.probabilities(distil["target"], stored["target"], temperature)
        if mask is None:
            return fuse(on_target, self.duda.fusion)
        on_source = self.probabilities(distil["source"], stored["source"], temperature)
        return fuse([mix(mask, s, t) for s, t in zip(on_source, on_target, strict=True)], self.duda.fusion)

    def checkpoint_parts(self) -> dict[str, Stateful | None]:
        return {
            "student": self.student,
            "auxiliary": self.auxiliary,
            "ema": self.ema,
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "auxiliary_optimizer": self.auxiliary_optimizer,
            "auxiliary_scheduler": self.auxiliary_scheduler,
            "inconsistency": self.inconsistency,
            "student_ema": self.student_ema,
            "auxiliary_imagenet": self.auxiliary_imagenet,
        }
