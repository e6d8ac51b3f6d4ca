"""What a run can be launched on: the bundled toy benchmarks, real datasets under the data root,
the weights sources, the model presets and the methods. Everything comes from the engine; nothing is
re-implemented here.

Engine modules are imported lazily (inside functions) so that importing the web app stays cheap.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings

from webapp.runs import launch_schema

log = logging.getLogger(__name__)

# Real dataset kinds we look for under DUDA_DATASETS_ROOT, by folder name. How each is resized and
# trained on comes from the recipes (``recipes``).
REAL_KINDS: dict[str, dict[str, Any]] = {
    "gta5": {"label": "GTA5", "folders": ("gta5", "gta", "GTA5")},
    "synthia": {"label": "SYNTHIA-RAND-CITYSCAPES", "folders": ("synthia", "SYNTHIA", "RAND_CITYSCAPES")},
    "cityscapes": {"label": "Cityscapes", "folders": ("cityscapes", "Cityscapes")},
    "acdc": {"label": "ACDC", "folders": ("acdc", "ACDC")},
    "dark_zurich": {"label": "Dark Zurich", "folders": ("dark_zurich", "DarkZurich", "dark-zurich")},
}
ACDC_CONDITIONS = ("fog", "night", "rain", "snow")
CUSTOM_MANIFEST = "dataset.yaml"  # a folder holding this file is a custom dataset (DatasetConfig fields)
DESCRIBE_TTL_S = 30.0


@dataclass
class DatasetEntry:
    """One dataset the launch form offers: its key, the engine's DatasetConfig fields, its status."""

    key: str
    label: str
    kind: str
    config: dict[str, Any]
    toy: bool = False
    ok: bool = True
    reason: str = ""
    counts: dict[str, Any] = field(default_factory=dict)
    usable_as_source: bool = True
    usable_as_target: bool = True
    classes: dict[str, Any] | None = None  # the run's ``classes`` section (None: the Cityscapes classes)
    class_list: list[dict[str, Any]] = field(default_factory=list)  # [{"id", "name", "colour"}]
    problems: list[str] = field(default_factory=list)  # every reason it is not usable (the check's, capped)
    check: dict[str, Any] = field(default_factory=dict)  # {"state": "checking"|"done", "done", "total", ...}

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(c["name"] for c in self.class_list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "kind": self.kind,
            "toy": self.toy,
            "ok": self.ok,
            "reason": self.reason,
            "counts": self.counts,
            "usable_as_source": self.usable_as_source,
            "usable_as_target": self.usable_as_target,
            "config": self.config,
            "classes": self.class_list,
            "problems": self.problems,
            "check": self.check,
        }


# --------------------------------------------------------------------------------------------
# Methods and presets
# --------------------------------------------------------------------------------------------

METHOD_LABELS = {
    "source_only": "Source only (baseline)",
    "self_training": "Self-training (DAFormer-style EMA teacher)",
    "duda": "DUDA (heavy teacher + auxiliary, distilled into the student)",
    "oracle": "Oracle (trained on target labels)",
}


def methods() -> list[dict[str, str]]:
    from duda_engine.config import METHODS

    return [{"name": m, "label": METHOD_LABELS.get(m, m)} for m in METHODS]


def presets() -> list[dict[str, Any]]:
    """Every model preset: its name, whether it is heavy, one line about it, and whether it has ImageNet
    weights on this server."""
    from duda_engine.models import get_preset, preset_names

    out = []
    for name in preset_names():
        preset = get_preset(name)
        out.append({"name": name, "heavy": preset.heavy, "description": preset.description,
                    "imagenet_weights": has_imagenet_weights(name)})
    return out


@functools.cache
def has_imagenet_weights(name: str) -> bool:
    """Whether preset ``name`` can start from ImageNet weights here: the engine knows a weights package
    for its encoder, and that package is installed with the expected file. Decided once per process
    (it hashes the file)."""
    from duda_engine.models import get_preset
    from duda_engine.models.imagenet import imagenet_weights, imagenet_weights_file
    from duda_engine.models.weights import PretrainedWeightsError

    preset = get_preset(name)
    if imagenet_weights(preset) is None:
        return False
    try:
        imagenet_weights_file(preset)
    except PretrainedWeightsError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# Toy benchmarks
