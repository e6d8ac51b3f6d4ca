"""Student inference, and a whole bench run: every case under every variant, or every preset."""

from __future__ import annotations

import datetime
import gc
import time
from collections.abc import Callable
from typing import Any

import torch

from bench.speed.cases import (
    BASELINE,
    BENCH_FIRST_STEP,
    REPORT_FORMAT,
    BenchError,
    Case,
    Variant,
    parse_case,
    parse_variants,
    skip_reason,
)
from bench.speed.machine import BenchSettings, MemoryProbe, device_info, load_average, spread, synchronize
from bench.speed.training import compare_traces, failure_text, loss_trace, measure_interleaved, measure_training
from bench.speed.workload import bench_config
from duda_engine.config import ConfigError
from duda_engine.config_loading import load_config
from duda_engine.data.classes import CITYSCAPES
from duda_engine.data.samples import DatasetError
from duda_engine.methods.common import autocast
from duda_engine.models import UnknownPresetError, build_segmentor, count_parameters, get_preset
from duda_engine.train import seed_everything
from duda_engine.validation import class_spec, resolve_device


def measure_inference(
    preset: str,
    *,
    height: int,
    width: int,
    batch: int,
    iterations: int,
    warmup: int,
    device: torch.device,
    num_classes: int = 19,
    seed: int = 0,
) -> dict[str, Any]:
    """Forward passes of a freshly built ``preset`` (eval mode): bf16 autocast on CUDA, fp32 on CPU."""
    probe = MemoryProbe(device)
    probe.start()
    seed_everything(seed)
    model = build_segmentor(preset, num_classes).to(device).eval()
    images = torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(seed)).to(device)
    times = []
    with torch.inference_mode(), autocast(device, True):
        for i in range(warmup + iterations):
            synchronize(device)
            started = time.perf_counter()
            model(images)
            synchronize(device)
            if i >= warmup:
                times.append((time.perf_counter() - started) * 1e3)
    peak = probe.peak_mib()
    timing = spread(times)
    result = {
        "preset": preset,
        "parameters_m": round(count_parameters(model) / 1e6, 2),
        "dtype": "bf16" if device.type == "cuda" else "fp32",
        "iterations": iterations,
        "warmup": warmup,
        "ms_per_batch": timing,
        "images_per_s": batch * 1e3 / timing["median"],
        "peak_memory_mib": None if peak is None else round(peak, 1),
        "peak_memory_kind": probe.kind,
        "status": "ok",
    }
    del model, images
    return result


# --------------------------------------------------------------------------------------------
# A bench run.
# --------------------------------------------------------------------------------------------


def warm_up_process(device: torch.device) -> None:
    """One tiny training step and forward pass before anything is measured.

    One-time costs of a process (thread pools, kernel libraries, the CUDA context and cuBLAS workspace,
    allocator pools) would otherwise count as the first variant's memory and slow its first steps.
    """
    model = build_segmentor("mit_b0", 2).to(device)
    optimizer = torch.optim.AdamW(model.parameters())
    images = torch.rand(1, 3, 64, 64, device=device)
    model(images).mean().backward()
    optimizer.step()
    with torch.no_grad():
        model.eval()(images)
    synchronize(device)
    del model, optimizer, images
    _release(device)


def _base_config(settings: BenchSettings) -> dict[str, Any] | None:
    if not settings.config:
        return None
    return load_config(settings.config).to_dict()


def run_training_bench(settings: BenchSettings, log: Callable[[str], None] = lambda _: None) -> list[dict[str, Any]]:
    """Every (case, data, variant) of ``settings``: measured, skipped with a reason, or failed with one."""
    device = resolve_device(settings.device)
    cases = [parse_case(name) for name in settings.cases]
    variants = parse_variants(settings.variants)
    height, width = settings.resolved_size()
    batch = settings.resolved_batch()
    base = _base_config(settings)
    records: list[dict[str, Any]] = []
    for case in cases:
        configs = {
            v.name: bench_config(
                case,
                v,
                height=height,
                width=width,
                batch=batch,
                device=settings.device,
                seed=settings.seed,
                base=base,
                workers=settings.workers,
            )
            for v in variants
        }
        for data in settings.data_modes():
            group: dict[str, dict[str, Any]] = {}
            for variant in variants:
                record = group[variant.name] = {
                    "case": case.name,
                    "method": case.method,
                    "student": case.student,
                    "auxiliary": case.auxiliary or None,
                    "data": data,
                    "variant": variant.name,
                    "description": variant.description,
                    "switches": variant.switches(),
                    "tweaks": list(variant.tweaks),
                    "status": "ok",
                    "reason": "",
                    "speedup_vs_fp32_eager": None,
                    "parity": None,
                }
                reason = skip_reason(variant, case, device)
                if reason:
                    record.update(status="skipped", reason=reason)
                    log(f"{case.name} {data} {variant.name}: skipped ({reason})")
            measurable = [v for v in variants if group[v.name]["status"] == "ok"]
            if settings.interleave:
                log(f"{case.name} {data}: measuring {', '.join(v.name for v in measurable)} interleaved ...")
                measured = measure_interleaved(
                    {v.name: (configs[v.name], v.tweaks) for v in measurable},
                    data=data,
                    iterations=settings.iterations,
                    warmup=settings.warmup,
                )
            else:
                measured = {}
                for variant in measurable:
                    log(f"{case.name} {data} {variant.name}: measuring ...")
                    try:
                        measured[variant.name] = measure_training(
                            configs[variant.name],
                            data=data,
                            iterations=settings.iterations,
                            warmup=settings.warmup,
                            tweaks=variant.tweaks,
                        )
                    except (ConfigError, DatasetError):
                        raise
                    except Exception as error:  # noqa: BLE001 - one failing variant must not end the run
                        measured[variant.name] = {"error": failure_text(error)}
                    _release(device)
            for name, result in measured.items():
                record = group[name]
                if "error" in result:
                    record.update(status="failed", reason=result["error"])
                    log(f"{case.name} {data} {name}: failed ({result['error']})")
                else:
                    record.update(result)
                    log(f"{case.name} {data} {name}: {result['ms_per_iter']['median']:.1f} ms/iter")
            records.extend(group.values())
            _release(device)
        if settings.parity_iterations:
            _attach_parity(records, case, variants, configs, settings, log)
    _attach_speedups(records)
    return records


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _attach_speedups(records: list[dict[str, Any]]) -> None:
    for record in records:
        if record["status"] != "ok":
            continue
        baseline = next(
            (
                r
                for r in records
                if r["case"] == record["case"]
                and r["data"] == record["data"]
                and r["variant"] == BASELINE
                and r["status"] == "ok"
            ),
            None,
        )
        if baseline is not None:
            record["speedup_vs_fp32_eager"] = baseline["ms_per_iter"]["median"] / record["ms_per_iter"]["median"]


