"""A run's curves: storing their points and drawing them on a number of pixels.

Every point is stored (``MetricPoint``) and stays pageable. Beside the points, each curve keeps its
blocks (``CurveBlock``): over blocks of 16, 256, 4,096 and 65,536 steps, how many points a block holds
and its lowest and highest point, updated in the transaction that stores the points. A curve is drawn
on ``width`` pixels by cutting its steps into buckets of whole blocks and keeping each bucket's lowest
and highest point, so drawing reads a few thousand blocks instead of every point, and is exact: the
extremes of a bucket made of whole blocks are the extremes of those blocks. Where a range's edges cut
a block, the points of the cut part are read themselves.

Extremes are ordered by (value, step): a bucket's low is its lowest value at its first step, its high
its highest value at its last step.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from django.db import connection

BLOCK_STEPS = (16, 256, 4096, 65536)  # each block size 16 times the last: a curve reads at most ~16 blocks a pixel
MAX_STEP = 2**31 - 1  # the step column's largest value (PostgreSQL integer)
_ROWS_PER_STATEMENT = 1000


# --------------------------------------------------------------------------------------------
# Storing
# --------------------------------------------------------------------------------------------


def store_points(run_id: int, points: list[tuple[int, str, float]]) -> int:
    """Store the finite points not stored yet (a point already stored (run, step, name) is kept as it
    is) and fold them into the curve's blocks; call inside the transaction that holds the run.
    Returns how many points were new."""
    rows = [(run_id, int(step), name[:64], float(value)) for step, name, value in points
            if value is not None and math.isfinite(value)]
    new: list[tuple[int, str, float]] = []
    with connection.cursor() as cursor:
        for chunk in _chunks(rows):
            cursor.execute(
                "INSERT INTO runs_metricpoint (run_id, step, name, value) VALUES "
                + ", ".join(["(%s, %s, %s, %s)"] * len(chunk))
                + " ON CONFLICT (run_id, step, name) DO NOTHING RETURNING step, name, value",
                [field for row in chunk for field in row])
            new += cursor.fetchall()
    by_name: dict[str, list[tuple[int, float]]] = {}
    for step, name, value in new:
        by_name.setdefault(name, []).append((step, value))
    blocks = []
    for name, found in by_name.items():
        steps = np.array([s for s, _ in found], dtype=np.int64)
        values = np.array([v for _, v in found], dtype=np.float64)
        blocks += blocks_of(run_id, name, steps, values)
    fold_blocks(blocks)
    return len(new)


def blocks_of(run_id: int, name: str, steps: np.ndarray, values: np.ndarray) -> list[tuple]:
    """The block rows (run, name, steps, block, count, low step, low value, high step, high value) of
    one curve's points, for every block size."""
    if not len(steps):
        return []
    rows = []
    for size in BLOCK_STEPS:
        blocks, lows, highs, counts = group_extremes(steps // size, steps, values)
        rows += [(run_id, name, size, int(b), int(c), int(steps[lo]), float(values[lo]), int(steps[hi]), float(values[hi]))
                 for b, c, lo, hi in zip(blocks, counts, lows, highs, strict=True)]
    return rows


def group_extremes(groups: np.ndarray, steps: np.ndarray, values: np.ndarray):
    """Per group (in group order): the group, the index of its lowest and of its highest point (by
    value, then step) and how many points it has."""
    order = np.lexsort((steps, values, groups))  # by group, then value, then step
    ordered = groups[order]
    firsts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    lasts = np.r_[firsts[1:] - 1, len(order) - 1]
    return ordered[firsts], order[firsts], order[lasts], lasts - firsts + 1


_FOLD_SQL = """
INSERT INTO runs_curveblock (run_id, name, steps, block, count, low_step, low_value, high_step, high_value)
VALUES {values}
ON CONFLICT (run_id, name, steps, block) DO UPDATE SET
    count = runs_curveblock.count + excluded.count,
    low_step = CASE WHEN excluded.low_value < runs_curveblock.low_value OR (excluded.low_value = runs_curveblock.low_value
        AND excluded.low_step < runs_curveblock.low_step) THEN excluded.low_step ELSE runs_curveblock.low_step END,
    low_value = CASE WHEN excluded.low_value < runs_curveblock.low_value THEN excluded.low_value ELSE runs_curveblock.low_value END,
    high_step = CASE WHEN excluded.high_value > runs_curveblock.high_value OR (excluded.high_value = runs_curveblock.high_value
        AND excluded.high_step > runs_curveblock.high_step) THEN excluded.high_step ELSE runs_curveblock.high_step END,
    high_value = CASE WHEN excluded.high_value > runs_curveblock.high_value THEN excluded.high_value ELSE runs_curveblock.high_value END
"""


def fold_blocks(rows: list[tuple]) -> None:
    """Merge block rows of newly stored points into the stored blocks (counts add, extremes compete)."""
    with connection.cursor() as cursor:
        for chunk in _chunks(rows):
            cursor.execute(_FOLD_SQL.format(values=", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(chunk))),
                           [field for row in chunk for field in row])


def rebuild_blocks(run_id: int) -> int:
    """Compute a run's blocks again from its stored points (for points written around
    ``store_points``: a bulk load, the migration that added blocks); returns how many block rows it wrote."""
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM runs_curveblock WHERE run_id = %s", [run_id])
    written = 0
    for name in metric_names(run_id):
        rows = blocks_of(run_id, name, *curve_arrays(run_id=run_id, name=name))
        fold_blocks(rows)
        written += len(rows)
    return written


def _chunks(rows: list) -> list[list]:
    return [rows[i:i + _ROWS_PER_STATEMENT] for i in range(0, len(rows), _ROWS_PER_STATEMENT)]


# --------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------


def drawn_curves(*, run_id: int, width: int, start: int | None = None, end: int | None = None,
                 names: list[str] | None = None) -> dict[str, Any]:
    """Each curve of the run (or ``names``) in ``start..end`` as drawn on ``width`` pixels.

    A curve with no more than ``2 * width`` points there comes whole (``downsampled`` false).
    Otherwise the steps are cut into buckets of ``bucket_steps`` steps each (from step 0; at most
    ``width`` buckets over the points found) and each bucket's lowest and highest point are kept, so
    every spike shows. ``count`` is how many points the curve has in the range, all pageable.
    """
    a = 0 if start is None else max(0, start)
    b = MAX_STEP if end is None else min(end, MAX_STEP)
    extents = {name: _extent(run_id, name, a, b) for name in (names or metric_names(run_id))}
    extents = {name: extent for name, extent in extents.items() if extent is not None}
    if not extents:
        return {"series": {}, "last_step": None}
    lo = min(first for first, _ in extents.values())  # one grid for every curve: they line up
    hi = max(last for _, last in extents.values())
    bucket = max(1, math.ceil((hi - lo + 1) / max(1, width - 1)))  # at most `width` buckets over lo..hi
    block = max((size for size in BLOCK_STEPS if size <= bucket), default=None)
    if block is not None:
        bucket = block * math.ceil(bucket / block)  # whole blocks in each bucket
    series: dict[str, dict[str, Any]] = {}
    for name in extents:
        if block is not None:
            steps, values, count = _block_extremes(run_id, name, a, b, block)
            if count <= 2 * width:
                steps, values = curve_arrays(run_id=run_id, name=name, lo=a, hi=b)
        else:
            steps, values = curve_arrays(run_id=run_id, name=name, lo=a, hi=b)
            count = len(steps)
        column: dict[str, Any] = {"count": count, "downsampled": count > 2 * width}
        if column["downsampled"]:
            keep = bucket_extremes(steps, values, bucket=bucket)
            steps, values = steps[keep], values[keep]
            column["bucket_steps"] = bucket
        series[name] = {"step": steps.tolist(), "value": values.tolist(), **column}
    return {"series": series, "last_step": hi}


def bucket_extremes(steps: np.ndarray, values: np.ndarray, *, bucket: int) -> np.ndarray:
    """Indices (in step order, no repeats) of the lowest and highest point of each bucket of ``bucket``
    steps (``step // bucket``); ``steps`` ascending, ties broken by step as the blocks do."""
    _, lows, highs, _ = group_extremes(steps // bucket, steps, values)
    keep = np.unique(np.concatenate([lows, highs]))
    return keep[np.r_[True, steps[keep][1:] != steps[keep][:-1]]]  # one point per step


def _block_extremes(run_id: int, name: str, a: int, b: int, size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The lows and highs of the curve's blocks of ``size`` steps lying whole in ``a..b``, with the
    points of the parts of ``a..b`` that cut a block, in step order, and how many points ``a..b`` holds."""
    first, last = -(-a // size), (b + 1) // size - 1  # the blocks inside a..b
    if first > last:
        steps, values = curve_arrays(run_id=run_id, name=name, lo=a, hi=b)
        return steps, values, len(steps)
    low_steps, low_values, high_steps, high_values, count = _block_columns(run_id, name, size, first, last)
    parts_steps, parts_values = [low_steps, high_steps], [low_values, high_values]
    for lo, hi in ((a, first * size - 1), ((last + 1) * size, b)):
        if lo <= hi:
            steps, values = curve_arrays(run_id=run_id, name=name, lo=lo, hi=hi)
            parts_steps.append(steps)
            parts_values.append(values)
            count += len(steps)
    steps, values = np.concatenate(parts_steps), np.concatenate(parts_values)
    order = np.argsort(steps, kind="stable")
    return steps[order], values[order], count


# One curve as byte strings (PostgreSQL): each step as 4 and each value as 8 big-endian bytes, read
# straight into numpy arrays (no Python object per point or block). The (run, name, step) index with
# the value serves the points alone, in step order (no ORDER BY: that would sort inside the aggregate).
_CURVE_SQL = """
SELECT string_agg(int4send(step), ''::bytea), string_agg(float8send(value), ''::bytea)
FROM runs_metricpoint WHERE run_id = %s AND name = %s AND step >= %s AND step <= %s
"""
_BLOCKS_SQL = """
SELECT string_agg(int4send(low_step), ''::bytea), string_agg(float8send(low_value), ''::bytea),
       string_agg(int4send(high_step), ''::bytea), string_agg(float8send(high_value), ''::bytea), sum(count)
FROM runs_curveblock WHERE run_id = %s AND name = %s AND steps = %s AND block >= %s AND block <= %s
"""


def curve_arrays(*, run_id: int, name: str, lo: int | None = None, hi: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One curve's steps and values in ``lo..hi`` (None: no bound), in step order, as numpy arrays."""
    lo = 0 if lo is None else lo
    hi = MAX_STEP if hi is None else min(hi, MAX_STEP)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(_CURVE_SQL, [run_id, name, lo, hi])
            raw_steps, raw_values = cursor.fetchone()
            steps, values = _ints(raw_steps), _floats(raw_values)
            if len(steps) > 1 and np.any(steps[1:] < steps[:-1]):  # the aggregate kept no order: put it back
                order = np.argsort(steps, kind="stable")
                steps, values = steps[order], values[order]
            return steps, values
        cursor.execute("SELECT step, value FROM runs_metricpoint WHERE run_id = %s AND name = %s AND step >= %s "
                       "AND step <= %s ORDER BY step", [run_id, name, lo, hi])
        rows = cursor.fetchall()
    return np.array([r[0] for r in rows], dtype=np.int64), np.array([r[1] for r in rows], dtype=np.float64)


def _block_columns(run_id: int, name: str, size: int, first: int, last: int):
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(_BLOCKS_SQL, [run_id, name, size, first, last])
            low_steps, low_values, high_steps, high_values, count = cursor.fetchone()
            return _ints(low_steps), _floats(low_values), _ints(high_steps), _floats(high_values), int(count or 0)
        cursor.execute("SELECT low_step, low_value, high_step, high_value, count FROM runs_curveblock WHERE run_id = %s "
                       "AND name = %s AND steps = %s AND block >= %s AND block <= %s", [run_id, name, size, first, last])
        rows = cursor.fetchall()
    columns = [np.array([r[k] for r in rows], dtype=np.int64 if k in (0, 2) else np.float64) for k in range(4)]
    return (*columns, sum(r[4] for r in rows))


def _ints(raw: bytes | None) -> np.ndarray:
    return np.frombuffer(raw or b"", dtype=">i4").astype(np.int64)


def _floats(raw: bytes | None) -> np.ndarray:
    return np.frombuffer(raw or b"", dtype=">f8").astype(np.float64)


def _extent(run_id: int, name: str, a: int, b: int) -> tuple[int, int] | None:
    """The curve's first and last step in ``a..b`` (two probes of the (run, name, step) index)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT min(step), max(step) FROM runs_metricpoint WHERE run_id = %s AND name = %s "
                       "AND step >= %s AND step <= %s", [run_id, name, a, b])
        first, last = cursor.fetchone()
    return None if first is None else (int(first), int(last))


_NAMES_SQL = """
WITH RECURSIVE found(name) AS (
    SELECT (SELECT name FROM runs_metricpoint WHERE run_id = %s ORDER BY name LIMIT 1)
    UNION ALL
    SELECT (SELECT m.name FROM runs_metricpoint m WHERE m.run_id = %s AND m.name > found.name ORDER BY m.name LIMIT 1)
    FROM found WHERE found.name IS NOT NULL
)
SELECT name FROM found WHERE name IS NOT NULL
"""


def metric_names(run_id: int) -> list[str]:
    """The names of the run's curves: one probe of the (run, name, step) index per name (a loose
    index scan), not a pass over every point."""
    with connection.cursor() as cursor:
        cursor.execute(_NAMES_SQL, [run_id, run_id])
        return [row[0] for row in cursor.fetchall()]
