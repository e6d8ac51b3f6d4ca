"""The OpenAPI schema: each operation documents its own answers and, next to them, the errors any
request to it can meet, all in the API's error shape (``webapp.runs.errors``)."""

from __future__ import annotations

from http import HTTPStatus

from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers
from rest_framework.permissions import SAFE_METHODS


class ErrorBodyOutput(serializers.Serializer):
    code = serializers.CharField(help_text="machine-readable: invalid, not_found, not_authenticated, conflict, ...")
    message = serializers.CharField()
    fields = serializers.DictField(child=serializers.ListField(child=serializers.CharField()),
                                   help_text="input field -> messages; {} when no field is at fault")


class ErrorOutput(serializers.Serializer):
    error = ErrorBodyOutput()


class ApiSchema(AutoSchema):
    """Adds to every operation: 401 (no or bad credentials); 403 for writes (a session without its
    CSRF token); 404 where the path names an object; 400 where there is input to reject; 413 and 415
    where there is a request body. An operation's own documentation of a status wins."""

    def get_operation(self, *args, **kwargs):
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        schema = self.resolve_serializer(ErrorOutput, "response").ref
        for status in error_statuses(self.method, self.path, operation):
            operation["responses"].setdefault(str(status), {
                "description": HTTPStatus(status).phrase, "content": {"application/json": {"schema": schema}},
            })
        operation["responses"] = dict(sorted(operation["responses"].items()))
        return operation


def error_statuses(method: str, path: str, operation: dict) -> list[int]:
    has_body = "requestBody" in operation
    has_query = any(parameter["in"] == "query" for parameter in operation.get("parameters", []))
    statuses = [401]
    if method not in SAFE_METHODS:
        statuses.append(403)
    if "{" in path:
        statuses.append(404)
    if has_body or has_query:
        statuses.append(400)
    if has_body:
        statuses += [413, 415]
    return statuses
