"""Writes: every change to runs and their results goes through a function here.

``run_transition`` is the only function that changes a run's status; it enforces ``models.TRANSITIONS``
under a row lock. Launch-time validation is the engine's own (``config_from_dict`` + ``validate_config``)
so that the form, the API and the CLI accept and reject exactly the same configs. Messages to the
browser are sent only after the transaction commits (check, do, notify).
"""

from __future__ import annotations

import copy
import logging
import shutil
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from webapp.runs import catalog, confine, live, selectors
from webapp.runs.errors import ApplicationError
from webapp.runs.models import (
    FINISHED_STATUSES,
    Checkpoint,
    CheckpointKind,
    ClassIoU,
    MetricPoint,
    PredictionSample,
    Run,
    RunEvent,
    RunStatus,
    SampleRole,
)

log = logging.getLogger(__name__)

AUTO = "auto"  # LaunchSpec.baseline: pick the latest matching source-only run
MAX_TEACHERS = 8  # extra frozen teachers of one DUDA run


def heartbeat_interval_s() -> float:
    return float(getattr(settings, "RUN_HEARTBEAT_INTERVAL_S", 10))


def stale_after_s() -> float:
    return float(getattr(settings, "RUN_STALE_AFTER_S", 120))


def max_attempts() -> int:
    return int(getattr(settings, "RUN_MAX_ATTEMPTS", 3))


def requeue_after_s() -> float:
    return float(getattr(settings, "RUN_REQUEUE_AFTER_S", 120))


# ============================================================================================
# Launch: input -> engine config -> validated by the engine -> a queued run
# ============================================================================================

# Launch input fields that set one engine config field each.
FIELD_TO_CONFIG: dict[str, str] = {
    "method": "method",
    "seed": "seed",
    "student": "model.student",
    "auxiliary": "model.auxiliary",
    "iterations": "train.iterations",
    "crop_size": "train.crop_size",
    "batch_size": "train.batch_size",
    "eval_interval": "train.eval_interval",
    "checkpoint_interval": "train.checkpoint_interval",
    "log_interval": "train.log_interval",
    "num_samples": "train.num_samples",
    "max_val_images": "train.max_val_images",
    "num_workers": "train.num_workers",
    "device": "train.device",
    "lr": "optim.lr",
    "warmup_iters": "optim.warmup_iters",
}
CONFIG_TO_FIELD = {v: k for k, v in FIELD_TO_CONFIG.items()}
# The launch field ``weights``: where the chosen networks' encoders start (``model.*_pretrained``).
WEIGHTS_AUTO, WEIGHTS_IMAGENET, WEIGHTS_RANDOM = "auto", "imagenet", "random"
WEIGHTS_CHOICES: dict[str, str] = {
    WEIGHTS_AUTO: "ImageNet weights for each network whose preset has them, random for the others",
    WEIGHTS_IMAGENET: "ImageNet weights for every network (each preset must have them)",
    WEIGHTS_RANDOM: "random initialisation",
}
PRETRAINED_FIELDS = ("model.student_pretrained", "model.auxiliary_pretrained")
ADVANCED_FIELDS = (
    "eval_interval", "checkpoint_interval", "log_interval", "num_samples", "max_val_images", "num_workers",
    "device", "lr", "warmup_iters",
)  # fmt: skip


@dataclass
class LaunchSpec:
    """What the launch form and the API both produce. ``None`` keeps the base config's value."""

    method: str
    student: str
    benchmark: str = ""  # a bundled toy benchmark, or "" for a source/target pair
    source: str = ""  # dataset keys (catalog), for a pair
    target: str = ""
    name: str = ""
    auxiliary: str | None = None
    iterations: int | None = None
    crop_size: list[int] | None = None
    batch_size: int | None = None
    seed: int | None = None
    eval_interval: int | None = None
    checkpoint_interval: int | None = None
    log_interval: int | None = None
    num_samples: int | None = None
    max_val_images: int | None = None
    num_workers: int | None = None
    device: str | None = None
    lr: float | None = None
    warmup_iters: int | None = None
    weights: str = WEIGHTS_AUTO  # a key of WEIGHTS_CHOICES
    overrides: dict[str, Any] = field(default_factory=dict)  # dotted config key -> value
    baseline: int | str | None = AUTO  # run id, AUTO, or None (no baseline)
    teachers: list[int] = field(default_factory=list)  # DUDA: finished runs whose students teach too (frozen)
    precompute_teachers: bool = False  # DUDA: predict with those teachers once, before training


@dataclass
class BuiltConfig:
    config: dict[str, Any]
    source_key: str
    target_key: str
    benchmark: str


