"""``manage.py worker``: one Celery worker process for one GPU, for several GPUs (each run data-parallel
over all of them), or for the CPU."""

import os
import socket

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from webapp.startup import check_services


class Command(BaseCommand):
    help = "Run one Celery worker that trains one run at a time on one GPU, or data-parallel on several."

    def add_arguments(self, parser):
        parser.add_argument("--gpu", default=os.environ.get("DUDA_WORKER_GPU", ""),
                            help="GPU index, or a comma-separated list to train each run data-parallel over "
                                 "them (empty: CPU or the first visible GPU)")
        parser.add_argument("--ranks", type=int, default=int(os.environ.get("DUDA_WORKER_RANKS", "1")),
                            help="without --gpu: data-parallel processes on the CPU (gloo); default 1")
        parser.add_argument("--loglevel", default="INFO")

    def handle(self, *args, gpu: str, ranks: int, loglevel: str, **options):
        check_services(settings.DATABASES["default"], settings.REDIS_URL or None)
        gpus = [g.strip() for g in gpu.split(",") if g.strip()]
        if any(not g.isdigit() for g in gpus):
            raise CommandError(f"--gpu: expected GPU indices like 0 or 0,1, got {gpu!r}")
        if ranks < 1:
            raise CommandError("--ranks: must be >= 1")
        if gpus:
            gpu = ",".join(gpus)
            os.environ["CUDA_VISIBLE_DEVICES"] = gpu
            os.environ["DUDA_WORKER_GPU"] = gpu
            ranks = len(gpus)
        os.environ["DUDA_WORKER_RANKS"] = str(ranks)
        from webapp.celery_app import TRAINING_QUEUE, app, load_worker_tasks

        load_worker_tasks()

        hostname = f"gpu{gpu.replace(',', '-')}@{socket.gethostname()}" if gpus else f"cpu@{socket.gethostname()}"
        worker = app.Worker(hostname=hostname, pool="solo", concurrency=1, loglevel=loglevel, prefetch_multiplier=1,
                            queues=[TRAINING_QUEUE])
        worker.start()