# --------------------------------------------------------------------------------------------


def _toy_benchmark_table() -> dict[str, tuple[str, str]]:
    from duda_engine.toy.domains import TOY_BENCHMARKS

    return dict(TOY_BENCHMARKS)


def toy_config_path(name: str) -> Path:
    return Path(settings.BASE_DIR) / "configs" / "toy" / f"{name}.yaml"


def benchmark_names() -> list[str]:
    return list(_toy_benchmark_table())


def benchmark_base_config(name: str) -> dict[str, Any]:
    """The bundled config of a toy benchmark (``configs/toy/<name>.yaml``), or a minimal one."""
    table = _toy_benchmark_table()
    if name not in table:
        raise KeyError(name)
    path = toy_config_path(name)
    if path.is_file():
        data = yaml.safe_load(path.read_text()) or {}
        if isinstance(data, dict):
            return data
    source, target = table[name]
    return {  # no bundled config: a CPU-sized demo of the toy domains (256x128 images)
        "name": name,
        "source": {"kind": "toy", "domain": source, "toy_size": "demo"},
        "target": {"kind": "toy", "domain": target, "toy_size": "demo"},
        "optim": {"lr": 2e-4, "warmup_iters": 50},
        "train": {"iterations": 1000, "batch_size": 2, "crop_size": [128, 128], "eval_interval": 100,
                  "checkpoint_interval": 100, "log_interval": 10, "num_samples": 4, "num_workers": 0,
                  "max_val_images": 50},
    }


def toy_benchmarks() -> list[dict[str, Any]]:
    """Each toy benchmark with its domains and the training defaults of its bundled config."""
    out = []
    for name, (source, target) in _toy_benchmark_table().items():
        base = benchmark_base_config(name)
        out.append(
            {
                "key": name,
                "label": f"{name} ({source} → {target})",
                "source": f"toy:{source}",
                "target": f"toy:{target}",
                "defaults": launch_defaults(base),
            }
        )
    return out


def launch_defaults(base: dict[str, Any]) -> dict[str, Any]:
    """The values the launch form shows for a base config (the engine's defaults where it is silent)."""
    from duda_engine.config import ExperimentConfig
    from duda_engine.config_loading import config_from_dict

    try:
        config = config_from_dict({k: v for k, v in base.items() if k != "output_dir"})
    except Exception:  # noqa: BLE001 - a broken bundled config shows the engine defaults instead
        config = ExperimentConfig()
    return launch_schema.defaults(config.to_dict())


# --------------------------------------------------------------------------------------------
# Datasets (toy domains and real folders under the data root)
# --------------------------------------------------------------------------------------------

_describe_cache: dict[str, tuple[float, dict[str, Any]]] = {}
_describe_lock = threading.Lock()


def _class_spec(classes: dict[str, Any] | None):
    from duda_engine.config import ClassesConfig
    from duda_engine.config_fields import build_dataclass
    from duda_engine.validation import class_spec_of

    return class_spec_of(build_dataclass(ClassesConfig, classes or {}))


def _describe(config: dict[str, Any], classes: dict[str, Any] | None = None) -> dict[str, Any]:
    """The engine's description of a dataset folder (cached briefly: it walks the folders)."""
    from duda_engine.config import DatasetConfig
    from duda_engine.data.dataset_check import describe_dataset

    key = repr((sorted(config.items()), classes))
    now = time.monotonic()
    with _describe_lock:
        cached = _describe_cache.get(key)
        if cached and now - cached[0] < DESCRIBE_TTL_S:
            return cached[1]
    fields = {k: v for k, v in config.items() if k in DatasetConfig.__dataclass_fields__}
    try:
        result = describe_dataset(DatasetConfig(**fields), _class_spec(classes))
    except Exception as error:  # noqa: BLE001 - describe_dataset never raises, a bad manifest might
        result = {"ok": False, "reason": f"{type(error).__name__}: {error}", "train": 0, "val": 0,
                  "train_labelled": False, "val_labelled": False}
    with _describe_lock:
        _describe_cache[key] = (now, result)
    return result


