from django.urls import path

from webapp.runs import views

app_name = "runs"

urlpatterns = [
    path("", views.runs_list, name="list"),
    path("new/", views.run_new, name="new"),
    path("compare/", views.runs_compare, name="compare"),
    path("datasets/status/", views.datasets_status, name="datasets_status"),
    path("<int:run_id>/", views.run_detail, name="detail"),
    path("<int:run_id>/gallery/", views.run_gallery, name="gallery"),
    path("<int:run_id>/<str:action>/", views.run_action, name="action"),
]
