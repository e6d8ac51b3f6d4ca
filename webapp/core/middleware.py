"""Requests whose query string holds a NUL character are refused with 400 before any view reads them.

The app's own views parse input through ``webapp.runs.inputs``; this covers the views it does not
write (the admin's filters and search), which pass query values into SQL, where PostgreSQL refuses a
NUL with an error (a 500). Under ``/api/`` the 400 takes the API's error shape (ApiErrorMiddleware).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest


class RefuseNulMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if any("\x00" in key or any("\x00" in value for value in values) for key, values in request.GET.lists()):
            return HttpResponseBadRequest("a query parameter holds a NUL character", content_type="text/plain")
        return self.get_response(request)
