"""Runs and what they produce: metric points, per-class IoU, checkpoints, prediction samples, log lines.

A run's status changes only through ``services.lifecycle.run_transition``; the allowed moves live here, with
the model, so that every writer shares one table of them.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import models
from django.utils import timezone

from webapp.runs.class_lists import classes_digest


class RunStatus(models.TextChoices):
    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"
    CANCELLED = "cancelled", "cancelled"


# Allowed status moves. running -> queued is the requeue of a run whose worker died; failed|cancelled
# -> queued is a resume; queued -> cancelled cancels a run no worker has picked up yet.
TRANSITIONS: dict[str, frozenset[str]] = {
    RunStatus.QUEUED: frozenset({RunStatus.RUNNING, RunStatus.CANCELLED}),
    RunStatus.RUNNING: frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.QUEUED}),
    RunStatus.SUCCEEDED: frozenset(),
    RunStatus.FAILED: frozenset({RunStatus.QUEUED}),
    RunStatus.CANCELLED: frozenset({RunStatus.QUEUED}),
}
ACTIVE_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)
FINISHED_STATUSES = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


class Run(models.Model):
    """One domain-adaptation experiment: its validated engine config, its state and its results."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="runs")
    name = models.CharField(max_length=200)
    method = models.CharField(max_length=32)
    benchmark = models.CharField(max_length=64, blank=True, help_text="bundled toy benchmark, or empty for a real pair")
    source_dataset = models.CharField(max_length=200)
    target_dataset = models.CharField(max_length=200)
    student = models.CharField(max_length=64, help_text="light backbone: the deployed network")
    auxiliary = models.CharField(max_length=64, blank=True, help_text="heavy backbone: DUDA's auxiliary and teacher")
    config = models.JSONField(help_text="the engine's full validated config")
    classes_digest = models.CharField(
        max_length=64, editable=False, help_text="sha256 of the config's class names in order (set on save)",
    )
    baseline = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="a source-only run on the same target with the same student and classes, named at launch",
    )
    baseline_auto = models.BooleanField(
        default=False, help_text="the baseline is the latest matching succeeded source-only run, found when read",
    )
    launch_group = models.ForeignKey(
        "RunGroup", null=True, blank=True, on_delete=models.SET_NULL, related_name="launched_runs",
        help_text="the group whose launch created this run (with its baselines)",
    )
    teachers = models.ManyToManyField(
        "self", symmetrical=False, blank=True, related_name="taught_runs",
        help_text="DUDA: succeeded runs whose student checkpoints teach this run as frozen teachers",
    )
    output_dir = models.CharField(max_length=1000, blank=True)

    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True)
    cancel_requested = models.BooleanField(default=False)
    total_steps = models.PositiveIntegerField()
    step = models.PositiveIntegerField(default=0)
    seconds_per_step = models.FloatField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="times a worker has claimed the run")
    claim_token = models.CharField(max_length=32, blank=True, help_text="identifies the worker that holds the run")
    worker_host = models.CharField(max_length=200, blank=True)
    worker_gpu = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    error_message = models.TextField(blank=True)

    best_miou = models.FloatField(null=True, blank=True)
    final_miou = models.FloatField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "heartbeat_at"], name="run_status_heartbeat"),
            # The runs list: newest first (an owner's, staff see all), and its filters in the same order;
            # ending with the id, they give a page's ids from the index alone (``selectors.run_page``).
            models.Index(fields=["owner", "-created_at", "-id"], name="run_owner_created"),
            models.Index(fields=["-created_at", "-id"], name="run_created"),
            models.Index(fields=["owner", "status", "-created_at", "-id"], name="run_owner_status_created"),
            models.Index(fields=["method", "-created_at"], name="run_method_created"),
            models.Index(fields=["target_dataset", "-created_at"], name="run_target_created"),
            # Auto baselines: the newest succeeded source-only run of an owner per target, student and classes.
            models.Index(fields=["owner", "method", "status", "target_dataset", "student", "classes_digest"],
                         name="run_baseline_lookup"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=[s.value for s in RunStatus]), name="run_status_valid"
            ),
            models.CheckConstraint(condition=models.Q(step__lte=models.F("total_steps")), name="run_step_within_total"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.name} ({self.status})"

    def save(self, *args, **kwargs) -> None:
        if "config" in self.__dict__:  # not deferred: the digest follows the class list
            self.classes_digest = classes_digest(self.config)
            if kwargs.get("update_fields") is not None and "config" in kwargs["update_fields"]:
                kwargs["update_fields"] = {*kwargs["update_fields"], "classes_digest"}
        super().save(*args, **kwargs)

    # --- invariants and derived values ------------------------------------------------------
    def can_transition(self, to: str) -> bool:
        return to in TRANSITIONS[self.status]

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def can_cancel(self) -> bool:
        return self.is_active and not self.cancel_requested

    @property
    def can_resume(self) -> bool:
        return self.can_transition(RunStatus.QUEUED) and self.status != RunStatus.RUNNING

    @property
    def can_delete(self) -> bool:
        return self.status != RunStatus.RUNNING

    @property
    def progress(self) -> float:
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0

    @property
    def eta_seconds(self) -> float | None:
        if self.status != RunStatus.RUNNING or not self.seconds_per_step:
            return None
        return max(0.0, (self.total_steps - self.step) * self.seconds_per_step)

    def heartbeat_age(self, now=None) -> timedelta | None:
        if self.heartbeat_at is None:
            return None
        return (now or timezone.now()) - self.heartbeat_at

    @property
    def folder(self) -> Path:
        return Path(self.output_dir)

    def resolve(self, relative: str) -> Path:
        """A file of this run by its path relative to the run folder; never escapes the folder."""
        folder = self.folder.resolve()
        path = (folder / relative).resolve()
        if folder not in path.parents and path != folder:
            raise ValueError(f"{relative!r} is outside the run folder")
        return path


