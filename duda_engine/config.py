"""The typed configuration of one run, validated at the edge (loaded from data or YAML/JSON by
``config_loading``).

Every field has a docstring-like comment; unknown keys are rejected; every error names its field
(``train.crop_size: must be ...``). Every number has the range a run can use (``bounded``), every
string is one line without control characters, and every field that names a file or folder is marked
(``path_field``; ``path_fields()`` lists them) so that the web app can keep users to what the server
offers while the CLI takes any path. ``validate(config)`` checks what needs the file system and the
registries (dataset folders, backbone names) so that the CLI, the web form and the API accept and
reject exactly the same configs before any training starts.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass, field
from typing import Any

from duda_engine.config_fields import ConfigError, Leaf, bounded, path_field, path_list_field
from duda_engine.methods import METHODS as METHOD_CLASSES  # the method registry (imports no torch)

METHODS = tuple(METHOD_CLASSES)  # the names a config may give as ``method``
DATASET_KINDS = ("toy", "gta5", "synthia", "cityscapes", "acdc", "dark_zurich", "custom")

MAX_ITERATIONS = 10_000_000  # the run's step counters are 32-bit columns
MAX_SEED = 2**31 - 1
MAX_SIDE = 8192  # pixels of an image side, a crop or a sliding window
MAX_CLASSES = 255  # class ids 0..254 fit a byte beside an unlabelled value


@dataclass
class ClassesConfig:
    preset: str = "cityscapes"  # "cityscapes" or "custom"
    names: list[str] = field(default_factory=list)  # custom only: one name per class id
    colours: list[list[int]] = bounded([], 0, 255)  # custom only: RGB per class id
    ignore_index: int = bounded(255, 0, 65535)  # label value that is never trained on or scored


@dataclass
class DatasetConfig:
    kind: str = "toy"  # one of DATASET_KINDS
    root: str = path_field()  # dataset folder (real layouts, custom); toy: cache folder ("" = default)
    domain: str = ""  # toy: synthetic_a | synthetic_b | real | fog | night
    toy_size: str = "demo"  # toy: demo | full
    condition: str = ""  # acdc: fog | night | rain | snow
    train_split: str = "train"  # split used for training
    val_split: str = "val"  # split used for evaluation (target only)
    image_dir: str = path_field()  # custom: image folder relative to root
    label_dir: str = path_field()  # custom: label folder relative to root (matched by file stem)
    list_file: str = path_field()  # custom: optional "image label" pairs, one per line, relative to root
    label_suffix: str = ""  # custom: suffix of a label's stem, e.g. "_gtFine_labelTrainIds"
    resize: list[int] = bounded([], 8, MAX_SIDE)  # [W, H] each image is resized to fit first
    ignore_unknown_labels: bool = False  # label values outside the class table become ignore instead of an error


@dataclass
class ModelConfig:
    student: str = "mit_b0"  # the deployed network (every method trains it)
    auxiliary: str = "mit_b5"  # DUDA's large student and EMA teacher
    student_pretrained: str = path_field()  # the student encoder's ImageNet weights: a local file, "imagenet" (its package) or ""
    auxiliary_pretrained: str = path_field()  # the auxiliary encoder's ImageNet weights: a file, "imagenet" or ""


@dataclass
class OptimConfig:
    lr: float = bounded(6e-5, 0.0, 1.0, low_open=True)  # encoder learning rate
    head_lr_mult: float = bounded(10.0, 0.0, 1000.0, low_open=True)  # decoder lr = lr * this
    weight_decay: float = bounded(0.01, 0.0, 10.0)
    warmup_iters: int = bounded(1500, 0, MAX_ITERATIONS)  # linear warm-up length
    poly_power: float = bounded(1.0, 0.0, 100.0)  # polynomial decay after warm-up


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class TrainConfig:
    iterations: int = bounded(40000, 1, MAX_ITERATIONS)
    batch_size: int = bounded(2, 1, 256)  # per domain: batch_size source + batch_size target images
    crop_size: list[int] = bounded([512, 512], 32, 4096)  # [H, W]
    scale_range: list[float] = bounded([0.5, 2.0], 0.0, 16.0, low_open=True)  # random resize
    eval_interval: int = bounded(4000, 0, MAX_ITERATIONS)  # iterations between evaluations (0 = only at the end)
    checkpoint_interval: int = bounded(4000, 0, MAX_ITERATIONS)  # iterations between full checkpoints (0 = only at the end)
    log_interval: int = bounded(50, 1, MAX_ITERATIONS)  # iterations between metric callbacks
    num_samples: int = bounded(4, 0, 64)  # target val images whose predictions are sent at each evaluation
    num_workers: int = bounded(2, 0, 64)  # data loader processes
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    channels_last: bool = False  # NHWC memory format for images and convolution weights
    compile: bool = False  # torch.compile every network (first iterations are slow while it compiles)
    compile_mode: str = "default"  # torch.compile mode: default | reduce-overhead (CUDA graphs) | max-autotune | ...
    max_val_images: int = bounded(0, 0, MAX_ITERATIONS)  # evaluate on at most this many val images (0 = all)


# DAFormer's feature distance compares features on the pixels of Cityscapes' "thing" classes.
CITYSCAPES_THINGS = ("traffic light", "traffic sign", "person", "rider", "car", "truck", "bus", "train", "motorcycle",
                     "bicycle")


@dataclass
class SelfTrainingConfig:
    ema_alpha: float = bounded(0.999, 0.0, 1.0, low_open=True, high_open=True)  # upper bound of the EMA factor
    pseudo_threshold: float = bounded(0.968, 0.0, 1.0)  # confidence threshold for the pseudo-label weight
    ignore_top: int = bounded(0, 0, MAX_SIDE)  # rows ignored at the top of target crops (DAFormer: 15 on Cityscapes)
    ignore_bottom: int = bounded(0, 0, MAX_SIDE)  # rows ignored at the bottom (DAFormer: 120 on Cityscapes)
    classmix: bool = True
    color_jitter_strength: float = bounded(0.2, 0.0, 10.0)
    color_jitter_p: float = bounded(0.8, 0.0, 1.0)
    blur: bool = True
    rare_class_sampling: bool = True
    rcs_temperature: float = bounded(0.01, 1e-4, 100.0)
    rcs_min_pixels: int = bounded(3000, 0, MAX_SIDE * MAX_SIDE)  # pixels of a class for an image to qualify, per 1024x512 label (scaled by area)
    fdist_weight: float = bounded(0.0, 0.0, 1000.0)  # ImageNet feature distance (needs pretrained weights)
    fdist_classes: list[str] = field(default_factory=lambda: list(CITYSCAPES_THINGS))  # the pixels it compares
    target_weight: float = bounded(1.0, 0.0, 1000.0)  # weight of the pseudo-labelled loss on the mixed images (DAFormer: 1)
    # A training-mode pass without gradients over the clean target batch each step, before the losses: the
    # student's BatchNorm running statistics see target-only batches too (AdaBN-like; DAFormer: off). In DUDA
    # both students get it.
    target_batchnorm: bool = False
    mic_weight: float = bounded(0.0, 0.0, 1000.0)  # masked image consistency loss weight (0 = off)
    mic_mask_ratio: float = bounded(0.7, 0.0, 1.0, high_open=True)
    mic_block_size: int = bounded(64, 1, MAX_SIDE)


@dataclass
class DudaConfig:
    pre_adaptation: float = bounded(0.25, 0.0, 1.0)  # share of iterations with hard pseudo-labels only (KD off)
    ramp: float = bounded(0.25, 0.0, 1.0)  # share of iterations over which the KD weight ramps up
    ramp_shape: str = "linear"  # linear | cosine | step
    kd_weight: float = bounded(1.0, 0.0, 1000.0)  # the paper's KD; the bundled toy configs set 0 (measured: docs/RESULTS.md)
    temperature: float = bounded(2.0, 0.0, 100.0, low_open=True)
    kd_on_source: bool = False  # distil on the source images too
    inconsistency: bool = True  # weigh the classes the small student disagrees on (after pre-adaptation)
    inconsistency_gamma: float = bounded(1.0, 0.0, 100.0)
    inconsistency_momentum: float = bounded(0.99, 0.0, 1.0, high_open=True)
    inconsistency_clip: list[float] = bounded([0.5, 3.0], 0.0, 1000.0, low_open=True)
    teachers: list[str] = field(default_factory=lambda: ["ema"])  # ema, auxiliary, student_ema
    frozen_teachers: list[str] = path_list_field()  # checkpoint files of earlier runs
    fusion: str = "mean"  # mean | confidence
    frozen_teachers_on_cpu: bool = False  # run live frozen teachers on the CPU (saves device memory)
    batch_teacher_forwards: bool = False  # steady teachers predict the target and source images in one pass
    frozen_teachers_precompute: bool = False  # predict every training image once, then drop the network
    precompute_stride: int = bounded(4, 1, 64)  # stored at 1/stride of the fitted image size, uint8


@dataclass
class EvalConfig:
    mode: str = "whole"  # whole | slide
    window: list[int] = bounded([512, 512], 32, MAX_SIDE)  # slide: [H, W]
    stride: list[int] = bounded([341, 341], 1, MAX_SIDE)  # slide: [H, W]
    class_subset: str = ""  # "" (all) | synthia16 | synthia13


@dataclass
class ExperimentConfig:
    name: str = "run"
    method: str = "source_only"  # one of METHODS
    seed: int = bounded(0, 0, MAX_SEED)
    output_dir: str = path_field("runs/run")  # checkpoints, config and predictions go here
    classes: ClassesConfig = field(default_factory=ClassesConfig)
    source: DatasetConfig = field(default_factory=DatasetConfig)
    target: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    self_training: SelfTrainingConfig = field(default_factory=SelfTrainingConfig)
    duda: DudaConfig = field(default_factory=DudaConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------
# The fields as a list.
# --------------------------------------------------------------------------------------------


@functools.cache
def config_leaves(cls: type | None = None, prefix: str = "") -> tuple[Leaf, ...]:
    """Every leaf field of the config (of ``cls``, default ``ExperimentConfig``), in declaration order."""
    cls = cls or ExperimentConfig
    hints = typing.get_type_hints(cls)
    leaves: list[Leaf] = []
    for f in dataclasses.fields(cls):
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            leaves.extend(config_leaves(hints[f.name], f"{name}."))
        else:
            leaves.append(Leaf(name, hints[f.name], f))
    return tuple(leaves)


def path_fields() -> tuple[str, ...]:
    """The dotted names of the fields that hold paths on the machine that runs the engine."""
    return tuple(leaf.name for leaf in config_leaves() if leaf.is_path)


def leaf_value(config: ExperimentConfig, name: str) -> Any:
    value: Any = config
    for key in name.split("."):
        value = getattr(value, key)
    return value


# --------------------------------------------------------------------------------------------
# Validation of values (no file system) and of resources (datasets, backbones).
# --------------------------------------------------------------------------------------------


def _require(condition: bool, field_path: str, message: str) -> None:
    if not condition:
        raise ConfigError(field_path, message)


def check_classes(classes: ClassesConfig, prefix: str = "classes") -> None:
    """A class list's own checks (a run's ``classes``, a custom dataset's ``dataset.yaml``)."""
    _require(classes.preset in ("cityscapes", "custom"), f"{prefix}.preset", "must be 'cityscapes' or 'custom'")
    if classes.preset != "custom":
        return
    names, colours = classes.names, classes.colours
    _require(len(names) >= 2, f"{prefix}.names", "a custom class list needs at least two names")
    _require(len(names) <= MAX_CLASSES, f"{prefix}.names",
             f"a custom class list holds at most {MAX_CLASSES} classes (sample maps store 8-bit class ids)")
    repeated = sorted({name for name in names if names.count(name) > 1})
    _require(not repeated, f"{prefix}.names", f"must be unique ({', '.join(map(repr, repeated))} repeated)")
    _require(
        len(colours) == len(names),
        f"{prefix}.colours",
        f"{prefix}.names has {len(names)} names but {prefix}.colours has {len(colours)} colours; "
        "give one RGB colour per class, in the same order",
    )
    for i, colour in enumerate(colours):
        _require(
            len(colour) == 3 and all(0 <= v <= 255 for v in colour),
            f"{prefix}.colours[{i}]",
            "must be [R, G, B] with values in 0..255",
        )
    _require(not 0 <= classes.ignore_index < len(names), f"{prefix}.ignore_index",
             f"{classes.ignore_index} is a class id (0..{len(names) - 1}); the ignore value must be another number")


