"""``manage.py worker``: one Celery worker process for one GPU (or the CPU)."""

import os
import socket

from django.conf import settings
from django.core.management.base import BaseCommand

from webapp.startup import check_services


class Command(BaseCommand):
    help = "Run one Celery worker that trains one run at a time on one GPU."

    def add_arguments(self, parser):
        parser.add_argument("--gpu", default=os.environ.get("DUDA_WORKER_GPU", ""), help="GPU index (empty: CPU or all visible)")
        parser.add_argument("--loglevel", default="INFO")

    def handle(self, *args, gpu: str, loglevel: str, **options):
        check_services(settings.DATABASES["default"], settings.REDIS_URL or None)
        if gpu != "":
            os.environ["CUDA_VISIBLE_DEVICES"] = gpu
            os.environ["DUDA_WORKER_GPU"] = gpu
        from workers.celery_app import app

        hostname = f"gpu{gpu}@{socket.gethostname()}" if gpu != "" else f"cpu@{socket.gethostname()}"
        worker = app.Worker(hostname=hostname, pool="solo", concurrency=1, loglevel=loglevel, prefetch_multiplier=1)
        worker.start()
