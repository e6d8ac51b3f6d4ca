"""How fast an exported file runs with ONNX Runtime on this machine's CPU: images/s and latency percentiles."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from duda_engine.export import read_metadata
from duda_engine.ship.runtime import onnx_session


@dataclass
class SpeedResult:
    file: str  # the file's name
    height: int
    width: int
    batch: int
    runs: int
    images_per_second: float  # batch * runs / the timed runs' total wall time
    latency_p50_ms: float  # median wall time of one run (one batch)
    latency_p95_ms: float
    threads: int  # ONNX Runtime intra-op threads (0: its default, one per physical core)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_speed(path: str | Path, *, runs: int = 20, warmup: int = 3, batch: int = 1, threads: int = 0) -> SpeedResult:
    """Time ``runs`` forward passes of ``batch`` random images at the file's input size, after ``warmup`` untimed ones."""
    path = Path(path)
    metadata = read_metadata(path)
    height, width = int(metadata["height"]), int(metadata["width"])
    session = onnx_session(path, threads)
    images = np.random.default_rng(0).random((batch, 3, height, width), dtype=np.float32)
    for _ in range(warmup):
        session.run(["logits"], {"images": images})
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        session.run(["logits"], {"images": images})
        times.append(time.perf_counter() - started)
    latencies = np.array(times) * 1000
    return SpeedResult(
        file=path.name,
        height=height,
        width=width,
        batch=batch,
        runs=runs,
        images_per_second=batch * runs / sum(times),
        latency_p50_ms=float(np.percentile(latencies, 50)),
        latency_p95_ms=float(np.percentile(latencies, 95)),
        threads=threads,
    )
