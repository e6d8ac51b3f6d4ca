"""Login throttling with django-axes: after ``AXES_FAILURE_LIMIT`` wrong passwords for one username
from one address, that pair is refused (even with the right password) for ``AXES_COOLOFF_TIME``.
It covers every web login: the login page, the admin and the API's token endpoint."""

from __future__ import annotations

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from webapp.runs.errors import ApplicationError


class LoginThrottleBackend(AxesStandaloneBackend):
    """Axes' lockout check, placed before the backend that checks passwords.

    DRF hands ``authenticate()`` its own request object, which wraps Django's: the check runs on
    Django's, so that the middleware sees the lockout and answers 429. A call without a request
    (a shell, the test client's ``login()``) is no web login: nothing to throttle.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        request = getattr(request, "_request", request)
        return super().authenticate(request, username=username, password=password, **kwargs)


ATTEMPT_USERNAME_LENGTH = 255  # axes stores a failed login's username in a varchar(255)


def attempt_username(request: HttpRequest, credentials: dict | None = None) -> str | None:
    """The username a login attempt is counted under (axes' own choice: the credentials, else the
    posted form), cut to what axes stores: a longer one typed on a login page is a failed login."""
    username = (credentials or request.POST).get(settings.AXES_USERNAME_FORM_FIELD)
    return username[:ATTEMPT_USERNAME_LENGTH] if isinstance(username, str) else username


def lockout_message() -> str:
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    return f"Too many failed logins for this account from this address: try again in {minutes} minutes."


def locked_out(request: HttpRequest, original_response: HttpResponse | None = None, credentials: dict | None = None) -> HttpResponse:
    """What a locked-out login gets: the API's error shape under /api/, the login page otherwise."""
    if request.path.startswith("/api/"):
        error = ApplicationError(lockout_message(), code="locked_out", status_code=429)
        return JsonResponse(error.as_dict(), status=error.status_code)
    return render(request, "registration/locked_out.html", {"message": lockout_message()}, status=429)