def _field_for_error(config_field: str, spec: LaunchSpec) -> str:
    """Which input field a ConfigError's dotted config field belongs to."""
    bare = config_field.split("[", 1)[0]
    if bare in spec.overrides or any(bare.startswith(k + ".") or k.startswith(bare + ".") for k in spec.overrides):
        return "overrides"
    if bare in CONFIG_TO_FIELD:
        return CONFIG_TO_FIELD[bare]
    if bare in PRETRAINED_FIELDS:
        return "weights"
    for side in ("source", "target"):
        if bare == side or bare.startswith(side + "."):
            return "benchmark" if spec.benchmark else side
    if bare == "name":
        return "name"
    if bare == "duda.frozen_teachers":
        return "teachers"
    if bare.startswith(("classes", "duda", "self_training", "eval", "optim", "train", "model")):
        return "overrides"
    return "__all__"


def _config_error(error, spec: LaunchSpec) -> ApplicationError:
    name = _field_for_error(error.field or "", spec)
    message = error.message if name != "overrides" or not error.field else f"{error.field}: {error.message}"
    return ApplicationError.invalid(str(error), fields={name: [message]})


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    """``data[a][b] = value`` for ``dotted == "a.b"``; a mapping is merged into the mapping already there,
    so an override of a section (``{"target": {"val_split": "test"}}``) changes only the keys it names."""
    node = data
    keys = dotted.split(".")
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    _merge(node, keys[-1], value)


def _merge(node: dict[str, Any], key: str, value: Any) -> None:
    if isinstance(value, dict) and isinstance(node.get(key), dict):
        for inner, item in value.items():
            _merge(node[key], inner, item)
    else:
        node[key] = value


def _pretrained_sources(weights: str, data: dict[str, Any]) -> dict[str, str]:
    """``model.*_pretrained`` for the launch's ``weights`` choice and the method and presets in ``data``
    (the base config with the launch fields): ``"imagenet"`` for each chosen network (the student, and
    DUDA's auxiliary) whose preset has ImageNet weights here, ``""`` (random) for the others. With
    ``imagenet`` every chosen network must have them; an unknown preset is left to the engine's check."""
    from duda_engine.config import ModelConfig

    if weights not in WEIGHTS_CHOICES:
        raise ApplicationError.invalid(
            "bad weights", fields={"weights": [f"must be one of {', '.join(WEIGHTS_CHOICES)}, not {weights!r}"]}
        )
    sources = {dotted: "" for dotted in PRETRAINED_FIELDS}
    if weights == WEIGHTS_RANDOM:
        return sources
    model = data.get("model") if isinstance(data.get("model"), dict) else {}
    networks = ("student", "auxiliary") if data.get("method") == "duda" else ("student",)
    chosen = {network: model.get(network, getattr(ModelConfig(), network)) for network in networks}
    presets = {p["name"]: p["imagenet_weights"] for p in catalog.presets()}
    lacking = [name for name in dict.fromkeys(chosen.values()) if isinstance(name, str) and presets.get(name) is False]
    if weights == WEIGHTS_IMAGENET and lacking:
        verb = "has" if len(lacking) == 1 else "have"
        with_weights = ", ".join(sorted(name for name, has in presets.items() if has)) or "none"
        raise ApplicationError.invalid(
            "no ImageNet weights",
            fields={"weights": [f"{', '.join(lacking)} {verb} no ImageNet weights on this server "
                                f"(presets with them: {with_weights})"]},
        )
    for network, name in chosen.items():
        if isinstance(name, str) and presets.get(name):
            sources[f"model.{network}_pretrained"] = catalog.IMAGENET_WEIGHTS
    return sources


def _teacher_runs(*, owner, spec: LaunchSpec) -> list[Run]:
    """The finished runs a DUDA launch names as extra, frozen teachers (their student checkpoints)."""
    if not spec.teachers:
        return []
    if spec.method != "duda":
        raise ApplicationError.invalid("bad teachers", fields={"teachers": ["extra teachers are for DUDA runs"]})
    if len(set(spec.teachers)) > MAX_TEACHERS:
        raise ApplicationError.invalid("bad teachers", fields={"teachers": [f"at most {MAX_TEACHERS} extra teachers"]})
    candidates = selectors.teacher_candidates(user=owner)
    runs = []
    for run_id in dict.fromkeys(spec.teachers):
        run = candidates.filter(pk=run_id).first()
        if run is None:
            raise ApplicationError.invalid(
                "bad teachers", fields={"teachers": [f"run {run_id} is not a succeeded run of yours with a student checkpoint"]}
            )
        runs.append(run)
    return runs


