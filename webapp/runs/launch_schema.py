"""The launch fields, defined once.

``FIELDS`` is the one list of what a launch can say. From it come the launch spec (``LaunchSpec``),
the API's input serializer (``api.serializers.RunCreateInput``), the launch form
(``forms.RunLaunchForm``), the values the form shows for a base config (``defaults``) and the
field-to-config map (``FIELD_TO_CONFIG``); a new launch option is one entry here (and, for a new
``kind``, one input field type on each side). ``data_errors`` is the one "a benchmark or a
source/target pair" rule.

A field that is absent (API) or blank (form) takes its default: for a field that sets an engine
config key, the base config's value (the benchmark's bundled config, or the recipe of a pair), which
the form shows.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Kinds of launch field; each side maps a kind to one input field type.
TEXT = "text"  # free text
KEY = "key"  # a name the server lists (a benchmark, a dataset key, a method, a preset)
CHOICE = "choice"  # one of ``LaunchField.choices``
INTEGER = "integer"
NUMBER = "number"
CROP_SIZE = "crop_size"  # [H, W]
OVERRIDES = "overrides"  # dotted engine config key -> value
BASELINE = "baseline"  # a run id, AUTO, or None (no baseline)
RUN_IDS = "run_ids"  # ids of the user's runs
FLAG = "flag"

AUTO = "auto"  # baseline: pick the latest matching source-only run
MAX_TEACHERS = 8  # extra frozen teachers of one DUDA run

# The launch field ``weights``: where the chosen networks' encoders start (``model.*_pretrained``).
WEIGHTS_AUTO, WEIGHTS_IMAGENET, WEIGHTS_RANDOM = "auto", "imagenet", "random"
WEIGHTS_CHOICES: dict[str, str] = {
    WEIGHTS_AUTO: "ImageNet weights for each network whose preset has them, random for the others",
    WEIGHTS_IMAGENET: "ImageNet weights for every network (each preset must have them)",
    WEIGHTS_RANDOM: "random initialisation",
}


@dataclass(frozen=True)
class LaunchField:
    name: str
    kind: str
    config: str = ""  # the engine config key the field sets ("" when the launch reads the field itself)
    required: bool = False
    default: Any = None  # the spec's value when the field is absent or blank (None: the base config's)
    advanced: bool = False  # shown folded on the form
    label: str = ""  # the form's label ("" derives it from the name)
    help: str = ""
    max_length: int | None = None  # text; for RUN_IDS, the most ids
    choices: Mapping[str, str] | None = None  # CHOICE: value -> description


FIELDS: tuple[LaunchField, ...] = (
    # the data: a bundled benchmark, or a source/target pair
    LaunchField("benchmark", KEY, default="", help="a bundled toy benchmark, or blank for a source/target pair"),
    LaunchField("source", KEY, default="", help="labelled source dataset"),
    LaunchField("target", KEY, default="", help="target dataset (its val split must be labelled)"),
    LaunchField("name", TEXT, default="", max_length=200, help="defaults to method and benchmark"),
    # method and networks
    LaunchField("method", KEY, config="method", required=True),
    LaunchField("student", KEY, config="model.student", required=True,
                help="light backbone: the network you deploy"),
    LaunchField("auxiliary", KEY, config="model.auxiliary",
                help="heavy backbone: DUDA's auxiliary student and teacher"),
    LaunchField("weights", CHOICE, default=WEIGHTS_AUTO, choices=WEIGHTS_CHOICES, label="Initial weights",
                help="where the networks start; the presets marked “ImageNet weights” have them on this server "
                     "(an override of model.*_pretrained wins)"),
    LaunchField("baseline", BASELINE, default=AUTO,
                help="source-only run whose predictions and per-class IoU are compared "
                     "(the latest matching one unless named; none when empty)"),
    LaunchField("with_baselines", FLAG, default=False, label="Also run its baselines",
                help="beside this adaptation run, the source-only and the light self-training runs with the same "
                     "student, data, crop, iterations and seed; a matching run of yours is reused, not trained again "
                     "(the source-only one is then this run's baseline)"),
    LaunchField("teachers", RUN_IDS, default=(), max_length=MAX_TEACHERS,
                help="DUDA: finished runs whose students also teach (frozen), e.g. a heavy self-training run"),
    LaunchField("precompute_teachers", FLAG, default=False, label="Precompute their predictions",
                help="DUDA: predict with those teachers once, before training, and free their memory "
                     "(saves GPU memory; see the docs for what differs)"),
    # training
    LaunchField("iterations", INTEGER, config="train.iterations"),
    LaunchField("crop_size", CROP_SIZE, config="train.crop_size", help="H×W, e.g. 512x512"),
    LaunchField("batch_size", INTEGER, config="train.batch_size"),
    LaunchField("seed", INTEGER, config="seed"),
    # advanced
    LaunchField("eval_interval", INTEGER, config="train.eval_interval", advanced=True),
    LaunchField("checkpoint_interval", INTEGER, config="train.checkpoint_interval", advanced=True),
    LaunchField("log_interval", INTEGER, config="train.log_interval", advanced=True),
    LaunchField("num_samples", INTEGER, config="train.num_samples", advanced=True),
    LaunchField("max_val_images", INTEGER, config="train.max_val_images", advanced=True),
    LaunchField("num_workers", INTEGER, config="train.num_workers", advanced=True),
    LaunchField("device", TEXT, config="train.device", advanced=True, help="auto, cpu, cuda or cuda:N"),
    LaunchField("lr", NUMBER, config="optim.lr", advanced=True, label="Learning rate"),
    LaunchField("warmup_iters", INTEGER, config="optim.warmup_iters", advanced=True),
    LaunchField("overrides", OVERRIDES, default={}, advanced=True, help="any engine config field"),
)  # fmt: skip

BY_NAME: dict[str, LaunchField] = {f.name: f for f in FIELDS}
FIELD_TO_CONFIG: dict[str, str] = {f.name: f.config for f in FIELDS if f.config}  # fields that set one config key
CONFIG_TO_FIELD: dict[str, str] = {config: name for name, config in FIELD_TO_CONFIG.items()}
ADVANCED_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.advanced)

_SPEC_TYPES = {TEXT: "str", KEY: "str", CHOICE: "str", INTEGER: "int | None", NUMBER: "float | None",
               CROP_SIZE: "list[int] | None", OVERRIDES: "dict[str, Any]", BASELINE: "int | str | None",
               RUN_IDS: "list[int]", FLAG: "bool"}


def _spec_field(f: LaunchField) -> tuple[str, str, Any]:
    kind_type = _SPEC_TYPES[f.kind] if f.default is not None or f.required else f"{_SPEC_TYPES[f.kind]} | None"
    if f.required:
        return f.name, kind_type, dataclasses.field()
    if isinstance(f.default, (dict, list, tuple)):
        empty = type(f.default) if not isinstance(f.default, tuple) else list
        return f.name, kind_type, dataclasses.field(default_factory=lambda d=f.default, t=empty: t(copy.deepcopy(d)))
    return f.name, kind_type, dataclasses.field(default=f.default)


LaunchSpec = dataclasses.make_dataclass("LaunchSpec", [_spec_field(f) for f in FIELDS], kw_only=True)
LaunchSpec.__module__ = __name__
LaunchSpec.__doc__ = ("What the launch form and the API both produce: one attribute per entry of ``FIELDS``, "
                      "keyword-only. ``None`` keeps the base config's value.")


def launch_spec(values: Mapping[str, Any]) -> Any:
    """The ``LaunchSpec`` of one input's validated values: a value that is absent, ``None`` or ``""``
    takes the field's default, except ``baseline``, where ``None`` means no baseline."""
    given = {}
    for f in FIELDS:
        if f.name in values and (f.kind == BASELINE or values[f.name] not in (None, "")):
            given[f.name] = values[f.name]
    return LaunchSpec(**given)


def data_errors(*, benchmark: str, source: str, target: str) -> dict[str, list[str]]:
    """The data a launch names: a benchmark, or both a source and a target dataset (errors by field)."""
    if benchmark:
        return {}
    if not source and not target:
        return {"benchmark": ["choose a benchmark, or a source and a target dataset"]}
    return {side: [f"choose a {side} dataset, or a benchmark"]
            for side, key in (("source", source), ("target", target)) if not key}


def defaults(config: Mapping[str, Any]) -> dict[str, Any]:
    """The value of every field that sets a config key, read from a full engine config as a dict."""
    values = {}
    for name, dotted in FIELD_TO_CONFIG.items():
        node: Any = config
        for key in dotted.split("."):
            node = node[key]
        values[name] = list(node) if isinstance(node, tuple) else node
    return values
