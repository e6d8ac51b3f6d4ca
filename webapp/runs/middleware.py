"""Every answer under ``/api/`` that is an error is JSON in the API's error shape, also where no DRF
view handled the request: an unknown URL (``/api/runs/null/``), Django's own 400 and 500 pages, a
range that cannot be served (416), a response another middleware gives, and a body over
``DATA_UPLOAD_MAX_MEMORY_SIZE``, refused with 413 before it is read."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.deprecation import MiddlewareMixin

from webapp.runs.errors import error_response

API_PREFIX = "/api/"
_KEPT_AS_IS = ("content-type", "content-length")  # every other header (Allow, WWW-Authenticate, ...) is kept


def _content_length(request: HttpRequest) -> int:
    try:
        return max(0, int(request.META.get("CONTENT_LENGTH") or 0))
    except ValueError:
        return 0


def _is_json(response: HttpResponse) -> bool:
    media_type = response.get("Content-Type", "").split(";", 1)[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


def _as_json_error(response: HttpResponse) -> HttpResponse:
    """The same status, headers and cookies with a JSON error body."""
    replacement = error_response(response.status_code)
    for name, value in response.headers.items():
        if name.lower() not in _KEPT_AS_IS:
            replacement[name] = value
    replacement.cookies = response.cookies
    return replacement


class ApiErrorMiddleware(MiddlewareMixin):
    def process_request(self, request: HttpRequest) -> HttpResponse | None:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if request.path_info.startswith(API_PREFIX) and limit is not None and _content_length(request) > limit:
            return error_response(413, f"the request body is larger than {limit} bytes")
        return None

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if (request.path_info.startswith(API_PREFIX) and response.status_code >= 400 and not response.streaming
                and not _is_json(response)):
            return _as_json_error(response)
        return response
