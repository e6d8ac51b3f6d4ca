from django.urls import path

from webapp.runs.api import views

urlpatterns = [
    path("auth/token/", views.TokenApi.as_view(), name="api-token"),
    path("runs/", views.RunListCreateApi.as_view(), name="api-runs"),
    path("runs/compare/", views.CompareApi.as_view(), name="api-runs-compare"),
    path("runs/<int:run_id>/", views.RunDetailApi.as_view(), name="api-run"),
    path("runs/<int:run_id>/cancel/", views.RunCancelApi.as_view(), name="api-run-cancel"),
    path("runs/<int:run_id>/resume/", views.RunResumeApi.as_view(), name="api-run-resume"),
    path("runs/<int:run_id>/metrics/", views.RunMetricsApi.as_view(), name="api-run-metrics"),
    path("runs/<int:run_id>/class-iou/", views.RunClassIouApi.as_view(), name="api-run-class-iou"),
    path("runs/<int:run_id>/samples/", views.RunSamplesApi.as_view(), name="api-run-samples"),
    path("runs/<int:run_id>/samples/<int:sample_id>/image/", views.SampleImageApi.as_view(), name="api-run-sample-image"),
    path("runs/<int:run_id>/checkpoints/", views.RunCheckpointsApi.as_view(), name="api-run-checkpoints"),
    path("runs/<int:run_id>/checkpoints/<str:checkpoint>/download/", views.CheckpointDownloadApi.as_view(),
         name="api-run-checkpoint-download"),
    path("runs/<int:run_id>/group/", views.RunGroupApi.as_view(), name="api-run-group"),
    path("runs/<int:run_id>/exports/", views.RunExportsApi.as_view(), name="api-run-exports"),
    path("runs/<int:run_id>/exports/<int:export_id>/", views.RunExportApi.as_view(), name="api-run-export"),
    path("runs/<int:run_id>/exports/<int:export_id>/files/<str:kind>/", views.ExportFileDownloadApi.as_view(),
         name="api-run-export-file"),
    path("runs/<int:run_id>/events/", views.RunEventsApi.as_view(), name="api-run-events"),
    path("datasets/", views.DatasetsApi.as_view(), name="api-datasets"),
    path("launch-options/", views.LaunchOptionsApi.as_view(), name="api-launch-options"),
    path("baselines/", views.BaselinesApi.as_view(), name="api-baselines"),
]