# --------------------------------------------------------------------------------------------
# The dataset check: every image and label read once, in a background thread of this process
# --------------------------------------------------------------------------------------------
#
# A check reads every file (minutes for a full real dataset), so a page never waits for one: the
# listing starts it in a single background thread and shows its progress; the engine caches each
# verdict on disk (settings.DATASET_CHECKS_DIR, keyed by the files' names, sizes and modification
# times), so an unchanged dataset is checked again in the time it takes to stat its files, by this
# process, another web process or the worker that trains on it. A thread rather than a Celery task:
# the workers may be busy training for hours, and the check must not queue behind a run.


@dataclass
class CheckState:
    done: int = 0
    total: int = 0
    finished: float | None = None  # time.monotonic() when it ended
    report: Any = None  # the engine's CheckReport
    error: str = ""
    future: Future | None = None


CHECK_TTL_S = 10.0  # a finished verdict is reused this long before the files are stat'ed again
LISTING_WAIT_S = 1.0  # a listing waits this long for a check (a cached or small dataset is done by then)
LAUNCH_WAIT_S = 60.0  # a launch waits this long for a check that is still running

_checks: dict[str, CheckState] = {}
_checks_lock = threading.Lock()
_check_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dataset-check")


def _run_check(key: str, state: CheckState, config: dict[str, Any], classes: dict[str, Any] | None,
               splits: list[tuple[str, str]]) -> None:
    from duda_engine.config import DatasetConfig
    from duda_engine.data.dataset_check import scan_dataset

    def progress(done: int, total: int) -> None:
        state.done, state.total = done, total

    try:
        fields = {k: v for k, v in config.items() if k in DatasetConfig.__dataclass_fields__}
        state.report = scan_dataset(DatasetConfig(**fields), _class_spec(classes), splits, progress=progress,
                                    cache_dir=settings.DATASET_CHECKS_DIR)
    except Exception as error:  # noqa: BLE001 - a listing shows any failure as the dataset's problem
        log.warning("dataset check of %s failed", config.get("root"), exc_info=True)
        state.error = f"the check failed: {type(error).__name__}: {error}"
    finally:
        state.finished = time.monotonic()


def dataset_check(config: dict[str, Any], classes: dict[str, Any] | None, splits: list[tuple[str, str]],
                  deadline: float) -> CheckState:
    """The check of a dataset: the current verdict, or a check started (or running) with its progress;
    waits until ``deadline`` (``time.monotonic()``) at most for it to end."""
    key = repr((sorted(config.items()), classes, splits))
    with _checks_lock:
        state = _checks.get(key)
        stale = state is not None and state.finished is not None and time.monotonic() - state.finished > CHECK_TTL_S
        if state is None or stale:
            state = CheckState()
            _checks[key] = state
            state.future = _check_pool.submit(_run_check, key, state, config, classes, splits)
    wait = deadline - time.monotonic()
    if state.finished is None and wait > 0 and state.future is not None:
        with contextlib.suppress(FutureTimeout):
            state.future.result(timeout=wait)
    return state


def _check_splits(described: dict[str, Any], config: dict[str, Any]) -> list[tuple[str, str]]:
    """The splits a listing checks: the train split, and the val split where it exists."""
    from duda_engine.config import DatasetConfig
    from duda_engine.data.dataset_check import LABELS_OPTIONAL

    defaults = DatasetConfig()
    splits = [(config.get("train_split", defaults.train_split), LABELS_OPTIONAL)]
    val = config.get("val_split", defaults.val_split)
    if described.get("val") and val != splits[0][0]:
        splits.append((val, LABELS_OPTIONAL))
    return splits


