#!/usr/bin/env python
"""Django's command-line utility; configuration errors end with one clear message."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    from webapp.startup import StartupError

    try:
        from django.core.management import execute_from_command_line

        execute_from_command_line(sys.argv)
    except StartupError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
