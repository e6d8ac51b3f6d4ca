"""One application error type and one DRF exception handler: every API error has the same shape::

    {"error": {"code": "invalid", "message": "...", "fields": {"crop_size": ["..."]}}}

``fields`` maps an input field to its messages; it is always there, ``{}`` when no field is at fault.
Errors that never reach a DRF view (an unknown URL, a body over the size limit, Django's own 400 and
500 pages) get the same shape from ``webapp.runs.middleware.ApiErrorMiddleware``.
"""

from __future__ import annotations

from http import HTTPStatus

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class ApplicationError(Exception):
    """A request the application refuses, with an HTTP status, a code and optional field errors."""

    def __init__(self, message: str, *, code: str = "invalid", status_code: int = 400, fields: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status_code = status_code
        self.fields = fields or {}

    @classmethod
    def not_found(cls, what: str = "run") -> ApplicationError:
        return cls(f"{what} not found", code="not_found", status_code=404)

    @classmethod
    def conflict(cls, message: str) -> ApplicationError:
        return cls(message, code="conflict", status_code=409)

    @classmethod
    def invalid(cls, message: str, fields: dict[str, list[str]] | None = None) -> ApplicationError:
        return cls(message, code="invalid", status_code=400, fields=fields)

    def as_dict(self) -> dict:
        return error_body(self.code, self.message, self.fields)


def error_body(code: str, message: str, fields: dict[str, list[str]] | None = None) -> dict:
    """The body of every API error."""
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


# The code of an error by its HTTP status where no DRF exception names one (DRF's names where it has one).
STATUS_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "request_too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    429: "throttled",
    500: "server_error",
}


def error_response(status_code: int, message: str = "") -> JsonResponse:
    """An API error answered outside DRF, coded by its status (``404`` -> ``not_found``)."""
    code = STATUS_CODES.get(status_code, "server_error" if status_code >= 500 else "error")
    try:
        phrase = HTTPStatus(status_code).phrase.lower()
    except ValueError:
        phrase = "error"
    return JsonResponse(error_body(code, message or phrase), status=status_code)


def _flatten(detail, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested ValidationError detail -> {"field": ["message", ...]} with dotted keys."""
    fields: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = key if not prefix else f"{prefix}.{key}"
            if key == "non_field_errors" and not prefix:
                name = "__all__"
            for sub_key, messages in _flatten(value, name).items():
                fields.setdefault(sub_key, []).extend(messages)
    elif isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            fields[prefix or "__all__"] = [str(item) for item in detail]
        else:
            for index, item in enumerate(detail):
                for sub_key, messages in _flatten(item, f"{prefix}[{index}]").items():
                    fields.setdefault(sub_key, []).extend(messages)
    else:
        fields[prefix or "__all__"] = [str(detail)]
    return fields


def api_exception_handler(exc, context):
    """The REST_FRAMEWORK EXCEPTION_HANDLER: ApplicationError and DRF's errors in one shape."""
    if isinstance(exc, ApplicationError):
        return Response(exc.as_dict(), status=exc.status_code)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # an unexpected error: Django's 500 handling (and logging) applies
    if isinstance(exc, exceptions.ValidationError):
        error = ApplicationError.invalid("the input is not valid", fields=_flatten(exc.detail))
    else:
        code = getattr(exc, "default_code", "error")
        if response.status_code == status.HTTP_404_NOT_FOUND:
            code = "not_found"
        error = ApplicationError(str(getattr(exc, "detail", exc)), code=code, status_code=response.status_code)
    response.data = error.as_dict()
    return response
