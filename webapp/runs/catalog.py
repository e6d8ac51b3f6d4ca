"""What a run can be launched on: the bundled toy benchmarks, real datasets under the data root,
the weights sources, the model presets and the methods. Everything comes from the engine; nothing is
re-implemented here.

Engine modules are imported lazily (inside functions) so that importing the web app stays cheap.
"""

from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings

from webapp.runs import launch_schema

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


def _describe(config: dict[str, Any]) -> dict[str, Any]:
    """The engine's description of a dataset folder (cached briefly: it walks the folders)."""
    from duda_engine.config import DatasetConfig
    from duda_engine.data.classes import CITYSCAPES
    from duda_engine.data.dataset_check import describe_dataset

    key = repr(sorted(config.items()))
    now = time.monotonic()
    with _describe_lock:
        cached = _describe_cache.get(key)
        if cached and now - cached[0] < DESCRIBE_TTL_S:
            return cached[1]
    fields = {k: v for k, v in config.items() if k in DatasetConfig.__dataclass_fields__}
    try:
        result = describe_dataset(DatasetConfig(**fields), CITYSCAPES)
    except Exception as error:  # noqa: BLE001 - describe_dataset never raises, a bad manifest might
        result = {"ok": False, "reason": f"{type(error).__name__}: {error}", "train": 0, "val": 0,
                  "train_labelled": False, "val_labelled": False}
    with _describe_lock:
        _describe_cache[key] = (now, result)
    return result


def _toy_entries() -> list[DatasetEntry]:
    from duda_engine.toy.domains import TOY_DOMAINS

    return [
        DatasetEntry(
            key=f"toy:{domain}", label=f"toy {domain}", kind="toy", toy=True,
            config={"kind": "toy", "domain": domain, "toy_size": "demo"},
            counts={"note": "bundled, generated on first use"},
        )
        for domain in TOY_DOMAINS
    ]


def _find_folder(root: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        if (root / name).is_dir():
            return root / name
    return None


def _real_entry(key: str, label: str, config: dict[str, Any], present: bool, missing_reason: str) -> DatasetEntry:
    if not present:
        return DatasetEntry(key, label, config["kind"], config, ok=False, reason=missing_reason,
                            usable_as_source=False, usable_as_target=False)
    described = _describe(config)
    counts = {k: described.get(k) for k in ("train", "train_labelled", "val", "val_labelled")}
    as_source = bool(described.get("train")) and bool(described.get("train_labelled"))
    as_target = bool(described.get("train")) and bool(described.get("val")) and bool(described.get("val_labelled"))
    reason = described.get("reason", "")
    return DatasetEntry(key, label, config["kind"], config, ok=bool(described.get("ok")), reason=reason,
                        counts=counts, usable_as_source=as_source, usable_as_target=as_target)


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


def real_datasets() -> list[DatasetEntry]:
    """Known dataset kinds under ``DUDA_DATASETS_ROOT`` (present or with the reason they are not),
    and custom datasets: folders holding a ``dataset.yaml`` of DatasetConfig fields."""
    root = settings.DATASETS_ROOT
    if root is None:
        return []
    root = Path(root)
    entries: list[DatasetEntry] = []
    for kind, info in REAL_KINDS.items():
        folder = _find_folder(root, info["folders"]) if root.is_dir() else None
        missing = f"no folder {root}/{info['folders'][0]}" if root.is_dir() else f"the data root {root} does not exist"
        base = {"kind": kind, "root": str(folder or root / info["folders"][0])}
        if kind == "acdc":
            for condition in ACDC_CONDITIONS:
                entries.append(_real_entry(f"acdc-{condition}", f"ACDC {condition}", base | {"condition": condition},
                                           folder is not None, missing))
        else:
            entries.append(_real_entry(kind, info["label"], base, folder is not None, missing))
    if root.is_dir():
        for manifest in sorted(root.glob(f"*/{CUSTOM_MANIFEST}")):
            folder = manifest.parent
            key = f"custom:{folder.name}"
            if len(key) > _max_key_length():
                entries.append(DatasetEntry(key, folder.name, "custom", {"kind": "custom", "root": str(folder)}, ok=False,
                                            reason=f"the folder name is longer than {_max_key_length() - len('custom:')} "
                                                   "characters (a run stores the dataset's key)",
                                            usable_as_source=False, usable_as_target=False))
                continue
            try:
                data = yaml.safe_load(manifest.read_text()) or {}
                if not isinstance(data, dict):
                    raise ValueError("must be a mapping of dataset fields")
            except (OSError, ValueError, yaml.YAMLError) as error:
                entries.append(DatasetEntry(key, folder.name, "custom", {"kind": "custom", "root": str(folder)}, ok=False,
                                            reason=f"{manifest}: {error}", usable_as_source=False, usable_as_target=False))
                continue
            config = {"kind": "custom", **{k: v for k, v in data.items() if k not in ("kind", "root", "label")}, "root": str(folder)}
            outside = _paths_outside(folder, config)
            if outside:
                entries.append(DatasetEntry(key, folder.name, "custom", config, ok=False, reason=f"{manifest}: {outside}",
                                            usable_as_source=False, usable_as_target=False))
                continue
            entries.append(_real_entry(key, str(data.get("label", folder.name)), config, True, ""))
    return entries


def datasets() -> list[DatasetEntry]:
    return _toy_entries() + real_datasets()


def dataset_by_key(key: str) -> DatasetEntry | None:
    if key.startswith("toy:"):
        return next((e for e in _toy_entries() if e.key == key), None)
    return next((e for e in real_datasets() if e.key == key), None)


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