class MetricPoint(models.Model):
    """One value of one named metric at one step (losses, learning rate, target mIoU...)."""

    # No index of its own on ``run``: the unique (run, step, name) index serves every lookup by run,
    # and the pages by step (``since``); (run, name, step) with the value serves one curve's range from
    # the index alone.
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="metric_points", db_index=False)
    step = models.PositiveIntegerField()
    name = models.CharField(max_length=64)
    value = models.FloatField()

    class Meta:
        ordering = ["step", "name"]
        constraints = [models.UniqueConstraint(fields=["run", "step", "name"], name="metric_unique_run_step_name")]
        indexes = [models.Index(fields=["run", "name", "step"], include=["value"], name="metric_run_name_step")]


class CurveBlock(models.Model):
    """One curve's summary over a block of ``steps`` consecutive steps (``block * steps`` onwards):
    how many points it holds and its lowest and highest point (value and step). Blocks of 16, 256,
    4,096 and 65,536 steps are kept up to date as points are stored (``curves.store_points``), so a
    curve is drawn from a few thousand blocks however many points it has."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="curve_blocks", db_index=False)
    name = models.CharField(max_length=64)
    steps = models.PositiveIntegerField()
    block = models.PositiveIntegerField()
    count = models.PositiveIntegerField()
    low_step = models.PositiveIntegerField()
    low_value = models.FloatField()
    high_step = models.PositiveIntegerField()
    high_value = models.FloatField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "name", "steps", "block"], name="curveblock_unique")]


class ClassIoU(models.Model):
    """IoU of one class at one evaluation (``iou`` is null when the class is absent)."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="class_ious")
    step = models.PositiveIntegerField()
    class_index = models.PositiveSmallIntegerField()
    class_name = models.CharField(max_length=64)
    iou = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["step", "class_index"]
        constraints = [
            models.UniqueConstraint(fields=["run", "step", "class_index"], name="classiou_unique_run_step_class")
        ]


class CheckpointKind(models.TextChoices):
    FULL = "full", "full training state"
    STUDENT = "student", "student only"


class Checkpoint(models.Model):
    """A checkpoint file in the run folder, with its size and sha256 (the download's ETag)."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="checkpoints")
    step = models.PositiveIntegerField()
    kind = models.CharField(max_length=16, choices=CheckpointKind.choices)
    path = models.CharField(max_length=500, help_text="relative to the run folder")
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-step", "kind"]
        constraints = [models.UniqueConstraint(fields=["run", "kind", "step"], name="checkpoint_unique_run_kind_step")]


class SampleRole(models.TextChoices):
    INPUT = "input", "input"
    GROUND_TRUTH = "ground_truth", "ground truth"
    STUDENT = "student", "adapted student"
    TEACHER = "teacher", "teacher"


class PredictionSample(models.Model):
    """One PNG of one sampled target image at one evaluation.

    The ground truth and the predictions (student, teacher) are palette PNGs whose pixel values are
    class ids (``UNLABELLED_ID`` where none) and whose palette is the class colours; the input is an RGB
    PNG. Input and ground truth do not change between evaluations and are stored once, at the first step.
    """

    UNLABELLED_ID = 255  # the pixel value of a class-id PNG where the pixel has no class

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="samples")
    step = models.PositiveIntegerField()
    image_name = models.CharField(max_length=200)
    role = models.CharField(max_length=16, choices=SampleRole.choices)
    path = models.CharField(max_length=500, help_text="relative to the run folder")
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()

    class Meta:
        ordering = ["step", "image_name", "role"]
        constraints = [
            models.UniqueConstraint(fields=["run", "step", "image_name", "role"], name="sample_unique_run_step_image_role")
        ]


class RunEvent(models.Model):
    """One line of a run's log: status changes, worker messages, the engine's status lines."""

    class Level(models.TextChoices):
        INFO = "info", "info"
        WARNING = "warning", "warning"
        ERROR = "error", "error"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events")
    created_at = models.DateTimeField(default=timezone.now)
    level = models.CharField(max_length=8, choices=Level.choices, default=Level.INFO)
    message = models.TextField()

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["run", "created_at"], name="event_run_created")]


class RunGroup(models.Model):
    """An adaptation run launched with its baselines: the source-only and light self-training runs with
    the same student, data, crop, iterations and seed (reused when a matching run already existed).

    ``lead`` is the launched run; ``source_only`` and ``self_training`` its baselines (``self_training``
    is the lead itself when the lead is a self-training run). A reused baseline may belong to several
    groups; ``Run.launch_group`` marks the runs a group's launch created (the runs list folds them)."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="run_groups")
    lead = models.OneToOneField(Run, on_delete=models.CASCADE, related_name="led_group")
    source_only = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    self_training = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def members(self) -> list[tuple[str, Run | None]]:
        """(role, run) from the weakest to the launched run: source-only, self-training, then the lead."""
        rows: list[tuple[str, Run | None]] = [("source_only", self.source_only)]
        if self.lead.method != "self_training":
            rows.append(("self_training", self.self_training))
        rows.append((self.lead.method, self.lead))
        return rows


