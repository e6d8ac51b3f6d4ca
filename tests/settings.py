"""The test suite's settings: the production settings over plain HTTP. The Django test client, the
live test servers and the server processes the tests start all speak HTTP on 127.0.0.1, so the HTTPS
redirect, HSTS and Secure cookies are off (the processes inherit the variable)."""

import os

os.environ.setdefault("DUDA_INSECURE_HTTP", "1")

from webapp.settings import *  # noqa: E402, F403