def _check_teacher_classes(config, teachers: list[Run]) -> None:
    """A frozen teacher must predict the classes of the run it teaches, in the same order."""
    from duda_engine.config import ConfigError, config_from_dict
    from duda_engine.validation import class_spec

    names = class_spec(config).names
    for run in teachers:
        try:
            theirs = class_spec(config_from_dict(run.config)).names
        except ConfigError as error:
            raise ApplicationError.invalid(
                "bad teachers", fields={"teachers": [f"run {run.pk}'s config cannot be read any more: {error}"]}
            ) from None
        if theirs != names:
            raise ApplicationError.invalid(
                "bad teachers",
                fields={"teachers": [f"run {run.pk} predicts {len(theirs)} other classes ({', '.join(theirs[:4])}, …), "
                                     f"not this run's {len(names)}"]},
            )


def build_engine_config(spec: LaunchSpec, teachers: list[Run] = ()) -> BuiltConfig:
    """The engine config of a launch, validated by the engine; ApplicationError with field errors.

    ``teachers``: finished runs whose student checkpoints become ``duda.frozen_teachers``. Paths in the
    overrides are decided by ``confine``: a user names data only by what the server offers.
    """
    from duda_engine.config import ConfigError, config_from_dict
    from duda_engine.validation import validate_config

    if spec.benchmark:
        try:
            base = catalog.benchmark_base_config(spec.benchmark)
        except KeyError:
            known = ", ".join(catalog.benchmark_names())
            raise ApplicationError.invalid(
                "unknown benchmark", fields={"benchmark": [f"unknown benchmark {spec.benchmark!r} (known: {known})"]}
            ) from None
        table = dict((b["key"], b) for b in catalog.toy_benchmarks())
        source_key, target_key = table[spec.benchmark]["source"], table[spec.benchmark]["target"]
    else:
        fields: dict[str, list[str]] = {}
        entries = {}
        for side in ("source", "target"):
            key = getattr(spec, side)
            if not key:
                fields[side] = [f"choose a {side} dataset, or a benchmark"]
                continue
            entry = catalog.dataset_by_key(key)
            if entry is None:
                fields[side] = [f"unknown dataset {key!r}"]
            elif not entry.ok and not entry.toy:
                fields[side] = [f"{entry.label} is not usable: {entry.reason}"]
            entries[side] = entry
        if fields:
            raise ApplicationError.invalid("the datasets are not valid", fields=fields)
        base = catalog.pair_base_config(entries["source"], entries["target"])
        source_key, target_key = spec.source, spec.target

    data: dict[str, Any] = {k: v for k, v in base.items()}
    for name, dotted in FIELD_TO_CONFIG.items():
        value = getattr(spec, name)
        if value is not None and value != "":
            _set(data, dotted, list(value) if isinstance(value, tuple) else value)
    for dotted, source in _pretrained_sources(spec.weights, data).items():  # before the overrides: they win
        _set(data, dotted, source)
    overridden: dict[str, Any] = {}  # what the overrides alone set, as a config tree
    for dotted, value in spec.overrides.items():
        if not isinstance(dotted, str) or not dotted.strip():
            raise ApplicationError.invalid("bad override", fields={"overrides": [f"{dotted!r} is not a config key"]})
        _set(data, dotted.strip(), copy.deepcopy(value))
        _set(overridden, dotted.strip(), copy.deepcopy(value))
    for dotted, value in confine.confined_paths(overridden).items():
        _set(data, dotted, value)
    if teachers:
        students = [run.folder / selectors.checkpoint_get(run=run, checkpoint=CheckpointKind.STUDENT).path for run in teachers]
        _set(data, "duda.frozen_teachers", [str(path) for path in students])
        _set(data, "duda.frozen_teachers_precompute", bool(spec.precompute_teachers))
    default_name = f"{spec.method} {spec.benchmark or f'{source_key} → {target_key}'}"
    data["name"] = (spec.name or "").strip() or default_name
    data["output_dir"] = str(Path(settings.RUNS_DIR) / "pending")

    try:
        config = config_from_dict(data)
        validate_config(config)
    except ConfigError as error:
        raise _config_error(error, spec) from None
    except Exception as error:  # noqa: BLE001 - an engine check that failed unexpectedly: still the input's fault
        log.warning("launch validation failed unexpectedly", exc_info=True)
        raise ApplicationError.invalid(f"the config cannot be validated: {type(error).__name__}: {error}") from None
    _check_teacher_classes(config, list(teachers))
    return BuiltConfig(config.to_dict(), source_key, target_key, spec.benchmark)