def _attach_parity(records, case: Case, variants: list[Variant], configs, settings: BenchSettings, log) -> None:
    measured = {r["variant"] for r in records if r["case"] == case.name and r["status"] == "ok"}
    if BASELINE not in measured:
        return
    log(f"{case.name}: parity over {settings.parity_iterations} iterations ...")
    reference = loss_trace(configs[BASELINE], settings.parity_iterations)
    for variant in variants:
        if variant.name not in measured:
            continue
        tolerance = settings.parity_tolerance_bf16 if variant.amp else settings.parity_tolerance
        try:
            trace = (
                reference
                if variant.name == BASELINE
                else loss_trace(configs[variant.name], settings.parity_iterations, variant.tweaks)
            )
            parity = compare_traces(reference, trace, tolerance).to_dict()
        except Exception as error:  # noqa: BLE001
            parity = {"passed": False, "tolerance": tolerance, "max_difference": None, "worst": failure_text(error)}
        for record in records:
            if record["case"] == case.name and record["variant"] == variant.name and record["status"] == "ok":
                record["parity"] = parity
        verdict = "ok" if parity["passed"] else "FAILED"
        detail = parity["worst"] if parity["max_difference"] is None else parity["max_difference"]
        log(f"{case.name} {variant.name}: parity {verdict} ({detail})")


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per case and data: the fastest measured variant, and the fastest that kept parity (when checked)."""
    summary = []
    groups = list(dict.fromkeys((r["case"], r["data"]) for r in records))
    for case, data in groups:
        ok = [r for r in records if r["case"] == case and r["data"] == data and r["status"] == "ok"]
        if not ok:
            continue
        fastest = min(ok, key=lambda r: r["ms_per_iter"]["median"])
        checked = [r for r in ok if r["parity"] is not None and r["parity"]["passed"]]
        entry = {
            "case": case,
            "data": data,
            "fastest": fastest["variant"],
            "fastest_speedup": fastest["speedup_vs_fp32_eager"],
        }
        if checked:
            keeper = min(checked, key=lambda r: r["ms_per_iter"]["median"])
            entry.update(
                fastest_with_parity=keeper["variant"], fastest_with_parity_speedup=keeper["speedup_vs_fp32_eager"]
            )
        summary.append(entry)
    return summary


def run_inference_bench(settings: BenchSettings, log: Callable[[str], None] = lambda _: None) -> list[dict[str, Any]]:
    device = resolve_device(settings.device)
    height, width = settings.resolved_size()
    batch = settings.resolved_batch()
    num_classes = class_spec(load_config(settings.config)).num_classes if settings.config else CITYSCAPES.num_classes
    records = []
    for preset in settings.presets:
        try:
            get_preset(preset)
        except UnknownPresetError as error:
            raise BenchError(str(error)) from None
        log(f"inference {preset}: measuring ...")
        try:
            record = measure_inference(
                preset,
                height=height,
                width=width,
                batch=batch,
                iterations=settings.iterations,
                warmup=settings.warmup,
                device=device,
                num_classes=num_classes,
                seed=settings.seed,
            )
        except Exception as error:  # noqa: BLE001
            record = {"preset": preset, "status": "failed", "reason": failure_text(error)}
        records.append(record)
        _release(device)
    return records


def run_bench(settings: BenchSettings, log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Measure what ``settings`` asks for; the report that ``--json`` writes."""
    device = resolve_device(settings.device)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    warm_up_process(device)
    height, width = settings.resolved_size()
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "mode": "inference" if settings.inference else "train",
        "command": settings.command(),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": device_info(device),
        "load_average_before": load_average(),
        "settings": {
            "height": height,
            "width": width,
            "batch": settings.resolved_batch(),
            "iterations": settings.iterations,
            "warmup": settings.warmup,
            "seed": settings.seed,
        },
    }
    if settings.inference:
        report["settings"]["presets"] = list(settings.presets)
        report["results"] = run_inference_bench(settings, log)
    else:
        report["settings"].update(
            cases=list(settings.cases),
            variants=list(settings.variants),
            data=settings.data,
            config=settings.config or None,
            workers=settings.workers if settings.workers >= 0 else None,
            interleave=settings.interleave,
            parity_iterations=settings.parity_iterations,
            first_step=BENCH_FIRST_STEP,
        )
        report["results"] = run_training_bench(settings, log)
        report["summary"] = summarize(report["results"])
    report["load_average_after"] = load_average()
    return report
