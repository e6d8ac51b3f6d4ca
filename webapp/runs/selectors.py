"""Reads: what a user may see, and the shapes the pages and the API draw from.

Visibility is one rule, applied everywhere (pages, API, checkpoint downloads, sockets): a user sees
their own runs, staff see all; anything else is "not found", never "forbidden".
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from django.core.cache import caches
from django.db.models import Q, QuerySet

from webapp.runs import curves, inputs
from webapp.runs.class_lists import config_palette
from webapp.runs.errors import ApplicationError
from webapp.runs.models import (
    Checkpoint,
    CheckpointKind,
    ClassIoU,
    Export,
    ExportFile,
    ExportStatus,
    MetricPoint,
    PredictionSample,
    Run,
    RunEvent,
    RunGroup,
    RunStatus,
    SampleRole,
)

METRIC_PAGE_LIMIT = 50000


def runs_visible_to(user) -> QuerySet[Run]:
    if not getattr(user, "is_authenticated", False):
        return Run.objects.none()
    if user.is_staff:
        return Run.objects.all()
    return Run.objects.filter(owner=user)


def run_is_visible(*, user, run_id: int) -> bool:
    return runs_visible_to(user).filter(pk=run_id).exists()


def run_get(*, user, run_id) -> Run:
    if not isinstance(run_id, int):
        run_id = inputs.positive_int(str(run_id))
    if run_id is None or not 1 <= run_id <= inputs.MAX_ID:
        raise ApplicationError.not_found()
    run = runs_visible_to(user).select_related("owner", "baseline").filter(pk=run_id).first()
    if run is None:
        raise ApplicationError.not_found()
    return run


def run_list(*, user, status: str = "", method: str = "", query: str = "", target: str = "", benchmark: str = "",
             student: str = "") -> QuerySet[Run]:
    runs = runs_visible_to(user).select_related(
        "owner", "baseline", "led_group__source_only", "led_group__self_training", "launch_group",
    ).defer(  # the list never shows a config
        "config", "baseline__config", "led_group__source_only__config", "led_group__self_training__config")
    if status:
        runs = runs.filter(status__in=[s for s in status.split(",") if s])
    if method:
        runs = runs.filter(method__in=[m for m in method.split(",") if m])
    if target:
        runs = runs.filter(target_dataset=target)
    if benchmark:
        runs = runs.filter(benchmark=benchmark)
    if student:
        runs = runs.filter(student=student)
    if query.strip():
        runs = runs.filter(run_search(query))
    return runs


def run_page(runs: QuerySet[Run], *, offset: int, limit: int) -> list[Run]:
    """One page of ``runs`` in their order: the page's ids first, from the runs table alone (an index
    walk past ``offset``), then those rows with their joins, so a deep page does not join every run
    it skips."""
    ids = list(runs.values_list("pk", flat=True)[offset:offset + limit])
    found = {run.pk: run for run in runs.filter(pk__in=ids)}
    return [found[run_id] for run_id in ids if run_id in found]


def run_search(query: str) -> Q:
    """What the runs' search box matches: "#4" is run 4 only; other text matches a part of the name,
    the source or target dataset or the benchmark (any case), and digits also the id ("4" finds run 4
    and "toy_gta2real" for "2"). Leading and trailing spaces are ignored."""
    text = query.strip()
    if text.startswith("#"):  # "#4": that run only
        run_id = inputs.positive_int(text[1:].strip())
        return Q(pk=run_id) if run_id is not None else Q(pk__in=[])
    q = (Q(name__icontains=text) | Q(source_dataset__icontains=text) | Q(target_dataset__icontains=text)
         | Q(benchmark__icontains=text))
    run_id = inputs.positive_int(text)
    if run_id is not None:
        q |= Q(pk=run_id)
    return q


def baseline_candidates(*, user, target_dataset: str, student: str, classes_digest: str | None = None) -> QuerySet[Run]:
    """Succeeded source-only runs of this user on the same target with the same student (and, given a
    ``classes_digest``, the same class list), newest first."""
    runs = runs_visible_to(user).filter(
        method="source_only", status=RunStatus.SUCCEEDED, target_dataset=target_dataset, student=student)
    if classes_digest is not None:
        runs = runs.filter(classes_digest=classes_digest)
    return runs.order_by("-finished_at", "-id")


def baseline_of(run: Run) -> Run | None:
    """The source-only run a run is compared with: the one named at launch, or, for ``auto``, the
    latest succeeded matching one of its owner (same target, student and classes), found now, so that
    a baseline finishing after the launch is the one shown."""
    if not run.baseline_auto:
        return run.baseline if run.baseline_id else None
    if run.method == "source_only":
        return None
    return baseline_candidates(user=run.owner, target_dataset=run.target_dataset, student=run.student,
                               classes_digest=run.classes_digest).exclude(pk=run.pk).defer("config").first()


def auto_baseline_ids(runs: list[Run]) -> dict[int, int | None]:
    """``baseline_of(run).pk`` for a page of runs, in one query: for each ``auto`` run, the newest
    succeeded source-only run of its owner with its target, student and classes."""
    wanted = {run.pk: (run.owner_id, run.target_dataset, run.student, run.classes_digest)
              for run in runs if run.baseline_auto and run.method != "source_only"}
    found: dict[int, int | None] = {run.pk: None for run in runs if run.baseline_auto}
    if not wanted:
        return found
    keys = set(wanted.values())
    candidates = Run.objects.filter(
        method="source_only", status=RunStatus.SUCCEEDED, owner_id__in={k[0] for k in keys},
        target_dataset__in={k[1] for k in keys}, student__in={k[2] for k in keys},
        classes_digest__in={k[3] for k in keys},
    ).order_by("-finished_at", "-id").values_list("pk", "owner_id", "target_dataset", "student", "classes_digest")
    newest: dict[tuple, list[int]] = {}
    for pk, *key in candidates:
        newest.setdefault(tuple(key), []).append(pk)
    for run_id, key in wanted.items():
        found[run_id] = next((pk for pk in newest.get(key, []) if pk != run_id), None)
    return found


def teacher_candidates(*, user) -> QuerySet[Run]:
    """Succeeded runs of this user with a student checkpoint: what a DUDA run may take as extra,
    frozen teachers. Newest first. Not oracle runs: their students learnt the target's labels, which
    an unsupervised run must not see."""
    return (
        runs_visible_to(user)
        .filter(status=RunStatus.SUCCEEDED, checkpoints__kind=CheckpointKind.STUDENT)
        .exclude(method="oracle")
        .distinct()
        .order_by("-finished_at", "-id")
    )


def teachers_of(run: Run) -> list[tuple[str, Run | None]]:
    """The frozen teachers a run names: each checkpoint path in its config with its teacher run
    (``Run.teachers``; None when that run is gone)."""
    paths = (run.config or {}).get("duda", {}).get("frozen_teachers") or []
    by_folder = {teacher.output_dir: teacher for teacher in run.teachers.all()}
    return [(path, by_folder.get(str(Path(path).parent))) for path in paths]


def runs_taught_by(run: Run) -> list[Run]:
    """Runs not succeeded yet (queued, running, or failed or cancelled and so resumable) that read
    this run's student checkpoint as a frozen teacher."""
    return list(run.taught_runs.exclude(status=RunStatus.SUCCEEDED).exclude(pk=run.pk).order_by("pk"))


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