def _resolve_baseline(*, owner, spec: LaunchSpec, built: BuiltConfig) -> Run | None:
    if built.config["method"] == "source_only" or spec.baseline is None or spec.baseline == "":
        return None
    candidates = selectors.baseline_candidates(
        user=owner, target_dataset=built.target_key, student=built.config["model"]["student"]
    )
    if spec.baseline == AUTO:
        return candidates.first()
    try:
        wanted = int(spec.baseline)
    except (TypeError, ValueError):
        raise ApplicationError.invalid("bad baseline", fields={"baseline": ["must be a run id"]}) from None
    baseline = candidates.filter(pk=wanted).first()
    if baseline is None:
        raise ApplicationError.invalid(
            "bad baseline",
            fields={"baseline": [f"run {wanted} is not a succeeded source-only run of yours on {built.target_key} "
                                 f"with student {built.config['model']['student']}"]},
        )
    return baseline


def _prepare_folder(folder: Path) -> None:
    """A new run's folder must be empty: anything there (a reset database) is moved aside, not resumed."""
    if folder.exists():
        aside = folder.parent / ".orphaned" / f"{folder.name}-{int(time.time())}-{uuid.uuid4().hex[:6]}"
        aside.parent.mkdir(parents=True, exist_ok=True)
        folder.rename(aside)
        log.warning("moved a stale run folder %s aside to %s", folder, aside)
    folder.mkdir(parents=True)


def _enqueue(run_id: int, *, say_on_failure: bool = True) -> bool:
    """Send the run's task message. When the broker is down the run stays queued and the reaper sends
    it again (``run_reap_stale``); the task ignores any duplicate."""
    from workers.tasks import run_adaptation

    try:
        run_adaptation.delay(run_id)
        return True
    except Exception as error:  # noqa: BLE001 - the broker is down: say so on the run
        log.exception("could not enqueue run %s", run_id)
        if say_on_failure:
            run_event_add(run_id=run_id, level=RunEvent.Level.ERROR,
                          message=f"could not send the run to the queue ({error}); it is sent again every "
                                  f"{requeue_after_s():.0f} s until a worker takes it")
        return False


def run_create(*, owner, spec: LaunchSpec) -> Run:
    """Validate a launch with the engine, save the run as queued and enqueue it after commit."""
    built = build_engine_config(spec, _teacher_runs(owner=owner, spec=spec))
    baseline = _resolve_baseline(owner=owner, spec=spec, built=built)
    config = built.config
    with transaction.atomic():
        run = Run.objects.create(
            owner=owner,
            name=config["name"][:200],
            method=config["method"],
            benchmark=built.benchmark,
            source_dataset=built.source_key if config["method"] != "oracle" else "",
            target_dataset=built.target_key,
            student=config["model"]["student"],
            auxiliary=config["model"]["auxiliary"] if config["method"] == "duda" else "",
            config=config,
            baseline=baseline,
            total_steps=config["train"]["iterations"],
        )
        folder = Path(settings.RUNS_DIR) / str(run.pk)
        config["output_dir"] = str(folder)
        run.config = config
        run.output_dir = str(folder)
        run.save(update_fields=["config", "output_dir"])
        _prepare_folder(folder)
        RunEvent.objects.create(run=run, message=f"queued by {owner.get_username()}")
        run_id = run.pk
        transaction.on_commit(lambda: _enqueue(run_id))
    return run


# ============================================================================================
# Status: the one function that changes it, and the user actions built on it
# ============================================================================================


def _status_payload(run: Run) -> dict[str, Any]:
    return {
        "status": run.status,
        "step": run.step,
        "total_steps": run.total_steps,
        "cancel_requested": run.cancel_requested,
        "error_message": run.error_message,
        "best_miou": run.best_miou,
        "final_miou": run.final_miou,
        "worker_host": run.worker_host,
        "worker_gpu": run.worker_gpu,
        "attempts": run.attempts,
    }


def run_transition(*, run_id: int, to: str, message: str = "", level: str = RunEvent.Level.INFO, **changes: Any) -> Run:
    """Move a run to status ``to`` if ``models.TRANSITIONS`` allows it (ApplicationError 409 otherwise).

    ``changes`` are other fields saved in the same transaction. Timestamps, the claim token and the
    cancel flag follow the status; a log line is written; the browser is told after commit.
    """
    with transaction.atomic():
        run = Run.objects.select_for_update().filter(pk=run_id).first()
        if run is None:
            raise ApplicationError.not_found()
        if not run.can_transition(to):
            raise ApplicationError.conflict(f"a {run.status} run cannot become {to}")
        previous = run.status
        now = timezone.now()
        run.status = to
        if to == RunStatus.RUNNING:
            run.started_at = run.started_at or now
            run.finished_at = None
            run.heartbeat_at = now
        elif to == RunStatus.QUEUED:
            run.finished_at = None
            run.heartbeat_at = None
            run.claim_token = ""
        else:  # finished
            run.finished_at = now
            run.claim_token = ""
            run.cancel_requested = False
        for key, value in changes.items():
            setattr(run, key, value)
        run.save()
        event = RunEvent.objects.create(run=run, level=level, message=f"{previous} → {to}" + (f": {message}" if message else ""))
        payload = _status_payload(run)
        line = {"step": run.step, "time": event.created_at.isoformat(), "level": level, "message": event.message}

        def notify() -> None:
            live.publish(run_id, "status", payload)
            live.publish(run_id, "log", line)

        transaction.on_commit(notify)
    return run


