"""Gzip for JSON answers only (Django's ``GZipMiddleware``, limited to ``application/json``).

Pages are left uncompressed on purpose: they carry the CSRF token, and compressing a secret next to
text an attacker can reflect leaks it through the compressed size (BREACH). JSON answers hold no
token (the API reads it from the cookie and the ``X-CSRFToken`` header, which are never compressed).
Static files are compressed by WhiteNoise as before; downloads (``application/octet-stream``, with
Range) are not touched.
"""

from __future__ import annotations

from django.middleware.gzip import GZipMiddleware


class JsonGZipMiddleware(GZipMiddleware):
    def process_response(self, request, response):
        if not response.get("Content-Type", "").startswith("application/json"):
            return response
        return super().process_response(request, response)
