"""Gzip for JSON answers only: Django's ``GZipMiddleware`` limited to ``application/json``, at
compression level 1.

Pages are left uncompressed on purpose: they carry the CSRF token, and compressing a secret next to
text an attacker can reflect leaks it through the compressed size (BREACH). JSON answers hold no
token (the API reads it from the cookie and the ``X-CSRFToken`` header, which are never compressed).
Static files are compressed by WhiteNoise as before; downloads (``application/octet-stream``, with
Range) are not touched.

Level 1, not Django's 6: on a compare of 12 long runs (652 KB of JSON) level 6 took 46 ms of the
server's CPU for 299 KB, level 1 9 ms for 308 KB (3 % more bytes for a fifth of the time).
"""

from __future__ import annotations

import gzip

from django.middleware.gzip import GZipMiddleware, re_accepts_gzip
from django.utils.cache import patch_vary_headers

COMPRESS_LEVEL = 1


class JsonGZipMiddleware(GZipMiddleware):
    def process_response(self, request, response):
        if not response.get("Content-Type", "").startswith("application/json"):
            return response
        if response.streaming:
            return super().process_response(request, response)
        if len(response.content) < 200 or response.has_header("Content-Encoding"):
            return response
        patch_vary_headers(response, ("Accept-Encoding",))
        if not re_accepts_gzip.search(request.META.get("HTTP_ACCEPT_ENCODING", "")):
            return response
        compressed = gzip.compress(response.content, compresslevel=COMPRESS_LEVEL, mtime=0)
        if len(compressed) >= len(response.content):
            return response
        response.content = compressed
        response.headers["Content-Length"] = str(len(compressed))
        etag = response.get("ETag")
        if etag and etag.startswith('"'):
            response.headers["ETag"] = "W/" + etag  # a strong ETag names the uncompressed bytes
        response.headers["Content-Encoding"] = "gzip"
        return response