def run_cancel(*, user, run_id: int) -> Run:
    """Cancel: a queued run at once; a running one stops within a few iterations with a checkpoint."""
    run = selectors.run_get(user=user, run_id=run_id)
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run.pk)
        if run.status == RunStatus.QUEUED:
            return run_transition(run_id=run.pk, to=RunStatus.CANCELLED, message=f"cancelled by {user.get_username()} before it started")
        if run.status != RunStatus.RUNNING:
            raise ApplicationError.conflict(f"the run has already {'finished' if run.status == 'succeeded' else run.status}")
        if not run.cancel_requested:
            run.cancel_requested = True
            run.save(update_fields=["cancel_requested", "updated_at"])
            RunEvent.objects.create(run=run, message=f"cancel requested by {user.get_username()}")
            payload = _status_payload(run)
            transaction.on_commit(lambda: live.publish(run.pk, "status", payload))
    return run


def run_resume(*, user, run_id: int) -> Run:
    """Queue a failed or cancelled run again (its worker resumes from the latest checkpoint), or send a
    queued run to the queue again (its message may have been lost; a worker ignores the second copy)."""
    run = selectors.run_get(user=user, run_id=run_id)
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run.pk)
        if run.status == RunStatus.QUEUED:
            run.save(update_fields=["updated_at"])  # the reaper's clock for queued runs starts again
            RunEvent.objects.create(run=run, message=f"sent to the queue again by {user.get_username()}")
        elif run.can_resume:
            run = run_transition(
                run_id=run.pk, to=RunStatus.QUEUED, message=f"resumed by {user.get_username()}",
                error_message="", attempts=0, cancel_requested=False,
            )
        else:
            raise ApplicationError.conflict(f"a {run.status} run cannot be resumed")
        run_pk = run.pk
        transaction.on_commit(lambda: _enqueue(run_pk))
    return run


def run_delete(*, user, run_id: int) -> None:
    """Delete a run that is not running, with its rows and its folder (checkpoints, samples)."""
    run = selectors.run_get(user=user, run_id=run_id)
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run.pk)
        if not run.can_delete:
            raise ApplicationError.conflict("the run is running: cancel it first")
        taught = selectors.runs_taught_by(run)
        if taught:
            names = ", ".join(f"#{other.pk}" for other in taught)
            raise ApplicationError.conflict(
                f"run {names} learns from this run's student as a frozen teacher: let it finish or delete it first"
            )
        folder = Path(run.output_dir) if run.output_dir else None
        run_pk = run.pk
        run.delete()
        if folder is not None and folder.name == str(run_pk):
            transaction.on_commit(lambda: shutil.rmtree(folder, ignore_errors=True))


def run_event_add(*, run_id: int, message: str, level: str = RunEvent.Level.INFO, token: str | None = None) -> None:
    """Add a line to a run's log. ``token``: a worker's line, written only while its claim holds the
    run (``ClaimLost`` otherwise); ``None``: the server's own line."""
    with transaction.atomic():
        if token is not None:
            _held(run_id=run_id, token=token)
        event = RunEvent.objects.create(run_id=run_id, message=message[:4000], level=level)
        step = Run.objects.filter(pk=run_id).values_list("step", flat=True).first()
    live.publish(run_id, "log", {"step": step, "time": event.created_at.isoformat(), "level": level, "message": event.message})


# ============================================================================================
# Worker side: claim, heartbeat, results, end
#
# Every write from a worker carries its claim token and is refused with ``ClaimLost`` (nothing
# written) unless that claim still holds the run: running, under this token. The check locks the
# run's row in the write's own transaction, so a requeue cannot slip between the check and the write.
# ============================================================================================


class ClaimLost(Exception):
    """A worker's claim no longer holds its run (requeued and maybe taken by another worker, finished,
    deleted): nothing was written, and the worker stops training the run."""

    def __init__(self, run_id: int):
        super().__init__(f"run {run_id} is no longer held by this worker")
        self.run_id = run_id


def _held(*, run_id: int, token: str) -> Run:
    """The run, its row locked until the transaction ends, if claim ``token`` holds it; ClaimLost otherwise."""
    run = Run.objects.select_for_update(no_key=True).filter(pk=run_id, status=RunStatus.RUNNING).first()
    if run is None or not token or run.claim_token != token:
        raise ClaimLost(run_id)
    return run