def metric_page(*, run: Run, since: int | None = None, end: int | None = None, names: list[str] | None = None,
                limit: int = METRIC_PAGE_LIMIT) -> dict[str, Any]:
    """Every point with ``since < step <= end``, in columns per name, at most ``limit`` of them.

    A page ends on a whole step: when more points follow, ``next`` is the step to pass as ``since`` for
    the next page (a cursor by step); ``None`` when this page holds the rest.
    """
    points = MetricPoint.objects.filter(run=run)
    if since is not None:
        points = points.filter(step__gt=since)
    if end is not None:
        points = points.filter(step__lte=end)
    if names:
        points = points.filter(name__in=names)
    rows = list(points.order_by("step", "name").values_list("step", "name", "value")[: limit + 1])
    next_since = None
    if len(rows) > limit:
        cut_step = rows[limit][0]  # the first step that does not fit whole
        kept = [row for row in rows[:limit] if row[0] < cut_step]
        if not kept:  # one step holds more names than the limit: serve it whole rather than loop
            kept = [row for row in rows if row[0] == cut_step]
        rows = kept
        next_since = rows[-1][0]
    series: dict[str, dict[str, list]] = {}
    for step, name, value in rows:
        column = series.get(name)
        if column is None:
            column = series[name] = {"step": [], "value": [], "downsampled": False}
        column["step"].append(step)
        column["value"].append(value)
    return {"series": series, "last_step": rows[-1][0] if rows else since, "next": next_since}


