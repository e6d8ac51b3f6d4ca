"""Admin requests whose query string holds a NUL character are refused with 400 before a view reads them.

The app's own pages and API parse input through ``webapp.runs.inputs``, which names the parameter at
fault; the admin's filters and search are Django's, and pass query values into SQL, where PostgreSQL
refuses a NUL with an error (a 500).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest

ADMIN_PREFIX = "/admin/"


class RefuseNulMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(ADMIN_PREFIX) and _holds_nul(request):
            return HttpResponseBadRequest("a query parameter holds a NUL character", content_type="text/plain")
        return self.get_response(request)


def _holds_nul(request: HttpRequest) -> bool:
    return any("\x00" in key or any("\x00" in value for value in values) for key, values in request.GET.lists())