@dataclass
class Claim:
    run: Run
    token: str


def run_claim(*, run_id: int, worker_host: str, worker_gpu: str) -> Claim | None:
    """Take a run for this worker, atomically; ``None`` leaves the message alone.

    A queued run is claimed. A running run whose heartbeat is stale (its worker died and the message
    came back) is requeued, then claimed. A running run with a fresh heartbeat (a duplicate message:
    the reaper or a resume sent a queued run again) and a finished or deleted run are left alone. A
    queued run with a pending cancel is cancelled.
    """
    with transaction.atomic():
        run = Run.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.status in FINISHED_STATUSES:
            return None
        if run.status == RunStatus.RUNNING:
            age = run.heartbeat_age()
            if age is not None and age.total_seconds() < stale_after_s():
                return None
            run_transition(run_id=run_id, to=RunStatus.QUEUED, message="its worker stopped answering; taken over",
                           level=RunEvent.Level.WARNING)
        if run.cancel_requested:
            run_transition(run_id=run_id, to=RunStatus.CANCELLED, message="cancelled before it started")
            return None
        token = uuid.uuid4().hex
        run = run_transition(
            run_id=run_id, to=RunStatus.RUNNING, message=f"claimed by {worker_host} ({worker_gpu})",
            claim_token=token, worker_host=worker_host[:200], worker_gpu=worker_gpu[:200], attempts=run.attempts + 1,
            error_message="",
        )
    return Claim(run=run, token=token)


@dataclass
class HeartbeatState:
    owner: bool  # this worker still holds the run
    cancel_requested: bool


def run_heartbeat(*, run_id: int, token: str) -> HeartbeatState:
    """Beat the heartbeat of a run this worker holds; tells whether it still does and if cancel was asked."""
    updated = Run.objects.filter(pk=run_id, status=RunStatus.RUNNING, claim_token=token).exclude(claim_token="").update(
        heartbeat_at=timezone.now())
    if not updated:
        return HeartbeatState(owner=False, cancel_requested=False)
    cancel = Run.objects.filter(pk=run_id).values_list("cancel_requested", flat=True).first()
    return HeartbeatState(owner=True, cancel_requested=bool(cancel))


def run_claim_state(*, run_id: int, token: str) -> HeartbeatState:
    """Whether claim ``token`` still holds the run and whether a cancel was asked; reads only."""
    row = Run.objects.filter(pk=run_id).values_list("status", "claim_token", "cancel_requested").first()
    if row is None or row[0] != RunStatus.RUNNING or not token or row[1] != token:
        return HeartbeatState(owner=False, cancel_requested=False)
    return HeartbeatState(owner=True, cancel_requested=bool(row[2]))


def _check_held(*, run_id: int, token: str) -> None:
    """Before work that writes files: ClaimLost if the claim no longer holds the run (the rows are
    still checked under the lock when they are written)."""
    if not run_claim_state(run_id=run_id, token=token).owner:
        raise ClaimLost(run_id)


def run_progress(*, run_id: int, token: str, step: int, seconds_per_step: float | None) -> None:
    changes: dict[str, Any] = {"step": step}
    if seconds_per_step is not None:
        changes["seconds_per_step"] = seconds_per_step
    with transaction.atomic():
        _held(run_id=run_id, token=token)
        Run.objects.filter(pk=run_id, total_steps__gte=step).update(**changes)


def _store_points(run_id: int, points: list[tuple[int, str, float]]) -> int:
    rows = [MetricPoint(run_id=run_id, step=step, name=name[:64], value=float(value)) for step, name, value in points
            if value is not None and np.isfinite(value)]
    MetricPoint.objects.bulk_create(rows, ignore_conflicts=True, batch_size=1000)
    return len(rows)


def metrics_record(*, run_id: int, token: str, points: list[tuple[int, str, float]]) -> int:
    """Store metric points in one batch; a point already stored (run, step, name) is kept as it is."""
    with transaction.atomic():
        _held(run_id=run_id, token=token)
        return _store_points(run_id, points)


def evaluation_record(*, run_id: int, token: str, step: int, miou: float, per_class: dict[str, float],
                      pixel_accuracy: float) -> None:
    """Per-class IoU rows of one evaluation, and the run's best mIoU."""
    rows = [
        ClassIoU(run_id=run_id, step=step, class_index=index, class_name=name[:64],
                 iou=float(value) if value is not None and np.isfinite(value) else None)
        for index, (name, value) in enumerate(per_class.items())
    ]
    with transaction.atomic():
        run = _held(run_id=run_id, token=token)
        ClassIoU.objects.bulk_create(rows, ignore_conflicts=True)
        _store_points(run_id, [(step, "eval/miou", miou), (step, "eval/pixel_accuracy", pixel_accuracy)])
        if np.isfinite(miou) and (run.best_miou is None or miou > run.best_miou):
            run.best_miou = float(miou)
            run.save(update_fields=["best_miou", "updated_at"])


