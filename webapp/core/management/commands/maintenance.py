"""``manage.py maintenance``: the deployment's one Celery beat, in a light worker that also serves the
maintenance queue beat sends to (the reaper of stale and stranded runs). It never trains, so the
reaper runs on time while every GPU worker is busy with a run."""

import socket

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connections

from webapp.startup import check_services


class Command(BaseCommand):
    help = "Run Celery beat and a light worker for its maintenance tasks (one per deployment, never a training run)."

    def add_arguments(self, parser):
        parser.add_argument("--schedule", default=str(settings.DATA_DIR / "celerybeat-schedule"),
                            help="Celery beat's schedule file")
        parser.add_argument("--loglevel", default="INFO")

    def handle(self, *args, schedule: str, loglevel: str, **options):
        check_services(settings.DATABASES["default"], settings.REDIS_URL or None)
        from webapp.celery_app import MAINTENANCE_QUEUE, app, load_worker_tasks

        load_worker_tasks()

        connections.close_all()  # beat runs in a forked child: it must not share this process's connections
        worker = app.Worker(hostname=f"maintenance@{socket.gethostname()}", pool="solo", concurrency=1,
                            loglevel=loglevel, prefetch_multiplier=1, queues=[MAINTENANCE_QUEUE],
                            beat=True, schedule_filename=schedule)
        worker.start()
