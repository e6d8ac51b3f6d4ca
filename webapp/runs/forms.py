"""The launch form: the fields of ``launch_schema.FIELDS`` (as the API's ``RunCreateInput``), turned into the
same ``LaunchSpec``."""

from __future__ import annotations

import re

from django import forms

from webapp.runs import catalog, inputs, launch_schema, recipes, selectors
from webapp.runs.api.serializers import parse_crop_size

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


# Option texts stay short enough for a select at a phone's width (about 40 characters); the chosen
# option's whole description shows under its select (``option_details``, static/js/select_details.js).
WEIGHTS_SHORT = {
    launch_schema.WEIGHTS_AUTO: "ImageNet where a preset has them",
    launch_schema.WEIGHTS_IMAGENET: "ImageNet for every network",
    launch_schema.WEIGHTS_RANDOM: "random initialisation",
}


def _preset_label(preset: dict) -> str:
    """``lite0 — EfficientNet-Lite0 · ImageNet``: the name, the backbone, and whether ImageNet weights are here."""
    backbone = preset["description"].split(" + ", 1)[0]
    return f"{preset['name']} — {backbone}" + (" · ImageNet" if preset["imagenet_weights"] else "")


def _preset_detail(preset: dict) -> str:
    return preset["description"] + (" · ImageNet weights on this server" if preset["imagenet_weights"] else "")


def _method_label(label: str) -> tuple[str, str]:
    """``DUDA (heavy teacher + …)`` -> ("DUDA", "heavy teacher + …")."""
    short, _, detail = label.partition(" (")
    return short, detail.removesuffix(")")


def option_details() -> dict[str, dict[str, str]]:
    """Per select, per value: the whole description of an option whose text is kept short."""
    presets = {p["name"]: _preset_detail(p) for p in catalog.presets()}
    return {
        "method": {m["name"]: _method_label(m["label"])[1] for m in catalog.methods()},
        "student": presets,
        "auxiliary": presets,
        "weights": dict(launch_schema.WEIGHTS_CHOICES),
    }


def _preset_choices(heavy_first: bool) -> list:
    presets = catalog.presets()
    light = [(p["name"], _preset_label(p)) for p in presets if not p["heavy"]]
    heavy = [(p["name"], _preset_label(p)) for p in presets if p["heavy"]]
    groups = [("Light (deployable students)", light), ("Heavy (auxiliary / teacher)", heavy)]
    return groups[::-1] if heavy_first else groups


def _shown(name: str, value) -> str:
    """A default as the form writes it."""
    return "x".join(map(str, value)) if name == "crop_size" else str(value)


def override_lines(text: str) -> tuple[dict, dict[str, int], list[str]]:
    """``key.sub = value`` (or ``key.sub: value``) per line; values are YAML (``3``, ``true``, ``[1, 2]``)
    without anchors or aliases (see ``inputs.yaml_value``). Blank lines and ``#`` comments are skipped.

    Returns the overrides, the line number of each key, and one message per bad line (every one, each
    starting with its line number)."""
    overrides, lines, errors = {}, {}, []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        separator = "=" if "=" in line else ":" if ":" in line else None
        if separator is None:
            errors.append(f"line {number}: expected key = value, got {inputs.quote(line)}")
            continue
        key, value = (part.strip() for part in line.split(separator, 1))
        if not key:
            errors.append(f"line {number}: the key is empty")
            continue
        if not _CONFIG_KEY.fullmatch(key):
            errors.append(f"line {number}: {inputs.quote(key)} is not a dotted config key")
            continue
        if key in lines:
            errors.append(f"line {number}: {key} is set again (first on line {lines[key]})")
            continue
        try:
            overrides[key] = inputs.yaml_value(value) if value else ""
        except ValueError as error:
            errors.append(f"line {number}: {inputs.quote(value)} is not a valid value: {error}")
        lines[key] = number
    return overrides, lines, errors


def _with_line(message: str, lines: dict[str, int]) -> str:
    """``message`` ("train.iterations: must be ...") prefixed with the line of the override it names."""
    for key in sorted(lines, key=len, reverse=True):
        if message.startswith(key) and message[len(key):len(key) + 1] in (":", ".", "["):
            return f"line {lines[key]}: {message}"
    return message