def _real_entry(key: str, label: str, config: dict[str, Any], present: bool, missing_reason: str,
                classes: dict[str, Any] | None = None, deadline: float = 0.0) -> DatasetEntry:
    from duda_engine.config import ClassesConfig
    from duda_engine.config_fields import build_dataclass
    from duda_engine.data.manifest import class_list

    listed = class_list(build_dataclass(ClassesConfig, classes or {}))
    if not present:
        return DatasetEntry(key, label, config["kind"], config, ok=False, reason=missing_reason,
                            usable_as_source=False, usable_as_target=False, classes=classes, class_list=listed,
                            problems=[missing_reason])
    described = _describe(config, classes)
    counts = {k: described.get(k) for k in ("train", "train_labelled", "val", "val_labelled")}
    ok = bool(described.get("ok"))
    reason = described.get("reason", "")
    problems = [reason] if not ok and reason else []
    check: dict[str, Any] = {}
    if ok:
        state = dataset_check(config, classes, _check_splits(described, config), deadline)
        check = {"state": "done" if state.finished is not None else "checking", "done": state.done,
                 "total": state.total}
        if state.finished is None:
            ok, reason = False, f"being checked ({state.done} of {state.total or '?'} files read)"
        elif state.error:
            ok, reason, problems = False, state.error, [state.error]
        elif not state.report.ok:
            report = state.report
            count = report.total_problems
            ok = False
            problems = list(report.problems)
            if count > len(problems):
                problems.append(f"and {count - len(problems)} more "
                                f"({', '.join(f'{n} {kind}' for kind, n in sorted(report.counts.items()))})")
            reason = f"{count} problem{'s' if count != 1 else ''}: {report.summary()}"
        if state.report is not None:
            splits = state.report.splits
            for name, split in (("train", _check_splits(described, config)[0][0]),
                                ("val", config.get("val_split", "val"))):
                if split in splits:  # the check's counts: every image, labelled when labels are expected
                    counts[name], counts[f"{name}_labelled"] = splits[split]["images"], splits[split]["labelled"]
            check.update(seconds=round(state.report.seconds, 3), files=state.report.files, cached=state.report.cached,
                         counts=state.report.counts)
    as_source = ok and bool(described.get("train")) and bool(described.get("train_labelled"))
    as_target = ok and bool(described.get("train")) and bool(described.get("val")) and bool(described.get("val_labelled"))
    return DatasetEntry(key, label, config["kind"], config, ok=ok, reason=reason, counts=counts,
                        usable_as_source=as_source, usable_as_target=as_target, classes=classes, class_list=listed,
                        problems=problems, check=check)


def _toy_entries() -> list[DatasetEntry]:
    from duda_engine.config import ClassesConfig
    from duda_engine.data.manifest import class_list
    from duda_engine.toy.domains import TOY_DOMAINS

    return [
        DatasetEntry(
            key=f"toy:{domain}", label=f"toy {domain}", kind="toy", toy=True,
            config={"kind": "toy", "domain": domain, "toy_size": "demo"},
            counts={"note": "bundled, generated on first use"}, class_list=class_list(ClassesConfig()),
        )
        for domain in TOY_DOMAINS
    ]


