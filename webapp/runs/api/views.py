"""REST API: one class per operation; validate -> service or selector -> serialize."""

from __future__ import annotations

import json

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from webapp.runs import catalog, downloads, inputs, selectors
from webapp.runs.api.schema import ErrorOutput
from webapp.runs.api.serializers import (
    MAX_CURVE_WIDTH,
    CheckpointOutput,
    ExportOutput,
    MetricsOutput,
    MetricsQuery,
    RunCreateInput,
    RunDetailOutput,
    RunEventOutput,
    RunOutput,
    TokenInput,
    TokenOutput,
)
from webapp.runs.errors import ApplicationError
from webapp.runs.models import ExportFileKind
from webapp.runs.services import exports, launch, lifecycle


class BinaryRenderer(BaseRenderer):
    """Lets binary views answer any Accept header; errors are still JSON, and say so."""

    media_type = "*/*"
    format = "bin"
    charset = None

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, bytes):
            return data
        response = (renderer_context or {}).get("response")
        if response is not None:
            response["Content-Type"] = "application/json"
        return json.dumps(data).encode()


class RunPagination(LimitOffsetPagination):
    """``limit`` and ``offset`` in ASCII digits (400 otherwise), clamped to what can be served."""

    default_limit = 100
    max_limit = 500

    def get_limit(self, request):
        return inputs.int_param(request.query_params, self.limit_query_param, default=self.default_limit, low=1,
                                high=self.max_limit)

    def get_offset(self, request):
        return inputs.int_param(request.query_params, self.offset_query_param, default=0, low=0, high=inputs.MAX_ID)

    def paginate_queryset(self, queryset, request, view=None):
        """DRF's, with the page read by ``selectors.run_page`` (ids first, then the rows)."""
        self.request = request
        self.limit, self.offset = self.get_limit(request), self.get_offset(request)
        self.count = self.get_count(queryset)
        if self.count == 0 or self.offset > self.count:
            return []
        return selectors.run_page(queryset, offset=self.offset, limit=self.limit)


class TokenApi(ObtainAuthToken):
    """The API token of a username and password; repeated failures lock that pair out for a while (429)."""

    parser_classes = api_settings.DEFAULT_PARSER_CLASSES
    serializer_class = TokenInput

    @extend_schema(operation_id="auth_token_create", request=TokenInput, responses={200: TokenOutput, 429: ErrorOutput})
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)


class RunListCreateApi(APIView):
    pagination_class = RunPagination  # also tells the schema that the list is paginated

    @extend_schema(
        operation_id="runs_list",
        parameters=[OpenApiParameter(n, str, required=False) for n in inputs.RUN_LIST_FILTERS],
        responses=RunOutput(many=True),
    )
    def get(self, request):
        runs = selectors.run_list(user=request.user, **inputs.run_list_filters(request.query_params))
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(runs, request, view=self)
        context = {"baseline_ids": selectors.auto_baseline_ids(page)}  # one query for the page, not one a run
        return paginator.get_paginated_response(RunOutput(page, many=True, context=context).data)

    @extend_schema(operation_id="runs_create", request=RunCreateInput,
                   responses={201: RunDetailOutput})
    def post(self, request):
        data = RunCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        run = launch.run_create(owner=request.user, spec=data.to_spec())
        return Response(RunDetailOutput(run).data, status=status.HTTP_201_CREATED)