def metric_curves(*, run: Run, width: int, start: int | None = None, end: int | None = None,
                  names: list[str] | None = None) -> dict[str, Any]:
    """``curves.drawn_curves``; a finished run's are kept in the ``curves`` cache (its points no longer
    change: the key holds its status, last step and finish time, which a resumed run changes)."""
    if not run.is_finished:
        return curves.drawn_curves(run_id=run.pk, width=width, start=start, end=end, names=names)
    key = "curves:" + hashlib.sha256(json.dumps(
        [run.pk, run.status, run.step, run.finished_at.isoformat() if run.finished_at else None,
         width, start, end, names]).encode()).hexdigest()
    found = caches["curves"].get(key)
    if found is None:
        found = curves.drawn_curves(run_id=run.pk, width=width, start=start, end=end, names=names)
        caches["curves"].set(key, found)
    return found


def _clean(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def class_palette(run: Run) -> list[dict[str, Any]]:
    """The run's classes: index, name and RGB colour (what the gallery's legend and masks use)."""
    return config_palette(run.config)




def _ious_by_step(run: Run) -> dict[int, dict[int, float | None]]:
    table: dict[int, dict[int, float | None]] = {}
    for step, index, iou in ClassIoU.objects.filter(run=run).values_list("step", "class_index", "iou"):
        table.setdefault(step, {})[index] = _clean(iou)
    return table


def class_iou_table(*, run: Run) -> dict[str, Any]:
    """Per-class IoU at every evaluation, and the source-only baseline's last evaluation beside it.

    ``delta`` is the change of the latest evaluation against the baseline, per class (None where
    either side has no value).
    """
    table = _ious_by_step(run)
    steps = sorted(table)
    classes = class_palette(run)
    latest = table[steps[-1]] if steps else {}
    baseline = None
    base_run = baseline_of(run)
    if base_run is not None:
        base_table = _ious_by_step(base_run)
        if base_table:
            base_step = max(base_table)
            baseline = {
                "run_id": base_run.pk,
                "name": base_run.name,
                "step": base_step,
                "miou": base_run.final_miou,
                "ious": [base_table[base_step].get(c["index"]) for c in classes],
            }
    delta = None
    if baseline and steps:
        delta = [
            (latest.get(c["index"]) - b) if latest.get(c["index"]) is not None and b is not None else None
            for c, b in zip(classes, baseline["ious"], strict=True)
        ]
    return {
        "classes": classes,
        "steps": steps,
        "ious": {str(step): [table[step].get(c["index"]) for c in classes] for step in steps},
        "baseline": baseline,
        "delta": delta,
    }


def sample_url(run_id: int, sample_id: int) -> str:
    return f"/api/runs/{run_id}/samples/{sample_id}/image/"


def samples_index(*, run: Run) -> dict[str, Any]:
    """The gallery's data: per sampled image its input and ground truth, per evaluation step the
    predictions by role, and the source-only baseline's latest student predictions of the same images.

    Ground truth and predictions are URLs of class-id PNGs: pixel value = index in ``classes``, and
    ``unlabelled_id`` where a pixel has no class."""
    rows = list(PredictionSample.objects.filter(run=run).values("id", "step", "image_name", "role", "width", "height"))
    images: dict[str, dict[str, Any]] = {}
    steps: dict[int, dict[str, dict[str, str]]] = {}
    for row in rows:
        entry = images.setdefault(row["image_name"], {"name": row["image_name"], "width": row["width"], "height": row["height"]})
        url = sample_url(run.pk, row["id"])
        if row["role"] in (SampleRole.INPUT, SampleRole.GROUND_TRUTH):
            entry[row["role"]] = url
        else:
            steps.setdefault(row["step"], {}).setdefault(row["image_name"], {})[row["role"]] = url
    baseline = None
    base_run = baseline_of(run)
    if base_run is not None:
        base_rows = PredictionSample.objects.filter(run_id=base_run.pk, role=SampleRole.STUDENT)
        base_step = base_rows.order_by("-step").values_list("step", flat=True).first()
        if base_step is not None:
            baseline = {
                "run_id": base_run.pk,
                "name": base_run.name,
                "step": base_step,
                "predictions": {
                    name: sample_url(base_run.pk, sample_id)
                    for sample_id, name in base_rows.filter(step=base_step).values_list("id", "image_name")
                },
            }
    ious = _ious_by_step(run)
    return {
        "run_id": run.pk,
        "classes": class_palette(run),
        "unlabelled_id": PredictionSample.UNLABELLED_ID,
        "images": sorted(images.values(), key=lambda e: e["name"]),
        "steps": [
            {"step": step, "predictions": steps[step], "miou": _step_miou(ious.get(step))}
            for step in sorted(steps)
        ],
        "baseline": baseline,
    }


def _step_miou(ious: dict[int, float | None] | None) -> float | None:
    if not ious:
        return None
    values = [v for v in ious.values() if v is not None]
    return sum(values) / len(values) if values else None


def sample_get(*, run: Run, sample_id: int) -> PredictionSample:
    """A sample image of ``run``, or of the run's baseline (the gallery shows its predictions)."""
    base_run = baseline_of(run)
    allowed = [run.pk] + ([base_run.pk] if base_run is not None else [])
    sample = PredictionSample.objects.filter(pk=sample_id, run_id__in=allowed).select_related("run").first()
    if sample is None:
        raise ApplicationError.not_found("sample")
    return sample


def checkpoints_of(*, run: Run) -> QuerySet[Checkpoint]:
    return Checkpoint.objects.filter(run=run).order_by("kind", "-step")


def checkpoint_get(*, run: Run, checkpoint: str) -> Checkpoint:
    """A checkpoint by id, or ``student`` / ``full`` for the run's latest of that kind."""
    rows = Checkpoint.objects.filter(run=run)
    if checkpoint in (CheckpointKind.STUDENT, CheckpointKind.FULL):
        found = rows.filter(kind=checkpoint).order_by("-step").first()
    elif (checkpoint_id := inputs.positive_int(str(checkpoint))) is not None:
        found = rows.filter(pk=checkpoint_id).first()
    else:
        found = None
    if found is None:
        raise ApplicationError.not_found("checkpoint")
    return found


def events_tail(*, run: Run, limit: int = 200) -> list[RunEvent]:
    events = list(RunEvent.objects.filter(run=run).order_by("-created_at", "-id")[:limit])
    events.reverse()
    return events


def compare_data(*, user, run_ids: list[int], names: list[str], width: int, start: int | None = None,
                 end: int | None = None) -> dict[str, Any]:
    """The curves ``names`` of several runs, each drawn on ``width`` pixels (``metric_curves``), the
    latest per-class IoU of each run, and the metric names each run has (for the page's choice)."""
    runs = list(runs_visible_to(user).filter(pk__in=run_ids))
    order = {rid: i for i, rid in enumerate(run_ids)}
    runs.sort(key=lambda r: order.get(r.pk, 0))
    out = []
    classes = class_palette(runs[0]) if runs else []
    for run in runs:
        table = _ious_by_step(run)
        last = max(table) if table else None
        # Per-class IoU is paired by class only between runs with the same class list as the first run.
        same_classes = run.classes_digest == runs[0].classes_digest
        out.append(
            {
                "id": run.pk,
                "name": run.name,
                "method": run.method,
                "status": run.status,
                "student": run.student,
                "target_dataset": run.target_dataset,
                "best_miou": run.best_miou,
                "final_miou": run.final_miou,
                "metrics": metric_curves(run=run, width=width, names=names, start=start, end=end)["series"]
                if names else {},
                "metric_names": curves.metric_names(run.pk),
                "class_iou_step": last,
                "same_classes": same_classes,
                "class_iou": [table[last].get(c["index"]) for c in classes] if last is not None and same_classes else None,
            }
        )
    return {"runs": out, "classes": classes}


# --------------------------------------------------------------------------------------------
# Groups (a run launched with its baselines) and exports
# --------------------------------------------------------------------------------------------


def group_of(run: Run) -> RunGroup | None:
    """The group a run leads, or else the group whose launch created it (``run_list`` selects both)."""
    try:
        return run.led_group
    except RunGroup.DoesNotExist:
        return run.launch_group if run.launch_group_id else None


def latest_class_ious(run: Run) -> tuple[int | None, dict[int, float | None]]:
    """The step of a run's latest evaluation and its IoU by class index."""
    table = _ious_by_step(run)
    if not table:
        return None, {}
    step = max(table)
    return step, table[step]


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def group_table(group: RunGroup) -> dict[str, Any]:
    """The group side by side, from source-only to the launched run: each run's target mIoU (its final
    evaluation) and latest per-class IoU, what adaptation bought over source-only and, for a DUDA run,
    what DUDA bought over light self-training."""
    classes = class_palette(group.lead)
    rows = []
    for role, run in group.members():
        if run is None:
            rows.append({"role": role, "run": None})
            continue
        step, ious = latest_class_ious(run)
        rows.append({
            "role": role,
            "run": {"id": run.pk, "name": run.name, "method": run.method, "status": run.status, "step": run.step,
                    "total_steps": run.total_steps, "final_miou": run.final_miou, "page": f"/runs/{run.pk}/",
                    "reused": run.launch_group_id != group.pk},
            "iou_step": step,
            "ious": [ious.get(c["index"]) for c in classes],
        })
    miou = {row["role"]: row["run"]["final_miou"] if row["run"] else None for row in rows}
    lead = group.lead
    gains = {"adaptation": _difference(miou.get(lead.method), miou.get("source_only"))}
    if lead.method != "self_training":
        gains["over_self_training"] = _difference(miou.get(lead.method), miou.get("self_training"))
    return {"id": group.pk, "lead": lead.pk, "classes": classes, "rows": rows, "gains": gains,
            "done": all(row["run"] is None or row["run"]["status"] in ("succeeded", "failed", "cancelled") for row in rows)}


def group_summary(group: RunGroup) -> dict[str, Any]:
    """What the runs list shows of a group: its runs by role."""
    return {"id": group.pk, "lead": group.lead_id, "runs": [
        {"role": role, "id": run.pk, "name": run.name, "method": run.method, "status": run.status,
         "final_miou": run.final_miou, "student": run.student, "target_dataset": run.target_dataset}
        for role, run in group.members() if run is not None and run.pk != group.lead_id]}


def export_baselines(run: Run) -> dict[str, dict[str, Any]]:
    """The numbers the model card puts beside an export: the run's baselines' target mIoU and IoU per class."""
    group = group_of(run)
    if group is not None and group.lead_id == run.pk:
        others = [(role, member) for role, member in group.members() if member is not None and member.pk != run.pk]
    else:
        baseline = baseline_of(run)
        others = [("source_only", baseline)] if baseline is not None else []
    found = {}
    for role, other in others:
        _, ious = latest_class_ious(other)
        found[f"{role} (run {other.pk})"] = {
            "miou": other.final_miou,
            "per_class": {c["name"]: ious.get(c["index"]) for c in class_palette(other)},
        }
    return found


def exports_of(*, run: Run) -> QuerySet[Export]:
    return Export.objects.filter(run=run).prefetch_related("files").order_by("-created_at", "-id")


def export_get(*, run: Run, export_id) -> Export:
    export_id = export_id if isinstance(export_id, int) else inputs.positive_int(str(export_id))
    export = None if export_id is None else exports_of(run=run).filter(pk=export_id).first()
    if export is None:
        raise ApplicationError.not_found("export")
    return export


def export_file_get(*, export: Export, kind: str) -> ExportFile:
    found = export.files.filter(kind=kind).first() if export.status == ExportStatus.SUCCEEDED else None
    if found is None:
        raise ApplicationError.not_found("export file")
    return found