class ExportStatus(models.TextChoices):
    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"


# Allowed export status moves: a worker claims a queued export, then records its result or its error.
EXPORT_TRANSITIONS: dict[str, frozenset[str]] = {
    ExportStatus.QUEUED: frozenset({ExportStatus.RUNNING, ExportStatus.FAILED}),
    ExportStatus.RUNNING: frozenset({ExportStatus.SUCCEEDED, ExportStatus.FAILED}),
    ExportStatus.SUCCEEDED: frozenset(),
    ExportStatus.FAILED: frozenset(),
}


class Export(models.Model):
    """A run's student packaged for shipping by a worker: float and int8 ONNX, their target mIoU and
    CPU speed, a model card. Its files live in ``exports/<id>/`` of the run folder, written whole
    before the row says succeeded."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="exports")
    status = models.CharField(max_length=16, choices=ExportStatus.choices, default=ExportStatus.QUEUED, db_index=True)
    checkpoint_step = models.PositiveIntegerField(null=True, blank=True, help_text="the student checkpoint's step")
    input_height = models.PositiveIntegerField(null=True, blank=True)
    input_width = models.PositiveIntegerField(null=True, blank=True)
    float_max_abs_diff = models.FloatField(null=True, blank=True, help_text="float ONNX vs PyTorch logits")
    float_argmax_agreement = models.FloatField(null=True, blank=True, help_text="float ONNX vs PyTorch, share of pixels")
    int8_argmax_agreement = models.FloatField(null=True, blank=True, help_text="int8 vs float ONNX, share of pixels")
    float_miou = models.FloatField(null=True, blank=True)
    int8_miou = models.FloatField(null=True, blank=True)
    per_class = models.JSONField(default=dict, blank=True, help_text="kind -> class name -> target IoU")
    speed = models.JSONField(default=list, blank=True, help_text="one entry per file kind and input size")
    card = models.JSONField(null=True, blank=True, help_text="the model card, as model_card.json holds it")
    worker_host = models.CharField(max_length=200, blank=True)
    error_message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(status__in=[s.value for s in ExportStatus]),
                                   name="export_status_valid"),
        ]

    def __str__(self) -> str:
        return f"export #{self.pk} of run {self.run_id} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in (ExportStatus.QUEUED, ExportStatus.RUNNING)

    def can_transition(self, to: str) -> bool:
        return to in EXPORT_TRANSITIONS[self.status]

    @property
    def folder(self) -> str:
        """The export's folder, relative to the run folder."""
        return f"exports/{self.pk}"


class ExportFileKind(models.TextChoices):
    FLOAT = "float", "float ONNX"
    INT8 = "int8", "int8 ONNX"
    TORCH_EXPORT = "torch_export", "torch.export program (.pt2)"
    CARD_MD = "card_md", "model card (Markdown)"
    CARD_JSON = "card_json", "model card (JSON)"


class ExportFile(models.Model):
    """One file of an export, with its size and sha256 (the download's ETag)."""

    export = models.ForeignKey(Export, on_delete=models.CASCADE, related_name="files")
    kind = models.CharField(max_length=16, choices=ExportFileKind.choices)
    name = models.CharField(max_length=200)
    path = models.CharField(max_length=500, help_text="relative to the run folder")
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)

    class Meta:
        ordering = ["export", "kind"]
        constraints = [models.UniqueConstraint(fields=["export", "kind"], name="exportfile_unique_export_kind")]
