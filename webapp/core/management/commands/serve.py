"""``manage.py serve``: check PostgreSQL/Redis, then serve HTTP and websockets with daphne."""

from django.conf import settings
from django.core.management.base import BaseCommand

from webapp.core.embedded import run_daphne
from webapp.startup import check_services


class Command(BaseCommand):
    help = "Serve the web app (HTTP + websockets) with daphne after checking the configured services."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args, host: str, port: int, **options):
        check_services(settings.DATABASES["default"], settings.REDIS_URL or None)
        self.stdout.write(f"DUDA Studio serving at http://{host}:{port}/", ending="\n")
        self.stdout.flush()
        run_daphne(host, port)
