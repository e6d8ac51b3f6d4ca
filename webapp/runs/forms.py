"""The launch form: the same fields as the API's ``RunCreateInput``, turned into the same ``LaunchSpec``."""

from __future__ import annotations

import re

from django import forms

from webapp.runs import catalog, inputs, selectors
from webapp.runs.api.serializers import parse_crop_size
from webapp.runs.services import launch

NUMBER = {"inputmode": "numeric"}
MAX_OVERRIDES_LENGTH = 20_000
_CONFIG_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,7}")


class AsciiIntegerField(forms.IntegerField):
    """A whole number written in ASCII digits (Django's own also reads "١٢" and "3.0")."""

    widget = forms.NumberInput(attrs=NUMBER)

    def to_python(self, value):
        text = str(value).strip() if value is not None else ""
        if text and not re.fullmatch(r"[-+]?[0-9]{1,30}", text):
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return super().to_python(text)


class AsciiFloatField(forms.FloatField):
    """A finite decimal number written in ASCII (Django's own also reads "١.٥")."""

    def to_python(self, value):
        text = str(value).strip() if value is not None else ""
        if text and not re.fullmatch(r"[-+]?([0-9]{1,30}(\.[0-9]{0,30})?|\.[0-9]{1,30})([eE][-+]?[0-9]{1,3})?", text):
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return super().to_python(text)


def _preset_label(preset: dict) -> str:
    return f"{preset['name']} — {preset['description']}" + (" · ImageNet weights" if preset["imagenet_weights"] else "")


def _preset_choices(heavy_first: bool) -> list:
    presets = catalog.presets()
    light = [(p["name"], _preset_label(p)) for p in presets if not p["heavy"]]
    heavy = [(p["name"], _preset_label(p)) for p in presets if p["heavy"]]
    groups = [("Light (deployable students)", light), ("Heavy (auxiliary / teacher)", heavy)]
    return groups[::-1] if heavy_first else groups


def parse_overrides(text: str) -> dict:
    """``key.sub = value`` (or ``key.sub: value``) per line; values are YAML (``3``, ``true``, ``[1, 2]``)
    without anchors or aliases (see ``inputs.yaml_value``)."""
    overrides = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        separator = "=" if "=" in line else ":" if ":" in line else None
        if separator is None:
            raise forms.ValidationError(f"line {number}: expected key = value, got {inputs.quote(line)}")
        key, value = (part.strip() for part in line.split(separator, 1))
        if not key:
            raise forms.ValidationError(f"line {number}: the key is empty")
        if not _CONFIG_KEY.fullmatch(key):
            raise forms.ValidationError(f"line {number}: {inputs.quote(key)} is not a dotted config key")
        try:
            overrides[key] = inputs.yaml_value(value) if value else ""
        except ValueError as error:
            raise forms.ValidationError(f"line {number}: {inputs.quote(value)} is not a valid value: {error}") from None
    return overrides


