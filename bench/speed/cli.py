"""Command line: ``python -m duda_engine bench`` and ``python bench/run_bench.py``."""

from __future__ import annotations

import argparse
import sys

from bench.speed.cases import CASES, LIGHT_PRESETS, VARIANTS, BenchError, parse_case, parse_variants
from bench.speed.machine import BenchSettings
from bench.speed.report import format_table, write_report
from bench.speed.run import run_bench
from duda_engine.config import ConfigError
from duda_engine.data.samples import DatasetError


def _names(values: list[str] | None) -> list[str]:
    """``--methods a b`` and ``--methods a,b`` alike."""
    return [name for value in values or [] for name in value.split(",") if name]


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--inference", action="store_true", help="time student inference of light presets instead of training steps"
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        metavar="CASE",
        help=f"cases to time (default: all): {', '.join(CASES)}, or METHOD:STUDENT, or duda:AUXILIARY:STUDENT",
    )
    parser.add_argument(
        "--variants", nargs="+", metavar="NAME", help=f"speed variants (default: all): {', '.join(VARIANTS)}"
    )
    parser.add_argument(
        "--presets", nargs="+", metavar="PRESET", help=f"--inference: presets (default: {', '.join(LIGHT_PRESETS)})"
    )
    parser.add_argument("--height", type=int, default=0, help="image height (default 512)")
    parser.add_argument("--width", type=int, default=0, help="image width (default 512; --inference: 1024)")
    parser.add_argument("--batch", type=int, default=0, help="images per domain (default 2; --inference: 1)")
    parser.add_argument("--iterations", type=int, default=50, help="timed iterations (default 50)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed iterations first (default 5)")
    parser.add_argument(
        "--data",
        choices=("synthetic", "pipeline", "both"),
        default="both",
        help="synthetic tensors on the device, the real data pipeline, or both (default)",
    )
    parser.add_argument(
        "--config", default="", help="a run config whose datasets and classes the bench uses (default: toy GTA->real)"
    )
    parser.add_argument(
        "--workers", type=int, default=-1, help="data loader processes (default: the config's train.num_workers)"
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument(
        "--interleave",
        action="store_true",
        help="alternate the variants' timed steps (all built at once: more memory, no peak memory figures); "
        "fairer ratios on a machine shared with other work",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--parity-iterations",
        type=int,
        default=0,
        help="also compare each variant's losses with fp32_eager over N steps",
    )
    parser.add_argument(
        "--parity-tolerance", type=float, default=1e-3, help="fp32 variants: largest |a-b|/max(|a|,1) (default 1e-3)"
    )
    parser.add_argument("--parity-tolerance-bf16", type=float, default=5e-2, help="bf16 variants (default 5e-2)")
    parser.add_argument("--json", default="", help="also write the report as JSON to this file")
    parser.add_argument("--list", action="store_true", help="list the cases, variants and presets, then exit")


def settings_from_args(args: argparse.Namespace) -> BenchSettings:
    for name in ("iterations", "height", "width", "batch", "warmup", "parity_iterations", "threads"):
        value = getattr(args, name)
        if value < 0 or (name == "iterations" and value < 1):
            raise BenchError(f"--{name.replace('_', '-')} must be {'>= 1' if name == 'iterations' else '>= 0'}")
    defaults = BenchSettings()
    return BenchSettings(
        inference=args.inference,
        cases=_names(args.methods) or defaults.cases,
        variants=_names(args.variants) or defaults.variants,
        presets=_names(args.presets) or defaults.presets,
        height=args.height,
        width=args.width,
        batch=args.batch,
        iterations=args.iterations,
        warmup=args.warmup,
        data=args.data,
        config=args.config,
        workers=args.workers,
        device=args.device,
        threads=args.threads,
        interleave=args.interleave,
        seed=args.seed,
        parity_iterations=args.parity_iterations,
        parity_tolerance=args.parity_tolerance,
        parity_tolerance_bf16=args.parity_tolerance_bf16,
        json=args.json,
    )


def _listing() -> str:
    lines = ["cases (--methods):"]
    for case in CASES.values():
        networks = f"{case.auxiliary} -> {case.student}" if case.auxiliary else case.student
        lines.append(f"  {case.name:<20} {case.method}: {networks}")
    lines.append("variants (--variants):")
    lines += [f"  {v.name:<28} {v.description}" for v in VARIANTS.values()]
    lines.append(f"light presets (--inference --presets): {', '.join(LIGHT_PRESETS)}")
    return "\n".join(lines)


def command_bench(args: argparse.Namespace) -> int:
    """The ``bench`` subcommand: measure, print the table, write the JSON."""
    if args.list:
        print(_listing())
        return 0
    try:
        settings = settings_from_args(args)
        if not settings.inference:
            for name in settings.cases:
                parse_case(name)
            parse_variants(settings.variants)
        report = run_bench(settings, log=lambda message: print(f"[bench] {message}", file=sys.stderr, flush=True))
    except (BenchError, ConfigError, DatasetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_table(report))
    if settings.json:
        write_report(report, settings.json)
        print(f"wrote {settings.json}")
    failed = [r for r in report["results"] if r["status"] == "failed"]
    return 1 if failed else 0


DESCRIPTION = (
    "Time the training step of each method under each speed variant (synthetic tensors and the real data "
    "pipeline), or student inference (--inference). Ratios are against fp32_eager in the same run."
)


def build_parser(prog: str = "python bench/run_bench.py") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    _add_arguments(parser)
    return parser


def main(argv: list[str] | None = None, prog: str = "python bench/run_bench.py") -> int:
    """``python bench/run_bench.py ...`` and ``python -m duda_engine bench ...``."""
    return command_bench(build_parser(prog).parse_args(argv))