class RunDetailApi(APIView):
    @extend_schema(operation_id="runs_retrieve", responses=RunDetailOutput)
    def get(self, request, run_id: int):
        return Response(RunDetailOutput(selectors.run_get(user=request.user, run_id=run_id)).data)

    @extend_schema(operation_id="runs_destroy", responses={204: None, 409: ErrorOutput})
    def delete(self, request, run_id: int):
        lifecycle.run_delete(user=request.user, run_id=run_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class RunCancelApi(APIView):
    @extend_schema(operation_id="runs_cancel", request=None, responses={200: RunOutput, 409: ErrorOutput})
    def post(self, request, run_id: int):
        return Response(RunOutput(lifecycle.run_cancel(user=request.user, run_id=run_id)).data)


class RunResumeApi(APIView):
    @extend_schema(operation_id="runs_resume", request=None, responses={200: RunOutput, 409: ErrorOutput})
    def post(self, request, run_id: int):
        return Response(RunOutput(lifecycle.run_resume(user=request.user, run_id=run_id)).data)


class RunMetricsApi(APIView):
    """A run's curves in columns. With ``width``: each curve downsampled to that many pixels over
    ``start..end`` (min and max per pixel; zoom in by narrowing the range). Without: every point,
    in pages of ``limit`` cut at whole steps; ``next`` says where the next page starts (``since``)."""

    @extend_schema(
        operation_id="runs_metrics",
        parameters=[OpenApiParameter("since", int, required=False, description="only points with step > since"),
                    OpenApiParameter("start", int, required=False, description="only points with step >= start"),
                    OpenApiParameter("end", int, required=False, description="only points with step <= end"),
                    OpenApiParameter("width", int, required=False,
                                     description="downsample each curve to this many pixels (min and max per pixel)"),
                    OpenApiParameter("limit", int, required=False, description="points per page without width"),
                    OpenApiParameter("names", str, required=False, description="comma-separated metric names")],
        responses={200: MetricsOutput, 400: ErrorOutput},
    )
    def get(self, request, run_id: int):
        run = selectors.run_get(user=request.user, run_id=run_id)
        query = MetricsQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        names = [n for n in q.get("names", "").split(",") if n] or None
        start, end, width = q.get("start"), q.get("end"), q.get("width")
        if width is not None:
            found = selectors.metric_curves(run=run, width=width, start=start, end=end, names=names)
            found["next"] = None
        else:
            since = q.get("since")
            if start is not None:
                since = max(since if since is not None else -1, start - 1)
            found = selectors.metric_page(run=run, since=since, end=end, names=names,
                                          limit=q.get("limit", selectors.METRIC_PAGE_LIMIT))
        return Response({
            "run": run.pk, "since": q.get("since"), "start": start, "end": end, "width": width,
            "downsampled": any(s["downsampled"] for s in found["series"].values()),
            "last_step": found["last_step"], "next": found["next"], "series": found["series"],
        })


class RunClassIouApi(APIView):
    @extend_schema(operation_id="runs_class_iou", responses=OpenApiTypes.OBJECT)
    def get(self, request, run_id: int):
        run = selectors.run_get(user=request.user, run_id=run_id)
        return Response(selectors.class_iou_table(run=run))


class RunSamplesApi(APIView):
    @extend_schema(operation_id="runs_samples", responses=OpenApiTypes.OBJECT)
    def get(self, request, run_id: int):
        run = selectors.run_get(user=request.user, run_id=run_id)
        return Response(selectors.samples_index(run=run))


class SampleImageApi(APIView):
    renderer_classes = [JSONRenderer, BinaryRenderer]

    @extend_schema(operation_id="runs_sample_image", responses={(200, "image/png"): OpenApiTypes.BINARY})
    def get(self, request, run_id: int, sample_id: int):
        run = selectors.run_get(user=request.user, run_id=run_id)
        sample = selectors.sample_get(run=run, sample_id=sample_id)
        try:
            data = sample.run.resolve(sample.path).read_bytes()
        except (OSError, ValueError):
            raise ApplicationError.not_found("sample image") from None
        response = HttpResponse(data, content_type="image/png")
        response["Cache-Control"] = "private, max-age=31536000, immutable"
        return response


class RunCheckpointsApi(APIView):
    @extend_schema(operation_id="runs_checkpoints", responses=CheckpointOutput(many=True))
    def get(self, request, run_id: int):
        run = selectors.run_get(user=request.user, run_id=run_id)
        return Response(CheckpointOutput(selectors.checkpoints_of(run=run), many=True).data)


class CheckpointDownloadApi(APIView):
    """Streams a checkpoint: Content-Length, ETag = sha256, Range (206) and If-Range for resuming."""

    renderer_classes = [JSONRenderer, BinaryRenderer]

    @extend_schema(
        operation_id="runs_checkpoint_download",
        parameters=[OpenApiParameter("checkpoint", str, OpenApiParameter.PATH,
                                     description="a checkpoint id, or 'student' / 'full' for the latest of that kind")],
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY,
                   (206, "application/octet-stream"): OpenApiTypes.BINARY,
                   304: OpenApiResponse(description="not modified (If-None-Match)"),
                   416: ErrorOutput},
    )
    def get(self, request, run_id: int, checkpoint: str):
        run = selectors.run_get(user=request.user, run_id=run_id)
        found = selectors.checkpoint_get(run=run, checkpoint=checkpoint)
        try:
            path = run.resolve(found.path)
        except ValueError:
            raise ApplicationError.not_found("checkpoint file") from None
        if not path.is_file():
            raise ApplicationError.not_found("checkpoint file")
        filename = f"run{run.pk}-{found.kind}-step{found.step}.pt"
        return downloads.stream_file(request, path, etag=found.sha256, filename=filename)

    def head(self, request, run_id: int, checkpoint: str):
        return self.get(request, run_id, checkpoint)


class RunGroupApi(APIView):
    """The run's group (it was launched with its baselines): source-only, self-training and the launched
    run side by side, target mIoU and per-class IoU, and the gains. 404 when the run is in no group."""

    @extend_schema(operation_id="runs_group", responses=OpenApiTypes.OBJECT)
    def get(self, request, run_id: int):
        run = selectors.run_get(user=request.user, run_id=run_id)
        group = selectors.group_of(run)
        if group is None:
            raise ApplicationError.not_found("group")
        return Response(selectors.group_table(group))


