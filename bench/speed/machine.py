"""The bench's settings, the device it runs on, timing and memory."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import platform
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.speed.cases import CASES, DATA_MODES, LIGHT_PRESETS, VARIANTS


@dataclass
class BenchSettings:
    """Everything one bench run measures; ``command()`` spells it as a CLI call."""

    inference: bool = False  # student inference instead of training steps
    cases: list[str] = field(default_factory=lambda: list(CASES))
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    presets: list[str] = field(default_factory=lambda: list(LIGHT_PRESETS))  # inference mode
    height: int = 0  # 0: 512 (training) or 512 of 1024x512 (inference)
    width: int = 0  # 0: 512 (training) or 1024 (inference)
    batch: int = 0  # 0: 2 (training: per domain, 2 source + 2 target) or 1 (inference)
    iterations: int = 50  # timed iterations
    warmup: int = 5  # untimed iterations first (at least 3 with torch.compile)
    data: str = "both"  # synthetic | pipeline | both
    config: str = ""  # a run config whose datasets the pipeline reads ("" = the toy GTA->real pair)
    workers: int = -1  # data loader processes (-1: the config's train.num_workers)
    device: str = "auto"
    threads: int = 0  # CPU threads for torch (0: torch's default)
    interleave: bool = False  # build every variant of a case first, then alternate their timed steps
    seed: int = 0
    parity_iterations: int = 0  # > 0: check every measured variant against fp32_eager over this many steps
    parity_tolerance: float = 1e-3  # fp32 variants: max |a - b| / max(|a|, 1) of any loss
    parity_tolerance_bf16: float = 5e-2  # bf16 variants
    json: str = ""

    def resolved_size(self) -> tuple[int, int]:
        default = (512, 1024) if self.inference else (512, 512)
        return self.height or default[0], self.width or default[1]

    def resolved_batch(self) -> int:
        return self.batch or (1 if self.inference else 2)

    def data_modes(self) -> tuple[str, ...]:
        return DATA_MODES if self.data == "both" else (self.data,)

    def command(self) -> str:
        height, width = self.resolved_size()
        args = ["python", "-m", "duda_engine", "bench"]
        if self.inference:
            args += ["--inference", "--presets", *self.presets]
        else:
            args += ["--methods", *self.cases, "--variants", *self.variants, "--data", self.data]
            if self.config:
                args += ["--config", self.config]
            if self.workers >= 0:
                args += ["--workers", str(self.workers)]
            if self.parity_iterations:
                args += [
                    "--parity-iterations",
                    str(self.parity_iterations),
                    "--parity-tolerance",
                    f"{self.parity_tolerance:g}",
                    "--parity-tolerance-bf16",
                    f"{self.parity_tolerance_bf16:g}",
                ]
        args += [
            "--height",
            str(height),
            "--width",
            str(width),
            "--batch",
            str(self.resolved_batch()),
            "--iterations",
            str(self.iterations),
            "--warmup",
            str(self.warmup),
            "--device",
            self.device,
            *(["--threads", str(self.threads)] if self.threads else []),
            *(["--interleave"] if self.interleave and not self.inference else []),
            "--seed",
            str(self.seed),
        ]
        if self.json:
            args += ["--json", self.json]
        return shlex.join(args)


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def device_info(device: torch.device) -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "type": device.type,
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        info.update(
            name=properties.name,
            memory_gib=round(properties.total_memory / 2**30, 1),
            capability=f"{properties.major}.{properties.minor}",
            cuda=torch.version.cuda,
        )
    else:
        info["name"] = f"{info['cpu_model']} ({info['cpu_count']} cores)"
    return info


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def spread(values_ms: list[float]) -> dict[str, float]:
    """Median and spread of per-iteration times in ms."""
    array = np.asarray(values_ms, dtype=float)
    p10, p25, p50, p75, p90 = np.percentile(array, [10, 25, 50, 75, 90])
    return {
        "median": float(p50),
        "p10": float(p10),
        "p90": float(p90),
        "p25": float(p25),
        "p75": float(p75),
        "iqr": float(p75 - p25),
        "mean": float(array.mean()),
        "min": float(array.min()),
        "max": float(array.max()),
    }


def _proc_status_kib(key: str) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


class MemoryProbe:
    """Peak memory of what runs between ``start()`` and ``peak_mib()``.

    CUDA: ``torch.cuda.max_memory_allocated`` (absolute: weights, optimiser state, activations).
    CPU: the rise of the process's peak resident set (Linux: freed heap returned with ``malloc_trim``,
    the high-water mark reset through ``/proc/self/clear_refs``); ``None`` where that is not possible.
    Data loader worker processes are not counted.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.kind = "cuda_max_allocated" if device.type == "cuda" else "cpu_peak_rss_delta"
        self.base_kib: int | None = None

    def start(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current VmRSS
        except OSError:
            self.base_kib = None
            return
        self.base_kib = _proc_status_kib("VmRSS")

    def peak_mib(self) -> float | None:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        peak = _proc_status_kib("VmHWM")
        if self.base_kib is None or peak is None:
            return None
        return (peak - self.base_kib) / 1024
