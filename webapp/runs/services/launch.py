"""Launch: input -> engine config -> validated by the engine -> a queued run.

Launch-time validation is the engine's own (``config_from_dict`` + ``validate_config``) so that the
form, the API and the CLI accept and reject exactly the same configs.
"""

from __future__ import annotations

import copy
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from webapp.runs import catalog, confine, recipes, selectors
from webapp.runs.class_lists import classes_digest
from webapp.runs.errors import ApplicationError
from webapp.runs.launch_schema import (
    AUTO,
    CONFIG_TO_FIELD,
    FIELD_TO_CONFIG,
    MAX_TEACHERS,
    WEIGHTS_CHOICES,
    WEIGHTS_IMAGENET,
    WEIGHTS_RANDOM,
    LaunchSpec,
    data_errors,
)
from webapp.runs.models import CheckpointKind, Run, RunEvent
from webapp.runs.services.lifecycle import run_enqueue

log = logging.getLogger(__name__)

PRETRAINED_FIELDS = ("model.student_pretrained", "model.auxiliary_pretrained")


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


MAX_OVERRIDE_ERRORS = 20  # bad overrides reported at once


def _override_of(config_field: str, overrides: dict[str, Any]) -> str | None:
    """The override a ConfigError's dotted field comes from, or None."""
    bare = config_field.split("[", 1)[0]
    if not bare:
        return None
    for key in overrides:
        if bare == key or bare.startswith(key + ".") or key.startswith(bare + "."):
            return key
    return None