def check_values(c: ExperimentConfig) -> None:
    """Value checks that need nothing but the config itself."""
    _require(bool(c.name.strip()), "name", "must not be empty")
    _require(c.method in METHODS, "method", f"unknown method {c.method!r} (known: {', '.join(METHODS)})")
    _require(c.seed >= 0, "seed", "must be >= 0")

    check_classes(c.classes)

    for name in ("source", "target"):
        d: DatasetConfig = getattr(c, name)
        _require(d.kind in DATASET_KINDS, f"{name}.kind", f"unknown dataset kind {d.kind!r} (known: {', '.join(DATASET_KINDS)})")
        if d.kind == "toy":
            _require(
                d.domain in ("synthetic_a", "synthetic_b", "real", "fog", "night"),
                f"{name}.domain",
                "toy domain must be one of synthetic_a, synthetic_b, real, fog, night",
            )
            _require(d.toy_size in ("demo", "full"), f"{name}.toy_size", "must be 'demo' or 'full'")
        else:
            _require(bool(d.root), f"{name}.root", f"a {d.kind} dataset needs its folder")
        if d.kind == "acdc":
            _require(d.condition in ("fog", "night", "rain", "snow"), f"{name}.condition", "must be fog, night, rain or snow")
        if d.kind == "custom":
            _require(
                bool(d.list_file) or (bool(d.image_dir) and bool(d.label_dir)),
                f"{name}.image_dir",
                "a custom dataset needs image_dir and label_dir, or a list_file",
            )
        for split in ("train_split", "val_split"):
            value = getattr(d, split)
            _require(
                bool(value) and value not in (".", "..") and not any(sep in value for sep in "/\\"),
                f"{name}.{split}",
                "must be a folder name (not empty, no '/', '\\', '.' or '..')",
            )
        if d.resize:
            _require(len(d.resize) == 2 and min(d.resize) >= 8, f"{name}.resize", "must be [W, H], each >= 8")
        if c.classes.preset == "custom":
            _require(d.kind in ("custom",), f"{name}.kind", "custom classes need custom datasets")

    m = c.model
    _require(bool(m.student), "model.student", "must name a preset")
    if c.method == "duda":
        _require(bool(m.auxiliary), "model.auxiliary", "DUDA needs a large auxiliary preset")

    o = c.optim
    _require(o.lr > 0, "optim.lr", "must be > 0")
    _require(o.head_lr_mult > 0, "optim.head_lr_mult", "must be > 0")
    _require(o.weight_decay >= 0, "optim.weight_decay", "must be >= 0")
    _require(o.warmup_iters >= 0, "optim.warmup_iters", "must be >= 0")
    _require(o.poly_power >= 0, "optim.poly_power", "must be >= 0")

    t = c.train
    _require(t.iterations >= 1, "train.iterations", "must be >= 1")
    _require(t.batch_size >= 1, "train.batch_size", "must be >= 1")
    _require(len(t.crop_size) == 2, "train.crop_size", "must be [H, W]")
    _require(min(t.crop_size) >= 32 and max(t.crop_size) <= 4096, "train.crop_size", "each side must be in 32..4096")
    _require(all(s % 32 == 0 for s in t.crop_size), "train.crop_size", "each side must be a multiple of 32")
    _require(
        len(t.scale_range) == 2 and 0 < t.scale_range[0] <= t.scale_range[1],
        "train.scale_range",
        "must be [low, high] with 0 < low <= high",
    )
    for key in ("eval_interval", "checkpoint_interval", "max_val_images", "num_workers"):
        _require(getattr(t, key) >= 0, f"train.{key}", "must be >= 0")
    _require(t.log_interval >= 1, "train.log_interval", "must be >= 1")
    _require(t.compile_mode in COMPILE_MODES, "train.compile_mode", f"must be one of {', '.join(COMPILE_MODES)}")
    _require(t.num_samples >= 0, "train.num_samples", "must be >= 0")
    _require(
        t.device == "auto" or t.device == "cpu" or t.device.startswith("cuda"),
        "train.device",
        "must be auto, cpu, cuda or cuda:N",
    )

    s = c.self_training
    _require(s.color_jitter_strength >= 0, "self_training.color_jitter_strength", "must be >= 0")
    _require(s.rcs_temperature > 0, "self_training.rcs_temperature", "must be > 0")
    _require(s.rcs_min_pixels >= 0, "self_training.rcs_min_pixels", "must be >= 0")
    _require(s.fdist_weight >= 0, "self_training.fdist_weight", "must be >= 0")
    _require(s.mic_weight >= 0, "self_training.mic_weight", "must be >= 0")
    _require(s.target_weight >= 0, "self_training.target_weight", "must be >= 0")
    _require(s.mic_block_size >= 1, "self_training.mic_block_size", "must be >= 1")
    if s.fdist_weight > 0:  # in DUDA the large student trains with the base method
        weights = "auxiliary_pretrained" if c.method == "duda" else "student_pretrained"
        _require(bool(getattr(m, weights)), "self_training.fdist_weight", f"feature distance needs model.{weights}")

    d = c.duda
    _require(0 <= d.pre_adaptation <= 1, "duda.pre_adaptation", "must be a share in [0, 1]")
    _require(0 <= d.ramp <= 1, "duda.ramp", "must be a share in [0, 1]")
    _require(d.pre_adaptation + d.ramp <= 1, "duda.ramp", "pre_adaptation + ramp must be <= 1")
    _require(d.ramp_shape in ("linear", "cosine", "step"), "duda.ramp_shape", "must be linear, cosine or step")
    _require(d.kd_weight >= 0, "duda.kd_weight", "must be >= 0")
    _require(d.temperature > 0, "duda.temperature", "must be > 0")
    _require(d.inconsistency_gamma >= 0, "duda.inconsistency_gamma", "must be >= 0")
    _require(
        len(d.inconsistency_clip) == 2 and 0 < d.inconsistency_clip[0] <= 1 <= d.inconsistency_clip[1],
        "duda.inconsistency_clip",
        "must be [low, high] with 0 < low <= 1 <= high",
    )
    for i, teacher in enumerate(d.teachers):
        _require(teacher in ("ema", "auxiliary", "student_ema"), f"duda.teachers[{i}]", "must be ema, auxiliary or student_ema")
    _require(bool(d.teachers) or bool(d.frozen_teachers), "duda.teachers", "DUDA needs at least one teacher")
    _require(len(set(d.teachers)) == len(d.teachers), "duda.teachers", "name each teacher once")
    _require(d.fusion in ("mean", "confidence"), "duda.fusion", "must be mean or confidence")

    e = c.eval
    _require(e.mode in ("whole", "slide"), "eval.mode", "must be whole or slide")
    _require(len(e.window) == 2 and min(e.window) >= 32, "eval.window", "must be [H, W], each >= 32")
    _require(
        len(e.stride) == 2 and all(0 < s <= w for s, w in zip(e.stride, e.window, strict=True)),
        "eval.stride",
        "must be [H, W] with 0 < stride <= window",
    )
    _require(e.class_subset in ("", "synthia16", "synthia13"), "eval.class_subset", "must be '', synthia16 or synthia13")
    if e.class_subset:
        _require(c.classes.preset == "cityscapes", "eval.class_subset", "SYNTHIA subsets need the cityscapes classes")

    _check_ranges(c)


def _numbers(value: Any) -> list[float]:
    if isinstance(value, list):
        return [number for item in value for number in _numbers(item)]
    return [value]


def _check_ranges(c: ExperimentConfig) -> None:
    """Every number within its field's range: what a run can use (checked after the messages above)."""
    for leaf in config_leaves():
        if leaf.range is None:
            continue
        for number in _numbers(leaf_value(c, leaf.name)):
            _require(number in leaf.range, leaf.name, f"must be in {leaf.range.describe(leaf.scalar)}")