def _find_folder(root: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        if (root / name).is_dir():
            return root / name
    return None


def _paths_outside(folder: Path, config: dict[str, Any]) -> str:
    """Why a custom dataset's folders or list file leave its own folder ("" when none does): each is
    resolved (``..`` and symlinks) against the folder, with ``{split}`` standing for a split's name."""
    inside = folder.resolve()
    for name in ("image_dir", "label_dir", "list_file"):
        value = config.get(name) or ""
        if not isinstance(value, str):
            return f"{name} must be a path relative to the dataset folder"
        try:
            resolved = (inside / value.replace("{split}", "split")).resolve()
        except (OSError, ValueError) as error:  # a NUL character, a symlink loop
            return f"{name} {value!r} is not a usable path: {error}"
        if value and not resolved.is_relative_to(inside):
            return f"{name} {value!r} leads out of the dataset folder {folder}"
    return ""


def _max_key_length() -> int:
    """The longest dataset key a run can store."""
    from webapp.runs.models import Run

    return min(Run._meta.get_field(name).max_length for name in ("source_dataset", "target_dataset"))


def _custom_entry(key: str, folder: Path, deadline: float) -> DatasetEntry:
    """A folder holding a ``dataset.yaml``: its layout and classes as the engine reads them, and its check."""
    from duda_engine.data.manifest import MANIFEST_ONLY, load_manifest
    from duda_engine.data.samples import DatasetError

    manifest_path = folder / CUSTOM_MANIFEST
    unusable = {"ok": False, "usable_as_source": False, "usable_as_target": False}
    try:
        manifest = load_manifest(folder)
    except DatasetError as error:
        return DatasetEntry(key, folder.name, "custom", {"kind": "custom", "root": str(folder)}, reason=str(error),
                            problems=[str(error)], **unusable)
    data = yaml.safe_load(manifest_path.read_text()) or {}
    config = {"kind": "custom", **{k: v for k, v in data.items() if k not in ("kind", *MANIFEST_ONLY)},
              "root": str(folder)}
    classes = dataclasses.asdict(manifest.classes) if manifest.classes.preset == "custom" else None
    outside = _paths_outside(folder, config)
    if outside:
        reason = f"{manifest_path}: {outside}"
        return DatasetEntry(key, manifest.label, "custom", config, reason=reason, problems=[reason], classes=classes,
                            class_list=manifest.class_list(), **unusable)
    return _real_entry(key, manifest.label, config, True, "", classes, deadline)


def real_datasets(wait: float = LISTING_WAIT_S, only: str | None = None) -> list[DatasetEntry]:
    """Known dataset kinds under ``DUDA_DATASETS_ROOT`` (present or with the reason they are not),
    and custom datasets: folders holding a ``dataset.yaml`` (its layout fields and classes). Each
    present dataset is checked in the background; ``wait``: how long to wait, in all, for checks to
    end; ``only``: the entry of that key alone."""
    root = settings.DATASETS_ROOT
    if root is None:
        return []
    root = Path(root)
    deadline = time.monotonic() + wait
    entries: list[DatasetEntry] = []
    for kind, info in REAL_KINDS.items():
        folder = _find_folder(root, info["folders"]) if root.is_dir() else None
        missing = f"no folder {root}/{info['folders'][0]}" if root.is_dir() else f"the data root {root} does not exist"
        base = {"kind": kind, "root": str(folder or root / info["folders"][0])}
        if kind == "acdc":
            for condition in ACDC_CONDITIONS:
                if only in (None, f"acdc-{condition}"):
                    entries.append(_real_entry(f"acdc-{condition}", f"ACDC {condition}", base | {"condition": condition},
                                               folder is not None, missing, deadline=deadline))
        elif only in (None, kind):
            entries.append(_real_entry(kind, info["label"], base, folder is not None, missing, deadline=deadline))
    if root.is_dir():
        for manifest in sorted(root.glob(f"*/{CUSTOM_MANIFEST}")):
            folder = manifest.parent
            key = f"custom:{folder.name}"
            if only not in (None, key):
                continue
            if len(key) > _max_key_length():
                entries.append(DatasetEntry(key, folder.name, "custom", {"kind": "custom", "root": str(folder)}, ok=False,
                                            reason=f"the folder name is longer than {_max_key_length() - len('custom:')} "
                                                   "characters (a run stores the dataset's key)",
                                            usable_as_source=False, usable_as_target=False))
                continue
            entries.append(_custom_entry(key, folder, deadline))
    return entries


def datasets() -> list[DatasetEntry]:
    return _toy_entries() + real_datasets()


def dataset_by_key(key: str, wait: float = LISTING_WAIT_S) -> DatasetEntry | None:
    if key.startswith("toy:"):
        return next((e for e in _toy_entries() if e.key == key), None)
    return next((e for e in real_datasets(wait, only=key) if e.key == key), None)


def dataset_class_names(key: str) -> tuple[str, ...] | None:
    """The class names of a dataset in the catalogue, in id order (None for an unknown key): runs,
    baselines, teachers and comparisons pair only datasets whose lists are identical."""
    entry = dataset_by_key(key, wait=0)
    return entry.class_names if entry is not None else None


# --------------------------------------------------------------------------------------------
# Weights sources (ImageNet weights of an encoder)
# --------------------------------------------------------------------------------------------

IMAGENET_WEIGHTS = "imagenet"  # a source the engine knows by name, not a file


def weights_files() -> dict[str, Path]:
    """The weights files under ``WEIGHTS_DIR`` by name, each resolved (symlinks and ``..``) to a file
    that stays inside the folder; anything that leads out is not offered."""
    folder = Path(settings.WEIGHTS_DIR).resolve()
    if not folder.is_dir():
        return {}
    files = {}
    for entry in sorted(folder.iterdir()):
        try:
            real = entry.resolve()
        except (OSError, RuntimeError):  # a symlink loop
            continue
        if entry.name != IMAGENET_WEIGHTS and not entry.name.startswith(".") and real.is_file() and real.is_relative_to(folder):
            files[entry.name] = real
    return files


def weights_sources() -> list[str]:
    """What a launch may name as a ``*_pretrained`` weights source ("" is none)."""
    return [IMAGENET_WEIGHTS, *weights_files()]
