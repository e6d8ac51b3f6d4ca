"""Untrusted web input (query strings, URL parts, form text) turned into plain values, or refused.

Numbers are ASCII digits only (``str.isdigit`` also accepts "²" and "١", which ``int`` then rejects
or reads); text has no NUL or other control characters and a bounded length; YAML has no anchors or
aliases and a bounded depth; JSON and YAML data hold text only (no lone surrogate, which both can
spell as ``\\ud800`` and neither PostgreSQL nor UTF-8 takes). Every message quotes at most a short
prefix of the bad value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from webapp.runs.errors import ApplicationError

MAX_ID = 2**63 - 1  # PostgreSQL's bigint: the widest primary key
MAX_TEXT_LENGTH = 200  # a filter or search value
MAX_IDS = 100  # entries of an id list
MAX_YAML_DEPTH = 8  # nested lists and mappings in one YAML value
QUOTE_LENGTH = 80

# The run list's filters: query parameter -> keyword of selectors.run_list (the API and its schema read this).
RUN_LIST_FILTERS = {"status": "status", "method": "method", "q": "query", "target": "target",
                    "benchmark": "benchmark", "student": "student"}

_DIGITS = re.compile(r"[0-9]{1,19}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")
LONE_SURROGATE = "holds a lone surrogate (\\ud800-\\udfff), which is no text"


def quote(value: Any, length: int = QUOTE_LENGTH) -> str:
    """``repr`` of at most the first ``length`` characters of ``value``, with "…" when cut."""
    text = str(value)
    return repr(text[:length] + "…") if len(text) > length else repr(text)


def positive_int(text: str) -> int | None:
    """The id that ``text`` spells in ASCII digits (1 to ``MAX_ID``), or None."""
    if not _DIGITS.fullmatch(text):
        return None
    value = int(text)
    return value if 1 <= value <= MAX_ID else None


def _invalid(name: str, message: str) -> ApplicationError:
    return ApplicationError.invalid(f"{name}: {message}", fields={name: [message]})


def text_param(params: Mapping[str, str], name: str, *, max_length: int = MAX_TEXT_LENGTH) -> str:
    """A one-line text parameter ("" when absent): no control characters, at most ``max_length``."""
    value = params.get(name, "")
    if _CONTROL.search(value):
        raise _invalid(name, f"{quote(value)} contains a control character")
    if len(value) > max_length:
        raise _invalid(name, f"{quote(value)} is longer than {max_length} characters")
    return value


def run_list_filters(params: Mapping[str, str]) -> dict[str, str]:
    """The keywords of ``selectors.run_list`` from a request's query parameters."""
    return {keyword: text_param(params, name) for name, keyword in RUN_LIST_FILTERS.items()}


def id_list(params: Mapping[str, str], name: str, *, max_count: int = MAX_IDS) -> list[int]:
    """Comma-separated ids ("1,2,3"; blank entries skipped); anything else is refused."""
    entries = [entry.strip() for entry in params.get(name, "").split(",")]
    entries = [entry for entry in entries if entry]
    if len(entries) > max_count:
        raise _invalid(name, f"at most {max_count} ids")
    ids = []
    for entry in entries:
        value = positive_int(entry)
        if value is None:
            raise _invalid(name, f"{quote(entry)} is not a run id")
        ids.append(value)
    return ids


def int_param(params: Mapping[str, str], name: str, *, default: int, low: int, high: int) -> int:
    """A whole number in ASCII digits, clamped to ``[low, high]``; ``default`` when absent."""
    value = params.get(name)
    if value is None or value == "":
        return default
    if not re.fullmatch(r"[0-9]+", value):
        raise _invalid(name, f"{quote(value)} is not a whole number")
    number = int(value) if len(value) <= 19 else high
    return max(low, min(high, number))


def yaml_value(text: str, *, max_depth: int = MAX_YAML_DEPTH) -> Any:
    """One YAML value as plain JSON data (str, int, float, bool, None, lists, string-keyed mappings).

    Anchors and aliases are refused before anything is built, so a few hundred bytes of nested
    aliases cannot expand into millions of nodes; so is nesting deeper than ``max_depth``.
    Raises ValueError with the reason.
    """
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                raise ValueError("YAML anchors and aliases (& and *) are not accepted")
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                depth += 1
                if depth > max_depth:
                    raise ValueError(f"nested deeper than {max_depth} levels")
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                depth -= 1
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ValueError("not valid YAML") from None
    _check_plain(value)
    return value


def check_json_value(value: Any, *, max_depth: int = MAX_YAML_DEPTH) -> None:
    """ValueError when ``value`` (JSON data) nests lists and mappings deeper than ``max_depth``, as
    ``yaml_value`` counts them, or when a string or key in it holds a lone surrogate; walked without
    recursion, so any depth the JSON parser took is answered."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str) and _SURROGATE.search(item):
            raise ValueError(f"{quote(item)} {LONE_SURROGATE}")
        if isinstance(item, (list, dict)):
            if depth > max_depth:
                raise ValueError(f"nested deeper than {max_depth} levels")
            pending.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
            if isinstance(item, dict):
                pending.extend((key, depth) for key in item)


def _check_plain(value: Any) -> None:
    if isinstance(value, str) and _SURROGATE.search(value):
        raise ValueError(f"{quote(value)} {LONE_SURROGATE}")
    if isinstance(value, (str, bool, int, float)) or value is None:
        return
    if isinstance(value, list):
        for item in value:
            _check_plain(item)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"mapping key {repr(key)[:QUOTE_LENGTH]} is not a string")
            _check_plain(key)
            _check_plain(item)
        return
    raise ValueError(f"a {type(value).__name__} is not accepted (write it as a quoted string)")
