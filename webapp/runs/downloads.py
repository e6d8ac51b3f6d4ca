"""Streaming file downloads with Content-Length, a strong ETag and single Range requests.

The body is read in chunks as it is sent, never whole: under ASGI (daphne) from an async iterator,
since Django drains a *sync* iterator into a list before sending it there; under WSGI from a sync one.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

CHUNK = 1 << 20
_RANGE = re.compile(r"bytes=([0-9]{0,18})-([0-9]{0,18})")  # ASCII digits; longer numbers: the header is ignored


def file_chunks(path: Path, start: int, length: int, chunk: int = CHUNK) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        handle.seek(start)
        remaining = length
        while remaining > 0:
            block = handle.read(min(chunk, remaining))
            if not block:
                break
            remaining -= len(block)
            yield block


async def afile_chunks(path: Path, start: int, length: int, chunk: int = CHUNK) -> AsyncIterator[bytes]:
    handle = await asyncio.to_thread(open, path, "rb")
    try:
        await asyncio.to_thread(handle.seek, start)
        remaining = length
        while remaining > 0:
            block = await asyncio.to_thread(handle.read, min(chunk, remaining))
            if not block:
                break
            remaining -= len(block)
            yield block
    finally:
        handle.close()


def parse_range(header: str, size: int) -> tuple[int, int] | str | None:
    """``(start, end)`` inclusive for one satisfiable range, ``"unsatisfiable"``, or None to ignore
    the header (malformed, or several ranges: the whole file is sent, as RFC 9110 allows)."""
    match = _RANGE.fullmatch(header.strip().replace(" ", ""))
    if not match:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # suffix: the last N bytes
        count = int(last)
        if count == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - count), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        return "unsatisfiable"
    return start, min(end, size - 1)


def _is_asgi(request: HttpRequest) -> bool:
    return isinstance(getattr(request, "_request", request), ASGIRequest)


def stream_file(request, path: Path, *, etag: str, filename: str, content_type: str = "application/octet-stream") -> HttpResponse:
    """A 200, 206, 304 or 416 response for ``path`` honouring Range, If-Range and If-None-Match."""
    size = path.stat().st_size
    quoted = f'"{etag}"'
    common = {"ETag": quoted, "Accept-Ranges": "bytes", "Cache-Control": "private, no-transform"}

    if_none_match = request.META.get("HTTP_IF_NONE_MATCH", "")
    if if_none_match and (if_none_match.strip() == "*" or quoted in [t.strip() for t in if_none_match.split(",")]):
        response = HttpResponse(status=304)
        for key, value in common.items():
            response[key] = value
        return response

    start, end, status = 0, size - 1, 200
    header = request.META.get("HTTP_RANGE", "")
    if_range = request.META.get("HTTP_IF_RANGE", "").strip()
    if header and (not if_range or if_range == quoted):
        parsed = parse_range(header, size)
        if parsed == "unsatisfiable":
            response = HttpResponse(status=416)
            response["Content-Range"] = f"bytes */{size}"
            for key, value in common.items():
                response[key] = value
            return response
        if isinstance(parsed, tuple):
            start, end = parsed
            status = 206
    length = max(0, end - start + 1)

    if request.method == "HEAD":
        response = HttpResponse(status=status, content_type=content_type)
    else:
        body = afile_chunks(path, start, length) if _is_asgi(request) else file_chunks(path, start, length)
        response = StreamingHttpResponse(body, status=status, content_type=content_type)
    response["Content-Length"] = str(length)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    for key, value in common.items():
        response[key] = value
    if status == 206:
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
    return response
