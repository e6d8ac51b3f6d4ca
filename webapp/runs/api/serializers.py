"""Small input and output serializers, one pair per operation where they differ."""

from __future__ import annotations

import re

from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.authtoken.serializers import AuthTokenSerializer

from webapp.runs import curves, inputs, launch_schema, selectors
from webapp.runs.models import Checkpoint, Export, ExportFile, Run, RunEvent


def parse_crop_size(value) -> list[int]:
    """``[H, W]``, ``"HxW"``, ``"H, W"`` or one number for a square crop."""
    if isinstance(value, bool):
        raise ValueError("must be [H, W] or 'HxW'")
    if isinstance(value, int):
        return [value, value]
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ValueError("must be two integers [H, W]")
        return [int(v) for v in value]
    if isinstance(value, str):
        parts = [p for p in re.split(r"[x×X,\s]+", value.strip()) if p]
        sides = [inputs.positive_int(p) for p in parts]  # ASCII digits only
        if len(sides) == 1 and sides[0] is not None:
            return sides * 2
        if len(sides) == 2 and None not in sides:
            return sides
    raise ValueError("must be [H, W] or 'HxW', e.g. 512x512")


@extend_schema_field({"oneOf": [{"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
                             {"type": "string", "example": "512x512"}, {"type": "integer"}]})
class CropSizeField(serializers.Field):
    default_error_messages = {"invalid": "{message}"}

    def to_internal_value(self, data):
        try:
            return parse_crop_size(data)
        except ValueError as error:
            self.fail("invalid", message=str(error))

    def to_representation(self, value):
        return list(value)


_ASCII_NUMBER = re.compile(r"\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*")


class AsciiIntegerField(serializers.IntegerField):
    """A whole number; written as text, in ASCII digits only (``int`` also reads "١٢" and "１２")."""

    def to_internal_value(self, data):
        if isinstance(data, str) and not _ASCII_NUMBER.fullmatch(data):
            self.fail("invalid")
        return super().to_internal_value(data)


class AsciiFloatField(serializers.FloatField):
    """A number; written as text, in ASCII digits only (``float`` also reads "١.٥")."""

    def to_internal_value(self, data):
        if isinstance(data, str) and not _ASCII_NUMBER.fullmatch(data):
            self.fail("invalid")
        return super().to_internal_value(data)


def _launch_input_field(f: launch_schema.LaunchField) -> serializers.Field:
    """The API's input field for a launch field (absent: its default)."""
    common = {"required": f.required, "help_text": f.help or None}
    if f.kind in (launch_schema.TEXT, launch_schema.KEY):
        return serializers.CharField(allow_blank=not f.required, max_length=f.max_length, **common)
    if f.kind == launch_schema.CHOICE:
        help_text = f"{f.help}: " + "; ".join(f"{k}: {v}" for k, v in f.choices.items())
        return serializers.ChoiceField(choices=list(f.choices.items()), default=f.default, help_text=help_text)
    if f.kind == launch_schema.INTEGER:
        return AsciiIntegerField(**common)
    if f.kind == launch_schema.NUMBER:
        return AsciiFloatField(**common)
    if f.kind == launch_schema.CROP_SIZE:
        return CropSizeField(**common)
    if f.kind == launch_schema.OVERRIDES:
        return serializers.DictField(required=False, help_text="dotted engine config keys -> values")
    if f.kind == launch_schema.BASELINE:
        return AsciiIntegerField(required=False, allow_null=True,
                                 help_text="source-only baseline run id; absent: the latest match; null: none")
    if f.kind == launch_schema.RUN_IDS:
        return serializers.ListField(child=AsciiIntegerField(), max_length=f.max_length, **common)
    if f.kind == launch_schema.FLAG:
        return serializers.BooleanField(**common)
    raise ValueError(f"no API input field for launch field kind {f.kind!r}")


class RunCreateInput(serializers.Serializer):
    """Launch a run: a bundled ``benchmark`` or a ``source``/``target`` pair of dataset keys. Every
    other field is optional and keeps the base config's value when absent. Values are validated by the
    engine's own config validator; errors come back keyed by these field names. The fields are
    ``launch_schema.FIELDS``."""

    def get_fields(self):
        return {f.name: _launch_input_field(f) for f in launch_schema.FIELDS}

    def validate_overrides(self, overrides):
        for key, value in overrides.items():
            try:
                inputs.check_json_value(key)
                inputs.check_json_value(value)
            except ValueError as error:
                raise serializers.ValidationError(f"{inputs.quote(key)}: {error}") from None
        return overrides

    def validate(self, attrs):
        errors = launch_schema.data_errors(
            benchmark=attrs.get("benchmark", ""), source=attrs.get("source", ""), target=attrs.get("target", "")
        )
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def to_spec(self):
        return launch_schema.launch_spec(self.validated_data)


class RunOutput(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.get_username", read_only=True)
    progress = serializers.FloatField(read_only=True)
    eta_seconds = serializers.FloatField(read_only=True, allow_null=True)
    can_cancel = serializers.BooleanField(read_only=True)
    can_resume = serializers.BooleanField(read_only=True)
    can_delete = serializers.BooleanField(read_only=True)
    page = serializers.SerializerMethodField()
    baseline = serializers.SerializerMethodField(
        help_text="the source-only run compared with: the one named at launch, or the latest matching one (auto)")
    group = serializers.SerializerMethodField(
        help_text="the group this run leads (its baselines), or the id of the group whose launch created it")

    class Meta:
        model = Run
        fields = [
            "id", "name", "owner", "method", "benchmark", "source_dataset", "target_dataset", "student", "auxiliary",
            "status", "cancel_requested", "step", "total_steps", "progress", "eta_seconds", "seconds_per_step",
            "attempts", "worker_host", "worker_gpu", "heartbeat_at", "error_message", "best_miou", "final_miou",
            "baseline", "created_at", "started_at", "finished_at", "can_cancel", "can_resume", "can_delete", "page",
            "group",
        ]
        read_only_fields = fields

    def get_page(self, run) -> str:
        return f"/runs/{run.pk}/"

    def get_baseline(self, run) -> int | None:
        known = self.context.get("baseline_ids", {})  # a list's auto baselines, found for the whole page
        if run.pk in known:
            return known[run.pk]
        baseline = selectors.baseline_of(run)
        return baseline.pk if baseline is not None else None

    @extend_schema_field({"type": "object", "nullable": True, "properties": {
        "id": {"type": "integer"}, "lead": {"type": "integer"}, "runs": {"type": "array", "items": {"type": "object"}}}})
    def get_group(self, run):
        group = selectors.group_of(run)
        if group is None:
            return None
        if group.lead_id == run.pk:
            return selectors.group_summary(group)
        return {"id": group.pk, "lead": group.lead_id, "runs": []}


class RunDetailOutput(RunOutput):
    config = serializers.JSONField(read_only=True)

    class Meta(RunOutput.Meta):
        fields = [*RunOutput.Meta.fields, "config", "output_dir"]
        read_only_fields = fields


class MetricSeriesOutput(serializers.Serializer):
    step = serializers.ListField(child=serializers.IntegerField())
    value = serializers.ListField(child=serializers.FloatField())
    downsampled = serializers.BooleanField(help_text="true: min and max of each pixel's bucket, not every point")
    count = serializers.IntegerField(required=False, help_text="points stored in the range (answers with width)")
    bucket_steps = serializers.IntegerField(required=False,
                                            help_text="steps per bucket (buckets from step 0) when downsampled")


class MetricsOutput(serializers.Serializer):
    """Documents the answer's shape; the view builds the dict itself (no per-point serializer)."""

    run = serializers.IntegerField()
    since = serializers.IntegerField(allow_null=True)
    start = serializers.IntegerField(allow_null=True)
    end = serializers.IntegerField(allow_null=True)
    width = serializers.IntegerField(allow_null=True, help_text="pixels the curves were downsampled to; null: every point")
    downsampled = serializers.BooleanField(help_text="true when any series is downsampled")
    last_step = serializers.IntegerField(allow_null=True)
    next = serializers.IntegerField(allow_null=True, help_text="more points follow: ask again with since=next")
    series = serializers.DictField(child=MetricSeriesOutput(), help_text="name -> {step: [...], value: [...]}")


MAX_STEP = curves.MAX_STEP  # a step is stored as a PostgreSQL integer
MAX_CURVE_WIDTH = 8000  # pixels; a 4K screen's width with room to spare


class MetricsQuery(serializers.Serializer):
    since = AsciiIntegerField(required=False, min_value=-1, max_value=MAX_STEP,
                              help_text="only points with step > since (pages)")
    start = AsciiIntegerField(required=False, min_value=0, max_value=MAX_STEP, help_text="only points with step >= start")
    end = AsciiIntegerField(required=False, min_value=0, max_value=MAX_STEP, help_text="only points with step <= end")
    names = serializers.CharField(required=False, allow_blank=True, max_length=4000)
    width = AsciiIntegerField(required=False, min_value=1, max_value=MAX_CURVE_WIDTH,
                              help_text="downsample each curve to this many pixels (min and max per pixel)")
    limit = AsciiIntegerField(required=False, min_value=1, max_value=100000, help_text="points per page (every point)")

    def validate(self, attrs):
        if "width" in attrs and "since" in attrs:
            raise serializers.ValidationError({"since": ["pages (since) serve every point; leave out width"]})
        start, end = attrs.get("start"), attrs.get("end")
        if start is not None and end is not None and end < start:
            raise serializers.ValidationError({"end": ["must not be below start"]})
        return attrs


class CheckpointOutput(serializers.ModelSerializer):
    download = serializers.SerializerMethodField()

    class Meta:
        model = Checkpoint
        fields = ["id", "step", "kind", "size", "sha256", "created_at", "download"]

    def get_download(self, checkpoint) -> str:
        return f"/api/runs/{checkpoint.run_id}/checkpoints/{checkpoint.pk}/download/"


class ExportFileOutput(serializers.ModelSerializer):
    download = serializers.SerializerMethodField()

    class Meta:
        model = ExportFile
        fields = ["kind", "name", "size", "sha256", "download"]

    def get_download(self, exported) -> str:
        export = exported.export
        return f"/api/runs/{export.run_id}/exports/{export.pk}/files/{exported.kind}/"


class ExportOutput(serializers.ModelSerializer):
    """An export of a run's student: status, then its files, the float and int8 files' target mIoU
    (re-measured on the target's validation set), their agreement and their CPU speed, and the model card."""

    files = ExportFileOutput(many=True, read_only=True)
    speed = serializers.JSONField(help_text="per file kind and input size: images_per_second, latency_p50_ms, "
                                            "latency_p95_ms, height, width, runs, threads")
    per_class = serializers.JSONField(help_text="kind (float, int8) -> class name -> target IoU")
    card = serializers.JSONField(help_text="the model card, as model_card.json holds it")

    class Meta:
        model = Export
        fields = ["id", "run", "status", "checkpoint_step", "input_height", "input_width", "float_max_abs_diff",
                  "float_argmax_agreement", "int8_argmax_agreement", "float_miou", "int8_miou", "per_class", "speed",
                  "files", "card", "worker_host", "error_message", "created_at", "started_at", "finished_at"]
        read_only_fields = fields


class RunEventOutput(serializers.ModelSerializer):
    class Meta:
        model = RunEvent
        fields = ["id", "created_at", "level", "message"]


class TokenInput(AuthTokenSerializer):
    """A username and password for an API token. A username longer than any account's is refused as
    input, before the login is checked and counted by login throttling."""

    username = serializers.CharField(
        label="Username", write_only=True,
        max_length=get_user_model()._meta.get_field(get_user_model().USERNAME_FIELD).max_length,
    )


class TokenOutput(serializers.Serializer):
    token = serializers.CharField()
