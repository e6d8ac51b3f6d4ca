"""The Celery application: configured from Django settings (``CELERY_*``), tasks in ``workers.tasks``.

Two queues: training workers (``manage.py worker``, one run at a time) read ``TRAINING_QUEUE`` only;
the reaper goes to ``MAINTENANCE_QUEUE``, which ``manage.py maintenance`` (Celery beat and a light
worker) serves, so that it runs on time while every training worker is busy.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

TRAINING_QUEUE = "celery"  # Celery's default queue
MAINTENANCE_QUEUE = "maintenance"

app = Celery("duda_studio")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_routes = {"runs.reap_stale_runs": {"queue": MAINTENANCE_QUEUE}}
app.autodiscover_tasks(["workers"], related_name="tasks", force=True)
