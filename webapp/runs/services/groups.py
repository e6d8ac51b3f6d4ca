"""Launch with baselines: an adaptation run, and beside it the source-only and the light self-training
runs with the same student, data, crop, iterations and seed, reusing a matching run instead of training
it again.

A run matches when its stored engine config equals the one the launch would give it, apart from what
cannot matter to its method: its name and folder, and the settings only other methods read
(``COMPARED_AWAY``). Classes, data, schedule and seed are all compared, so differing class lists
never match. Only succeeded or still active runs are reused; what is missing is created and enqueued.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from django.db import transaction

from webapp.runs.errors import ApplicationError
from webapp.runs.launch_schema import LaunchSpec
from webapp.runs.models import Run, RunGroup, RunStatus
from webapp.runs.services.launch import BuiltConfig, build_engine_config, run_save

BASELINE_METHODS = ("source_only", "self_training")
ADAPTATION_METHODS = ("self_training", "duda")

# Dotted config keys a method never reads: two runs of that method that differ only there train alike.
COMPARED_AWAY: dict[str, tuple[str, ...]] = {
    "source_only": ("self_training", "duda", "model.auxiliary", "model.auxiliary_pretrained"),
    "self_training": ("duda", "model.auxiliary", "model.auxiliary_pretrained"),
}
REUSABLE_STATUSES = (RunStatus.SUCCEEDED, RunStatus.RUNNING, RunStatus.QUEUED)


def comparable_config(config: dict[str, Any], method: str) -> dict[str, Any]:
    """``config`` without what cannot change how a ``method`` run trains."""
    kept = copy.deepcopy(config)
    for key in ("name", "output_dir"):
        kept.pop(key, None)
    for dotted in COMPARED_AWAY.get(method, ()):
        node = kept
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(last, None)
    return kept


def matching_run(*, owner, config: dict[str, Any]) -> Run | None:
    """The owner's run that trains exactly as ``config`` would: a succeeded one first, then the newest active one."""
    method = config["method"]
    wanted = comparable_config(config, method)
    candidates = Run.objects.filter(owner=owner, method=method, status__in=REUSABLE_STATUSES,
                                    student=config["model"]["student"]).order_by("-id")
    found = [run for run in candidates if comparable_config(run.config, method) == wanted]
    found.sort(key=lambda run: run.status != RunStatus.SUCCEEDED)  # stable: newest first within each
    return found[0] if found else None


def baseline_spec(spec: LaunchSpec, method: str) -> LaunchSpec:
    """The launch of a baseline: the same input with another method, without what only the lead uses."""
    name = f"{spec.name.strip()} · {method}" if (spec.name or "").strip() else ""
    return dataclasses.replace(spec, method=method, name=name, baseline=None, teachers=[], precompute_teachers=False,
                               with_baselines=False)


def run_group_create(*, owner, spec: LaunchSpec, built: BuiltConfig, teachers: list[Run]) -> Run:
    """Create the launched run and whichever of its baselines no matching run of the owner stands for;
    returns the launched run. The source-only run is the launched run's baseline."""
    method = built.config["method"]
    if method not in ADAPTATION_METHODS:
        raise ApplicationError.invalid(
            "baselines are for adaptation runs",
            fields={"with_baselines": [f"baselines are launched beside a self_training or duda run, not {method}"]},
        )
    members: dict[str, tuple[BuiltConfig, Run | None]] = {}
    for baseline_method in BASELINE_METHODS:
        if baseline_method == method:
            continue
        member = build_engine_config(baseline_spec(spec, baseline_method))
        members[baseline_method] = (member, matching_run(owner=owner, config=member.config))
    with transaction.atomic():
        runs: dict[str, Run] = {}
        created: list[Run] = []
        source_built, source_run = members["source_only"]
        if source_run is None:
            source_run = run_save(owner=owner, built=source_built)
            created.append(source_run)
        runs["source_only"] = source_run
        if "self_training" in members:
            st_built, st_run = members["self_training"]
            if st_run is None:
                st_run = run_save(owner=owner, built=st_built, baseline=source_run)
                created.append(st_run)
            runs["self_training"] = st_run
        lead = run_save(owner=owner, built=built, teachers=teachers, baseline=source_run)
        runs.setdefault("self_training", lead)
        group = RunGroup.objects.create(owner=owner, lead=lead, source_only=runs["source_only"],
                                        self_training=runs["self_training"])
        Run.objects.filter(pk__in=[lead.pk, *(run.pk for run in created)]).update(launch_group=group)
        lead.launch_group = group
    return lead