class RunExportsApi(APIView):
    @extend_schema(operation_id="runs_exports_list", responses=ExportOutput(many=True))
    def get(self, request, run_id: int):
        run = selectors.run_get(user=request.user, run_id=run_id)
        return Response(ExportOutput(selectors.exports_of(run=run), many=True).data)

    @extend_schema(
        operation_id="runs_exports_create", request=None,
        description="Package the run's student on a worker: float ONNX verified against PyTorch, int8 ONNX "
                    "(static calibration on target training images), both re-measured on the target's validation "
                    "set and timed at the training crop and 1024x512, and a model card. An export already queued or "
                    "running is answered instead of a second one (200).",
        responses={201: ExportOutput, 200: ExportOutput, 409: ErrorOutput},
    )
    def post(self, request, run_id: int):
        export, created = exports.export_create(user=request.user, run_id=run_id)
        return Response(ExportOutput(export).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class RunExportApi(APIView):
    @extend_schema(operation_id="runs_exports_retrieve", responses=ExportOutput)
    def get(self, request, run_id: int, export_id: int):
        run = selectors.run_get(user=request.user, run_id=run_id)
        return Response(ExportOutput(selectors.export_get(run=run, export_id=export_id)).data)


class ExportFileDownloadApi(APIView):
    """Streams an exported file (float / int8 ONNX, torch.export program, model card): Content-Length,
    ETag = sha256, Range."""

    renderer_classes = [JSONRenderer, BinaryRenderer]

    @extend_schema(
        operation_id="runs_export_file_download",
        parameters=[OpenApiParameter("kind", str, OpenApiParameter.PATH, enum=ExportFileKind.values)],
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY,
                   (206, "application/octet-stream"): OpenApiTypes.BINARY,
                   304: OpenApiResponse(description="not modified (If-None-Match)"),
                   416: ErrorOutput},
    )
    def get(self, request, run_id: int, export_id: int, kind: str):
        run = selectors.run_get(user=request.user, run_id=run_id)
        exported = selectors.export_file_get(export=selectors.export_get(run=run, export_id=export_id), kind=kind)
        try:
            path = run.resolve(exported.path)
        except ValueError:
            raise ApplicationError.not_found("export file") from None
        if not path.is_file():
            raise ApplicationError.not_found("export file")
        content_type = {"card_md": "text/markdown", "card_json": "application/json"}.get(kind, "application/octet-stream")
        return downloads.stream_file(request, path, etag=exported.sha256, filename=exported.name, content_type=content_type)

    def head(self, request, run_id: int, export_id: int, kind: str):
        return self.get(request, run_id, export_id, kind)


class RunEventsApi(APIView):
    @extend_schema(operation_id="runs_events", parameters=[OpenApiParameter("limit", int, required=False)],
                   responses={200: RunEventOutput(many=True), 400: ErrorOutput})
    def get(self, request, run_id: int):
        run = selectors.run_get(user=request.user, run_id=run_id)
        limit = inputs.int_param(request.query_params, "limit", default=200, low=1, high=1000)
        return Response(RunEventOutput(selectors.events_tail(run=run, limit=limit), many=True).data)


class DatasetsApi(APIView):
    @extend_schema(operation_id="datasets_list", responses=OpenApiTypes.OBJECT)
    def get(self, request):
        from django.conf import settings

        return Response({
            "datasets_root": str(settings.DATASETS_ROOT) if settings.DATASETS_ROOT else None,
            "benchmarks": catalog.toy_benchmarks(),
            "datasets": [entry.as_dict() for entry in catalog.datasets()],
        })


class LaunchOptionsApi(APIView):
    @extend_schema(operation_id="launch_options", responses=OpenApiTypes.OBJECT)
    def get(self, request):
        return Response({
            "methods": catalog.methods(),
            "presets": catalog.presets(),
            "benchmarks": catalog.toy_benchmarks(),
            "datasets": [entry.as_dict() for entry in catalog.datasets()],
        })


class BaselinesApi(APIView):
    @extend_schema(operation_id="baselines_list",
                   parameters=[OpenApiParameter("target", str), OpenApiParameter("student", str)],
                   responses={200: RunOutput(many=True), 400: ErrorOutput})
    def get(self, request):
        runs = selectors.baseline_candidates(user=request.user, target_dataset=inputs.text_param(request.query_params, "target"),
                                             student=inputs.text_param(request.query_params, "student"))
        return Response(RunOutput(runs[:50], many=True).data)


class CompareApi(APIView):
    @extend_schema(operation_id="runs_compare", parameters=[OpenApiParameter("ids", str, description="run ids, comma-separated"),
                               OpenApiParameter("names", str, required=False,
                                                description="the curves to send, comma-separated (none: no curves)"),
                               OpenApiParameter("width", int, required=False, description="pixels per curve"),
                               OpenApiParameter("start", int, required=False, description="first step drawn"),
                               OpenApiParameter("end", int, required=False, description="last step drawn")],
                   responses={200: OpenApiTypes.OBJECT, 400: ErrorOutput})
    def get(self, request):
        ids = inputs.id_list(request.query_params, "ids")[:12]
        names = [n for n in inputs.text_param(request.query_params, "names", max_length=2000).split(",") if n][:20]
        width = inputs.int_param(request.query_params, "width", default=800, low=1, high=MAX_CURVE_WIDTH)
        start, end = (inputs.int_param(request.query_params, key, default=0, low=0, high=inputs.MAX_ID)
                      if request.query_params.get(key) else None for key in ("start", "end"))
        return Response(selectors.compare_data(user=request.user, run_ids=ids, names=names, width=width,
                                               start=start, end=end))
