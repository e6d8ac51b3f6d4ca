"""The Celery application: configured from Django settings (``CELERY_*``), the task names and queues.

The web app sends tasks by name (``app.send_task(RUN_ADAPTATION, ...)``) and never imports their code;
the tasks live in ``workers.tasks``, which a process that starts a worker loads (``load_worker_tasks``)
before the worker is made (``manage.py worker``, ``manage.py maintenance``, the embedded worker).

Two queues: training workers (``manage.py worker``, one task at a time) read ``TRAINING_QUEUE`` only,
where exports go too (they run on a worker's CPU, never in the web process);
the reaper goes to ``MAINTENANCE_QUEUE``, which ``manage.py maintenance`` (Celery beat and a light
worker) serves, so that it runs on time while every training worker is busy.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

TRAINING_QUEUE = "celery"  # Celery's default queue
MAINTENANCE_QUEUE = "maintenance"

RUN_ADAPTATION = "runs.run_adaptation"  # train one run: args [run_id]
EXPORT_RUN = "runs.export_run"  # package a run's student (ONNX, int8, speed, model card): args [export_id]
REAP_STALE_RUNS = "runs.reap_stale_runs"  # requeue or fail runs whose worker stopped, resend stranded ones

app = Celery("duda_studio")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_routes = {REAP_STALE_RUNS: {"queue": MAINTENANCE_QUEUE}}


def load_worker_tasks() -> None:
    """Import the tasks' code into this process. What starts a worker calls it before making the worker,
    so that the tasks are registered and beat's schedule is connected before the app is finalised."""
    import workers.tasks  # noqa: F401 - the one import of workers/ from the web side: a worker is starting
