"""``manage.py demo``: the whole app on embedded defaults, with a demo user, in one process."""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from webapp.core.embedded import run_daphne, start_embedded_worker


class Command(BaseCommand):
    help = "Run DUDA Studio on embedded defaults: SQLite, filesystem queue, in-process worker."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--username", default="demo")

    def handle(self, *args, host: str, port: int, username: str, **options):
        if not settings.EMBEDDED:
            raise CommandError("demo runs on embedded defaults: unset DATABASE_URL and REDIS_URL, or use 'serve' and 'worker'")
        settings.DATA_DIR.mkdir(parents=True, exist_ok=True)
        call_command("migrate", interactive=False, verbosity=0)
        password = secrets.token_urlsafe(9)
        user, _ = get_user_model().objects.get_or_create(username=username)
        user.set_password(password)
        user.save()
        start_embedded_worker()
        self.stdout.write(
            f"\nDUDA Studio (embedded mode) is running at http://{host}:{port}/\n"
            f"  log in as '{username}' with password '{password}'\n"
            f"  data folder: {settings.DATA_DIR}\n  stop with Ctrl+C\n"
        )
        self.stdout.flush()
        run_daphne(host, port)
