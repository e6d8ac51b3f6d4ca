"""Measuring training steps, and the parity of two configs' losses."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from bench.speed.cases import BENCH_FIRST_STEP, COMPILE_MIN_WARMUP
from bench.speed.machine import MemoryProbe, load_average, spread, synchronize
from bench.speed.workload import PipelineBatches, apply_tweaks, synthetic_batches
from duda_engine.config import ConfigError, ExperimentConfig
from duda_engine.data.samples import DatasetError
from duda_engine.methods import build_method
from duda_engine.train import seed_everything
from duda_engine.validation import class_spec, resolve_device


def failure_text(error: BaseException) -> str:
    """An error as one line of a report."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return "out of memory"
    return f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"


def _loss_values(losses: dict[str, torch.Tensor]) -> dict[str, float]:
    return {name: float(value) for name, value in losses.items() if "loss" in name}


class TrainingRun:
    """One config's method and batches, stepped one iteration at a time; each timed step is recorded.

    ``data``: ``synthetic`` (one fixed batch, already on the device) or ``pipeline`` (the real loaders;
    the wait for each batch, including its copy to the device, is timed apart from the step).
    """

    def __init__(self, config: ExperimentConfig, data: str, tweaks: Iterable[str] = ()):
        self.config, self.data = config, data
        self.device = resolve_device(config.train.device)
        classes = class_spec(config)
        seed_everything(config.seed)
        self.method = build_method(config, classes, self.device)
        apply_tweaks(self.method, tweaks)
        self.fixed = (
            synthetic_batches(config, classes.num_classes, self.device, config.seed) if data == "synthetic" else None
        )
        self.pipeline = (
            PipelineBatches(config, self.method.uses_target, BENCH_FIRST_STEP) if data == "pipeline" else None
        )
        self.steps = 0
        self.iteration_ms: list[float] = []
        self.step_ms: list[float] = []
        self.wait_ms: list[float] = []
        self.warmup_s = 0.0
        self.last_losses: dict[str, float] = {}

    def step(self, timed: bool) -> None:
        device = self.device
        synchronize(device)
        started = time.perf_counter()
        if self.pipeline is not None:
            source, target = self.pipeline.next(device, self.config.train.channels_last)
            synchronize(device)
        else:
            source, target = self.fixed
        data_ready = time.perf_counter()
        losses = self.method.train_step(
            source, target if self.method.uses_target else None, BENCH_FIRST_STEP + self.steps
        )
        synchronize(device)
        finished = time.perf_counter()
        self.steps += 1
        if timed:
            self.iteration_ms.append((finished - started) * 1e3)
            self.step_ms.append((finished - data_ready) * 1e3)
            self.wait_ms.append((data_ready - started) * 1e3)
            self.last_losses = _loss_values(losses)
        else:
            self.warmup_s += finished - started

    def close(self) -> None:
        self.method = self.pipeline = self.fixed = None

    def result(self) -> dict[str, Any]:
        images = self.config.train.batch_size * (2 if self.config.method in ("self_training", "duda") else 1)
        timing = spread(self.iteration_ms)
        pipeline = self.data == "pipeline"
        return {
            "iterations": len(self.iteration_ms),
            "warmup": self.steps - len(self.iteration_ms),
            "warmup_s": round(self.warmup_s, 3),
            "ms_per_iter": timing,
            "step_ms": spread(self.step_ms),
            "data_wait_ms": spread(self.wait_ms) if pipeline else None,
            "data_wait_share": (sum(self.wait_ms) / sum(self.iteration_ms)) if pipeline else None,
            "images_per_s": images * 1e3 / timing["median"],
            "load_average": load_average(),
            "last_losses": self.last_losses,
        }


def _warmup_for(config: ExperimentConfig, warmup: int) -> int:
    return max(warmup, COMPILE_MIN_WARMUP) if config.train.compile else warmup


def measure_training(
    config: ExperimentConfig,
    *,
    data: str,
    iterations: int,
    warmup: int,
    tweaks: Iterable[str] = (),
) -> dict[str, Any]:
    """Time ``iterations`` training steps of ``config`` after ``warmup`` untimed ones, with its peak memory."""
    probe = MemoryProbe(resolve_device(config.train.device))
    probe.start()
    run = TrainingRun(config, data, tweaks)
    for _ in range(_warmup_for(config, warmup)):
        run.step(timed=False)
    for _ in range(iterations):
        run.step(timed=True)
    peak = probe.peak_mib()
    run.close()
    return {**run.result(), "peak_memory_mib": None if peak is None else round(peak, 1), "peak_memory_kind": probe.kind}