def _palette_png(rgb: np.ndarray, colours: list[list[int]]) -> Any:
    """A coloured prediction (palette colours) as a palette PNG whose pixel values are class ids."""
    from PIL import Image

    keys = np.array([(r << 16) | (g << 8) | b for r, g, b in colours], dtype=np.int64)
    order = np.argsort(keys)
    sorted_keys = keys[order]
    packed = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2].astype(np.int64)
    position = np.clip(np.searchsorted(sorted_keys, packed), 0, len(sorted_keys) - 1)
    ids = np.where(sorted_keys[position] == packed, order[position], 255).astype(np.uint8)
    image = Image.fromarray(ids, mode="P")
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[: len(colours)] = np.array(colours, dtype=np.uint8)
    image.putpalette(palette.flatten().tolist())
    return image


def run_class_colours(run: Run) -> list[list[int]]:
    classes = run.config.get("classes", {})
    if classes.get("preset", "cityscapes") == "custom":
        return [list(c) for c in classes.get("colours", [])]
    from duda_engine.data.classes import CITYSCAPES

    return [list(c) for c in CITYSCAPES.colours]


def samples_record(*, run_id: int, token: str, step: int, samples: list[tuple[str, dict[str, np.ndarray]]]) -> int:
    """Write the PNGs of one evaluation's samples into the run folder and add their rows.

    Input and ground truth are written once (the first evaluation); predictions every time.
    """
    from PIL import Image

    _check_held(run_id=run_id, token=token)
    run = Run.objects.get(pk=run_id)
    colours = run_class_colours(run)
    have_static = set(
        PredictionSample.objects.filter(run_id=run_id, role__in=[SampleRole.INPUT, SampleRole.GROUND_TRUTH])
        .values_list("image_name", "role")
    )
    folder = Path(run.output_dir) / "samples"
    rows = []
    for name, images in samples:
        stem = Path(name).stem.replace("/", "_")[:150]
        for role, array in images.items():
            if role not in SampleRole.values:
                continue
            static = role in (SampleRole.INPUT, SampleRole.GROUND_TRUTH)
            if static and (stem, role) in have_static:
                continue
            relative = f"samples/{role}/{stem}.png" if static else f"samples/step_{step:07d}/{stem}_{role}.png"
            path = Path(run.output_dir) / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            image = Image.fromarray(np.ascontiguousarray(array)) if role == SampleRole.INPUT else _palette_png(array, colours)
            tmp = path.with_name(f".{path.name}.tmp")
            image.save(tmp, format="PNG", optimize=False, compress_level=6)
            tmp.replace(path)
            height, width = array.shape[:2]
            rows.append(PredictionSample(run_id=run_id, step=step, image_name=stem, role=role, path=relative,
                                         width=width, height=height))
    folder.mkdir(parents=True, exist_ok=True)
    with transaction.atomic():
        _held(run_id=run_id, token=token)
        PredictionSample.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def checkpoint_record(*, run_id: int, token: str, step: int, path: Path, kind: str) -> Checkpoint:
    """Register a checkpoint file with its size and sha256; forget full checkpoints the engine pruned."""
    from duda_engine.checkpoint import sha256_file

    _check_held(run_id=run_id, token=token)
    run = Run.objects.get(pk=run_id)
    path = Path(path)
    folder = Path(run.output_dir).resolve()
    try:
        relative = str(path.resolve().relative_to(folder))
    except ValueError:
        relative = str(path)
    digest, size = sha256_file(path), path.stat().st_size
    with transaction.atomic():
        _held(run_id=run_id, token=token)
        checkpoint, _ = Checkpoint.objects.update_or_create(
            run_id=run_id, kind=kind, step=step, defaults={"path": relative, "size": size, "sha256": digest}
        )
        if kind == CheckpointKind.FULL:
            for old in Checkpoint.objects.filter(run_id=run_id, kind=CheckpointKind.FULL).exclude(pk=checkpoint.pk):
                if not (folder / old.path).is_file():
                    old.delete()
        if kind == CheckpointKind.STUDENT:
            Checkpoint.objects.filter(run_id=run_id, kind=CheckpointKind.STUDENT).exclude(pk=checkpoint.pk).delete()
    return checkpoint