def _launch_form_field(f: launch_schema.LaunchField) -> forms.Field:
    """The form's input field for a launch field (blank: its default, shown as the placeholder)."""
    common = {"required": f.required, "help_text": f.help, **({"label": f.label} if f.label else {})}
    if f.kind == launch_schema.TEXT:
        return forms.CharField(max_length=f.max_length, **common)
    if f.kind == launch_schema.KEY:
        return forms.ChoiceField(**common)  # choices: what the server lists, set per form
    if f.kind == launch_schema.CHOICE:
        return forms.ChoiceField(choices=list(f.choices.items()), initial=f.default, **common)
    if f.kind == launch_schema.INTEGER:
        return AsciiIntegerField(**common)
    if f.kind == launch_schema.NUMBER:
        return AsciiFloatField(**common)
    if f.kind == launch_schema.CROP_SIZE:
        return forms.CharField(**common)
    if f.kind == launch_schema.OVERRIDES:
        return forms.CharField(
            max_length=MAX_OVERRIDES_LENGTH, **{**common, "help_text": f"{f.help}, one 'dotted.key = value' per line"},
            widget=forms.Textarea(attrs={"rows": 4, "placeholder": "self_training.mic_weight = 1.0\nduda.kd_weight = 0.5"}),
        )
    if f.kind == launch_schema.BASELINE:
        return forms.CharField(widget=forms.Select(choices=[(launch_schema.AUTO, "latest matching source-only run")]),
                               **common)
    if f.kind == launch_schema.RUN_IDS:
        return forms.TypedMultipleChoiceField(coerce=int, widget=forms.SelectMultiple(attrs={"size": 4}), **common)
    if f.kind == launch_schema.FLAG:
        return forms.BooleanField(**common)
    raise ValueError(f"no form field for launch field kind {f.kind!r}")


class RunLaunchForm(forms.Form):
    """The fields of ``launch_schema.FIELDS``; a blank field takes its default, which its placeholder shows."""

    ADVANCED = launch_schema.ADVANCED_FIELDS

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields = {f.name: _launch_form_field(f) for f in launch_schema.FIELDS}
        self.override_lines: dict[str, int] = {}  # each override's line in the text (for the engine's errors)
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
        self.fields["method"].choices = [(m["name"], _method_label(m["label"])[0]) for m in catalog.methods()]
        self.fields["weights"].choices = [(value, WEIGHTS_SHORT.get(value, text)) for value, text in
                                          launch_schema.WEIGHTS_CHOICES.items()]
        self.fields["student"].choices = _preset_choices(heavy_first=False)
        self.fields["auxiliary"].choices = _preset_choices(heavy_first=True)
        shown = self._base_defaults()
        for name, value in shown.items():  # a blank field takes the base config's value: show it
            widget = self.fields[name].widget
            if isinstance(widget, forms.widgets.Input):
                widget.attrs["placeholder"] = _shown(name, value)
        if not self.is_bound and benchmarks:
            self.initial.setdefault("benchmark", benchmarks[0]["key"])
            for key, value in shown.items():
                self.initial.setdefault(key, _shown(key, value))
            self.initial.setdefault("baseline", launch_schema.AUTO)

    def _base_defaults(self) -> dict:
        """The values of the base config this form launches on: the chosen benchmark's, a chosen pair's
        (its recipe's), or the first benchmark's before anything is chosen."""
        if self.is_bound and not self.data.get("benchmark"):
            entries = {d.key: d for d in self.datasets}
            source, target = entries.get(self.data.get("source")), entries.get(self.data.get("target"))
            return catalog.launch_defaults(recipes.pair_base_config(source, target) if source and target else {})
        chosen = next((b for b in self.benchmarks if b["key"] == self.data.get("benchmark")), None)
        return (chosen or (self.benchmarks[0] if self.benchmarks else {})).get("defaults", {})

    @staticmethod
    def _dataset_label(entry) -> str:
        if entry.toy:
            return f"{entry.label} (bundled)"
        label = f"{entry.label} ({len(entry.class_list)} classes)" if entry.classes else entry.label
        return label if entry.ok else f"{label} — not usable: {entry.reason[:80]}"

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
        overrides, self.override_lines, errors = override_lines(self.cleaned_data.get("overrides", ""))
        if errors:
            raise forms.ValidationError(errors)
        return overrides

    def clean(self):
        data = super().clean()
        errors = launch_schema.data_errors(benchmark=data.get("benchmark") or "", source=data.get("source") or "",
                                           target=data.get("target") or "")
        for name, messages in errors.items():
            self.add_error(name, messages)
        return data

    def to_spec(self):
        values = dict(self.cleaned_data)
        if values.get("baseline") == "":
            values["baseline"] = None  # "none"
        if values.get("benchmark"):
            values["source"] = values["target"] = ""
        if values.get("method") != "duda":
            values["teachers"] = []  # hidden for other methods
        return launch_schema.launch_spec(values)

    def add_service_errors(self, error) -> None:
        """Put an ApplicationError's field errors next to their fields (the rest above the form)."""
        if not error.fields:
            self.add_error(None, error.message)
        for name, messages in error.fields.items():
            for message in messages:
                if name == "overrides":
                    message = _with_line(message, self.override_lines)
                self.add_error(name if name in self.fields else None, message)
