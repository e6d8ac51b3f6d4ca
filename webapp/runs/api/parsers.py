"""The API's JSON parser: DRF's, also refusing what Python's json module would turn into a server
error or a value no field can hold: nesting deeper than the interpreter's recursion limit
(``[[[[...``) and numbers too large for a float (``1e999`` would become infinity)."""

from __future__ import annotations

import codecs
import math

from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.utils import json


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text[:40]}")
    return value


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        encoding = parsers.get_encoding(parser_context or {})
        parse_constant = json.strict_constant if self.strict else None
        try:
            return json.load(codecs.getreader(encoding)(stream), parse_constant=parse_constant, parse_float=_finite_float)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply") from None
        except ValueError as error:
            raise ParseError(f"JSON parse error - {error}") from None