def run_finish(*, run_id: int, token: str, steps: int, final_miou: float | None, best_miou: float | None,
               cancelled: bool, requeue: bool = False, reason: str = "") -> Run:
    """End a run this worker holds: succeeded, cancelled (with its last checkpoint) or requeued."""
    with transaction.atomic():
        run = _held(run_id=run_id, token=token)
        changes: dict[str, Any] = {"step": min(steps, run.total_steps)}
        if best_miou is not None and best_miou >= 0:
            changes["best_miou"] = best_miou
        if requeue:
            run = run_transition(run_id=run_id, to=RunStatus.QUEUED, message=reason or f"requeued at iteration {steps}",
                                 **changes)
            transaction.on_commit(lambda: _enqueue(run_id))
            return run
        if cancelled:
            return run_transition(run_id=run_id, to=RunStatus.CANCELLED,
                                  message=f"stopped at iteration {steps} with a checkpoint", **changes)
        if final_miou is not None:
            changes["final_miou"] = final_miou
        return run_transition(run_id=run_id, to=RunStatus.SUCCEEDED,
                              message=f"finished {steps} iterations" + (f", target mIoU {final_miou:.2f}" if final_miou is not None else ""),
                              **changes)


def run_fail(*, run_id: int, token: str, message: str) -> Run:
    """End a run this worker holds as failed, with the error."""
    with transaction.atomic():
        _held(run_id=run_id, token=token)
        return run_transition(run_id=run_id, to=RunStatus.FAILED, message=message, level=RunEvent.Level.ERROR,
                              error_message=message[:10000])


# ============================================================================================
# The reaper: runs whose worker died, runs whose message never reached a worker
# ============================================================================================


def run_reap_stale(*, now=None) -> list[tuple[int, str]]:
    """One pass of the reaper: requeue (or, after ``RUN_MAX_ATTEMPTS`` claims, fail) every running run
    with a stale heartbeat, and send every run left queued for ``RUN_REQUEUE_AFTER_S`` again.

    The broker would only redeliver a dead worker's message after its visibility timeout, and a queued
    run's message may never have reached the broker (it was down) or been lost with it; so a fresh
    message is sent, and the task's claim ignores whichever copy comes second.
    """
    now = now or timezone.now()
    actions = _requeue_stale_running(now) + _resend_queued(now)
    for run_id, action in actions:
        log.warning("reaper: run %s %s", run_id, action)
    return actions


def _requeue_stale_running(now) -> list[tuple[int, str]]:
    cutoff = now - timedelta(seconds=stale_after_s())
    stale = Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
    actions: list[tuple[int, str]] = []
    for run_id in Run.objects.filter(stale, status=RunStatus.RUNNING).values_list("pk", flat=True):
        try:
            with transaction.atomic():
                run = Run.objects.select_for_update(skip_locked=True).filter(pk=run_id, status=RunStatus.RUNNING).first()
                if run is None:
                    continue
                age = run.heartbeat_age(now)
                if age is not None and age.total_seconds() < stale_after_s():
                    continue
                seen = f"{age.total_seconds():.0f} s ago" if age is not None else "never"
                where = run.worker_host or "its worker"
                if run.attempts >= max_attempts():
                    message = (f"{where} stopped answering (last heartbeat {seen}); "
                               f"gave up after {run.attempts} attempts")
                    run_transition(run_id=run_id, to=RunStatus.FAILED, message=message, level=RunEvent.Level.ERROR,
                                   error_message=message)
                    actions.append((run_id, "failed"))
                else:
                    run_transition(run_id=run_id, to=RunStatus.QUEUED, level=RunEvent.Level.WARNING,
                                   message=f"{where} stopped answering (last heartbeat {seen}); requeued to resume "
                                           f"from its latest checkpoint (attempt {run.attempts + 1} of {max_attempts()})")
                    transaction.on_commit(lambda rid=run_id: _enqueue(rid))
                    actions.append((run_id, "requeued"))
        except IntegrityError:
            log.exception("could not reap run %s", run_id)
    return actions


def _resend_queued(now) -> list[tuple[int, str]]:
    """Send runs queued (or last sent) more than ``RUN_REQUEUE_AFTER_S`` ago to the queue again.

    A run waiting behind busy workers gets one duplicate message per period; each is a no-op once the
    run is claimed. ``updated_at`` is the period's clock: the conditional update lets one reaper
    pass, and no concurrent one, send it.
    """
    cutoff = now - timedelta(seconds=requeue_after_s())
    actions: list[tuple[int, str]] = []
    for run_id in Run.objects.filter(status=RunStatus.QUEUED, updated_at__lt=cutoff).values_list("pk", flat=True):
        with transaction.atomic():
            if not Run.objects.filter(pk=run_id, status=RunStatus.QUEUED, updated_at__lt=cutoff).update(updated_at=now):
                continue
            transaction.on_commit(lambda rid=run_id: _enqueue(rid, say_on_failure=False))
        actions.append((run_id, "resent"))
    return actions