def measure_interleaved(
    runs: dict[str, tuple[ExperimentConfig, tuple[str, ...]]],
    *,
    data: str,
    iterations: int,
    warmup: int,
) -> dict[str, dict[str, Any]]:
    """Several variants side by side: all built first, then one timed step of each in turn.

    On a machine shared with other work, a change of load then slows every variant alike instead of
    whichever happened to run at that moment. Peak memory is not measured (all share one process).
    A variant that fails is reported as ``{"error": ...}`` and leaves the rotation.
    """
    live: dict[str, TrainingRun] = {}
    results: dict[str, dict[str, Any]] = {}
    for name, (config, tweaks) in runs.items():
        try:
            run = TrainingRun(config, data, tweaks)
            for _ in range(_warmup_for(config, warmup)):
                run.step(timed=False)
            live[name] = run
        except (ConfigError, DatasetError):
            raise
        except Exception as error:  # noqa: BLE001 - one failing variant must not end the others
            results[name] = {"error": failure_text(error)}
    for _ in range(iterations):
        for name, run in list(live.items()):
            try:
                run.step(timed=True)
            except Exception as error:  # noqa: BLE001
                results[name] = {"error": failure_text(error)}
                live.pop(name).close()
    for name, run in live.items():
        results[name] = {**run.result(), "peak_memory_mib": None, "peak_memory_kind": "n/a (interleaved)"}
        run.close()
    return {name: results[name] for name in runs}


def loss_trace(config: ExperimentConfig, iterations: int, tweaks: Iterable[str] = ()) -> list[dict[str, float]]:
    """The losses of ``iterations`` steps from ``config.seed`` on a fixed synthetic batch."""
    device = resolve_device(config.train.device)
    classes = class_spec(config)
    # Inductor draws dropout masks from its own generator unless told to fall back to eager's.
    patch = contextlib.nullcontext()
    if config.train.compile:
        import torch._inductor.config

        patch = torch._inductor.config.patch(fallback_random=True)
    with patch:
        seed_everything(config.seed)
        method = build_method(config, classes, device)
        apply_tweaks(method, tweaks)
        source, target = synthetic_batches(config, classes.num_classes, device, config.seed)
        trace = []
        for i in range(iterations):
            losses = method.train_step(source, target if method.uses_target else None, BENCH_FIRST_STEP + i)
            trace.append(_loss_values(losses))
    return trace


@dataclass
class ParityResult:
    """Per-iteration losses of two runs and their largest difference, relative to max(|a|, 1)."""

    tolerance: float
    losses_a: list[dict[str, float]]
    losses_b: list[dict[str, float]]
    max_difference: float
    worst: str  # where the largest difference is: "iteration 2, loss/kd"

    @property
    def passed(self) -> bool:
        return math.isfinite(self.max_difference) and self.max_difference <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "tolerance": self.tolerance,
            "max_difference": self.max_difference,
            "worst": self.worst,
            "iterations": len(self.losses_a),
            "losses_a": self.losses_a,
            "losses_b": self.losses_b,
        }


def compare_traces(a: list[dict[str, float]], b: list[dict[str, float]], tolerance: float) -> ParityResult:
    worst_value, worst_where = 0.0, ""
    for i, (losses_a, losses_b) in enumerate(zip(a, b, strict=True)):
        if set(losses_a) != set(losses_b):
            return ParityResult(
                tolerance, a, b, math.inf, f"iteration {i}: different losses {sorted(set(losses_a) ^ set(losses_b))}"
            )
        for name, value in losses_a.items():
            difference = abs(value - losses_b[name]) / max(abs(value), 1.0)
            if not math.isfinite(difference):
                return ParityResult(tolerance, a, b, math.inf, f"iteration {i}, {name}: not finite")
            if difference > worst_value:
                worst_value, worst_where = difference, f"iteration {i}, {name}"
    return ParityResult(tolerance, a, b, worst_value, worst_where)


def check_parity(
    config_a: ExperimentConfig,
    config_b: ExperimentConfig,
    iterations: int = 3,
    tolerance: float = 1e-3,
    *,
    tweaks_a: Iterable[str] = (),
    tweaks_b: Iterable[str] = (),
) -> ParityResult:
    """Train both configs from the same seed on the same synthetic batch for ``iterations`` steps.

    Passes when every loss of every iteration agrees within ``tolerance`` relative to max(|loss|, 1).
    """
    return compare_traces(
        loss_trace(config_a, iterations, tweaks_a), loss_trace(config_b, iterations, tweaks_b), tolerance
    )