def _confined_overrides(overrides: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The overrides whose keys and paths ``confine`` allows (stripped keys), and a message per other one."""
    kept: dict[str, Any] = {}
    errors: list[str] = []
    for dotted, value in overrides.items():
        if not isinstance(dotted, str) or not dotted.strip():
            errors.append(f"{dotted!r} is not a config key")
            continue
        tree: dict[str, Any] = {}
        _set(tree, dotted.strip(), copy.deepcopy(value))
        try:
            confine.confined_paths(tree)
        except ApplicationError as error:
            errors.extend(error.fields.get("overrides") or [error.message])
            continue
        kept[dotted.strip()] = value
    return kept, errors


def _overridden(base: dict[str, Any], overrides: dict[str, Any], fixed: dict[str, Any]) -> dict[str, Any]:
    """``base`` with the overrides applied (their paths as ``confine`` resolves them), then ``fixed``."""
    data = copy.deepcopy(base)
    tree: dict[str, Any] = {}  # what the overrides alone set, as a config tree
    for dotted, value in overrides.items():
        _set(data, dotted, copy.deepcopy(value))
        _set(tree, dotted, copy.deepcopy(value))
    for dotted, value in {**confine.confined_paths(tree), **fixed}.items():
        _set(data, dotted, copy.deepcopy(value))
    return data


def _validated_config(base: dict[str, Any], spec: LaunchSpec, fixed: dict[str, Any]):
    """The engine's config of ``base`` with the launch's overrides and ``fixed``, validated by the engine.

    Every bad override is reported, not only the first (up to ``MAX_OVERRIDE_ERRORS``): an engine error
    that names an override's key drops that override and validates again; one that names none is
    reported alone when no override was bad (else it may be a consequence of a dropped one)."""
    from duda_engine.config import ConfigError
    from duda_engine.config_loading import config_from_dict
    from duda_engine.validation import validate_config

    kept, errors = _confined_overrides(spec.overrides)
    config = None
    while len(errors) < MAX_OVERRIDE_ERRORS:
        try:
            config = config_from_dict(_overridden(base, kept, fixed))
            validate_config(config)
            break
        except ConfigError as error:
            key = _override_of(error.field or "", kept)
            if key is None:
                if errors:
                    break
                raise _config_error(error, spec) from None
            errors.append(f"{error.field}: {error.message}")
            del kept[key]
        except Exception as error:  # noqa: BLE001 - an engine check that failed unexpectedly: still the input's fault
            log.warning("launch validation failed unexpectedly", exc_info=True)
            raise ApplicationError.invalid(f"the config cannot be validated: {type(error).__name__}: {error}") from None
    if errors:
        summary = errors[0] if len(errors) == 1 else f"{len(errors)} bad overrides"
        raise ApplicationError.invalid(summary, fields={"overrides": errors})
    return config


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
    from duda_engine.config import ConfigError
    from duda_engine.config_loading import config_from_dict
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


def _classes_differ(source, target) -> str:
    def listed(entry) -> str:
        names = entry.class_names
        return f"{len(names)} classes ({', '.join(names[:4])}{', …' if len(names) > 4 else ''})"

    return (f"{target.label} has {listed(target)} but {source.label} has {listed(source)}: "
            "a run pairs datasets with the same class list")


def build_engine_config(spec: LaunchSpec, teachers: list[Run] = ()) -> BuiltConfig:
    """The engine config of a launch, validated by the engine; ApplicationError with field errors.

    ``teachers``: finished runs whose student checkpoints become ``duda.frozen_teachers``. Paths in the
    overrides are decided by ``confine``: a user names data only by what the server offers.
    """
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
        fields = data_errors(benchmark=spec.benchmark, source=spec.source, target=spec.target)
        entries = {}
        for side in ("source", "target"):
            key = getattr(spec, side)
            if side in fields:
                continue
            entry = catalog.dataset_by_key(key, wait=catalog.LAUNCH_WAIT_S)
            if entry is None:
                fields[side] = [f"unknown dataset {key!r}"]
            elif not entry.ok and not entry.toy:
                fields[side] = [f"{entry.label} is not usable: {entry.reason}"]
            entries[side] = entry
        if not fields and spec.method != "oracle" and entries["source"].class_names != entries["target"].class_names:
            fields["target"] = [_classes_differ(entries["source"], entries["target"])]
        if fields:
            raise ApplicationError.invalid("the datasets are not valid", fields=fields)
        base = recipes.pair_base_config(entries["source"], entries["target"])
        source_key, target_key = spec.source, spec.target

    data: dict[str, Any] = {k: v for k, v in base.items()}
    for name, dotted in FIELD_TO_CONFIG.items():
        value = getattr(spec, name)
        if value is not None and value != "":
            _set(data, dotted, list(value) if isinstance(value, tuple) else value)
    for dotted, source in _pretrained_sources(spec.weights, data).items():  # before the overrides: they win
        _set(data, dotted, source)
    fixed: dict[str, Any] = {}  # set by the server after the overrides: they cannot change these
    if teachers:
        students = [run.folder / selectors.checkpoint_get(run=run, checkpoint=CheckpointKind.STUDENT).path for run in teachers]
        fixed["duda.frozen_teachers"] = [str(path) for path in students]
        fixed["duda.frozen_teachers_precompute"] = bool(spec.precompute_teachers)
    default_name = f"{spec.method} {spec.benchmark or f'{source_key} → {target_key}'}"
    fixed["name"] = (spec.name or "").strip() or default_name
    fixed["output_dir"] = str(Path(settings.RUNS_DIR) / "pending")
    config = _validated_config(data, spec, fixed)
    _check_teacher_classes(config, list(teachers))
    return BuiltConfig(config.to_dict(), source_key, target_key, spec.benchmark)


def _resolve_baseline(*, owner, spec: LaunchSpec, built: BuiltConfig) -> tuple[Run | None, bool]:
    """The baseline a launch names and whether it is ``auto``: then the run page finds the latest
    matching one whenever it is read (``selectors.baseline_of``); the one found now is kept as a record."""
    if built.config["method"] == "source_only" or spec.baseline is None or spec.baseline == "":
        return None, False
    student = built.config["model"]["student"]
    candidates = list(selectors.baseline_candidates(user=owner, target_dataset=built.target_key, student=student,
                                                    classes_digest=classes_digest(built.config)).defer("config"))
    if spec.baseline == AUTO:
        return (candidates[0] if candidates else None), True
    try:
        wanted = int(spec.baseline)
    except (TypeError, ValueError):
        raise ApplicationError.invalid("bad baseline", fields={"baseline": ["must be a run id"]}) from None
    baseline = next((run for run in candidates if run.pk == wanted), None)
    if baseline is None:
        raise ApplicationError.invalid(
            "bad baseline",
            fields={"baseline": [f"run {wanted} is not a succeeded source-only run of yours on {built.target_key} "
                                 f"with student {student} and the same classes"]},
        )
    return baseline, False


def _prepare_folder(folder: Path) -> None:
    """A new run's folder must be empty: anything there (a reset database) is moved aside, not resumed."""
    if folder.exists():
        aside = folder.parent / ".orphaned" / f"{folder.name}-{int(time.time())}-{uuid.uuid4().hex[:6]}"
        aside.parent.mkdir(parents=True, exist_ok=True)
        folder.rename(aside)
        log.warning("moved a stale run folder %s aside to %s", folder, aside)
    folder.mkdir(parents=True)


def run_create(*, owner, spec: LaunchSpec) -> Run:
    """Validate a launch with the engine, save the run as queued and enqueue it after commit; with
    ``with_baselines``, also its baselines (``services.groups.run_group_create``)."""
    teachers = _teacher_runs(owner=owner, spec=spec)
    built = build_engine_config(spec, teachers)
    if spec.with_baselines:
        from webapp.runs.services.groups import run_group_create

        return run_group_create(owner=owner, spec=spec, built=built, teachers=teachers)
    baseline, auto = _resolve_baseline(owner=owner, spec=spec, built=built)
    with transaction.atomic():
        return run_save(owner=owner, built=built, teachers=teachers, baseline=baseline, baseline_auto=auto)


def run_save(*, owner, built: BuiltConfig, teachers: list[Run] = (), baseline: Run | None = None,
             baseline_auto: bool = False) -> Run:
    """Save a validated launch as a queued run with its folder, and enqueue it once the caller's
    transaction commits (call inside ``transaction.atomic``)."""
    config = copy.deepcopy(built.config)
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
        baseline_auto=baseline_auto,
        total_steps=config["train"]["iterations"],
    )
    folder = Path(settings.RUNS_DIR) / str(run.pk)
    config["output_dir"] = str(folder)
    run.config = config
    run.output_dir = str(folder)
    run.save(update_fields=["config", "output_dir"])
    run.teachers.set(teachers)
    _prepare_folder(folder)
    RunEvent.objects.create(run=run, message=f"queued by {owner.get_username()}")
    run_id = run.pk
    transaction.on_commit(lambda: run_enqueue(run_id))
    return run
