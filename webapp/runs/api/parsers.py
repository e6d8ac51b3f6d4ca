"""The API's JSON parser: DRF's, also answering a body nested deeper than the interpreter's recursion
limit (``[[[[...``) with a 400 parse error, where Python's json module would raise RecursionError."""

from __future__ import annotations

from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply") from None