class RunLaunchForm(forms.Form):
    name = forms.CharField(required=False, max_length=200, help_text="defaults to method and benchmark")
    benchmark = forms.ChoiceField(required=False)
    source = forms.ChoiceField(required=False, help_text="labelled source dataset")
    target = forms.ChoiceField(required=False, help_text="target dataset (its val split must be labelled)")
    method = forms.ChoiceField()
    student = forms.ChoiceField(help_text="light backbone: the network you deploy")
    auxiliary = forms.ChoiceField(required=False, help_text="heavy backbone: DUDA's auxiliary student and teacher")
    weights = forms.ChoiceField(
        required=False, choices=list(launch.WEIGHTS_CHOICES.items()), initial=launch.WEIGHTS_AUTO,
        label="Initial weights", help_text="the presets marked “ImageNet weights” have them on this server",
    )
    iterations = AsciiIntegerField(required=False)
    crop_size = forms.CharField(required=False, help_text="H×W, e.g. 512x512")
    batch_size = AsciiIntegerField(required=False)
    seed = AsciiIntegerField(required=False)
    baseline = forms.CharField(required=False, widget=forms.Select(choices=[("auto", "latest matching source-only run")]),
                               help_text="source-only run whose predictions and per-class IoU are compared")
    teachers = forms.TypedMultipleChoiceField(
        required=False, coerce=int, widget=forms.SelectMultiple(attrs={"size": 4}),
        help_text="DUDA: finished runs whose students also teach (frozen), e.g. a heavy self-training run",
    )
    precompute_teachers = forms.BooleanField(
        required=False, label="Precompute their predictions",
        help_text="predict once before training and free their memory (saves GPU memory; see the docs for what differs)",
    )
    # advanced
    eval_interval = AsciiIntegerField(required=False)
    checkpoint_interval = AsciiIntegerField(required=False)
    log_interval = AsciiIntegerField(required=False)
    num_samples = AsciiIntegerField(required=False)
    max_val_images = AsciiIntegerField(required=False)
    num_workers = AsciiIntegerField(required=False)
    lr = AsciiFloatField(required=False, label="Learning rate")
    warmup_iters = AsciiIntegerField(required=False)
    device = forms.CharField(required=False, help_text="auto, cpu, cuda or cuda:N")
    overrides = forms.CharField(
        required=False, max_length=MAX_OVERRIDES_LENGTH,
        widget=forms.Textarea(attrs={"rows": 4, "placeholder": "self_training.mic_weight = 1.0\nduda.kd_weight = 0.5"}),
        help_text="any engine config field, one 'dotted.key = value' per line",
    )

    ADVANCED = launch.ADVANCED_FIELDS + ("overrides",)

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["teachers"].choices = [
            (run.pk, f"#{run.pk} {run.name} — {run.method}, {run.student}"
                     + (f", {run.final_miou:.1f} mIoU" if run.final_miou is not None else ""))
            for run in (selectors.teacher_candidates(user=user)[:100] if user is not None else [])
        ]
        benchmarks = catalog.toy_benchmarks()
        datasets = catalog.datasets()
        self.benchmarks = benchmarks
        self.datasets = datasets
        self.fields["benchmark"].choices = [(b["key"], b["label"]) for b in benchmarks] + [("", "— a source/target pair —")]
        self.fields["source"].choices = [("", "—")] + [(d.key, self._dataset_label(d)) for d in datasets]
        self.fields["target"].choices = [("", "—")] + [(d.key, self._dataset_label(d)) for d in datasets]
        self.fields["method"].choices = [(m["name"], m["label"]) for m in catalog.methods()]
        self.fields["student"].choices = _preset_choices(heavy_first=False)
        self.fields["auxiliary"].choices = _preset_choices(heavy_first=True)
        if not self.is_bound and benchmarks:
            defaults = benchmarks[0]["defaults"]
            self.initial.setdefault("benchmark", benchmarks[0]["key"])
            for key, value in defaults.items():
                if key in self.fields:
                    self.initial.setdefault(key, "x".join(map(str, value)) if key == "crop_size" else value)
            self.initial.setdefault("baseline", "auto")

    @staticmethod
    def _dataset_label(entry) -> str:
        if entry.toy:
            return f"{entry.label} (bundled)"
        return entry.label if entry.ok else f"{entry.label} — not usable: {entry.reason[:80]}"

    def clean_crop_size(self):
        value = self.cleaned_data.get("crop_size", "")
        if not value:
            return None
        try:
            return parse_crop_size(value)
        except ValueError as error:
            raise forms.ValidationError(str(error)) from None

    def clean_baseline(self):
        """``auto``, empty (no baseline) or a run id in ASCII digits."""
        value = self.cleaned_data.get("baseline") or ""
        if value in ("auto", ""):
            return value
        run_id = inputs.positive_int(value)
        if run_id is None:
            raise forms.ValidationError(f"{inputs.quote(value)} is not a run id")
        return run_id

    def clean_overrides(self):
        return parse_overrides(self.cleaned_data.get("overrides", ""))

    def clean(self):
        data = super().clean()
        if not data.get("benchmark") and not (data.get("source") or data.get("target")):
            self.add_error("benchmark", "choose a benchmark, or a source and a target dataset")
        return data

    def to_spec(self) -> launch.LaunchSpec:
        d = self.cleaned_data
        baseline = d.get("baseline", "auto")
        if baseline in ("auto", None):
            baseline = launch.AUTO
        elif baseline == "":
            baseline = None
        values = {name: d.get(name) for name in (
            "iterations", "crop_size", "batch_size", "seed", "eval_interval", "checkpoint_interval", "log_interval",
            "num_samples", "max_val_images", "num_workers", "lr", "warmup_iters",
        )}
        return launch.LaunchSpec(
            method=d["method"], student=d["student"], benchmark=d.get("benchmark") or "",
            source=d.get("source") or "" if not d.get("benchmark") else "",
            target=d.get("target") or "" if not d.get("benchmark") else "",
            name=d.get("name") or "", auxiliary=d.get("auxiliary") or None, device=d.get("device") or None,
            weights=d.get("weights") or launch.WEIGHTS_AUTO,
            overrides=d.get("overrides") or {}, baseline=baseline,
            teachers=list(d.get("teachers") or []) if d["method"] == "duda" else [],  # hidden for other methods
            precompute_teachers=bool(d.get("precompute_teachers")), **values,
        )

    def add_service_errors(self, error) -> None:
        """Put an ApplicationError's field errors next to their fields (the rest above the form)."""
        if not error.fields:
            self.add_error(None, error.message)
        for name, messages in error.fields.items():
            for message in messages:
                self.add_error(name if name in self.fields else None, message)
