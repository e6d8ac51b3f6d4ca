"""Output: the table and the JSON file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from duda_engine.checkpoint import atomic_write_bytes


def _fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _fmt_mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def format_table(report: dict[str, Any]) -> str:
    """The report as a plain-text table (what the CLI prints)."""
    device = report["device"]
    settings = report["settings"]
    lines = [
        f"device: {device['name']} ({device['type']}), torch {device['torch']}, {device['torch_threads']} threads; "
        f"load average {report.get('load_average_before')} -> {report.get('load_average_after')}",
        f"size {settings['height']}x{settings['width']} (HxW), batch {settings['batch']}"
        + ("" if report["mode"] == "inference" else " per domain")
        + f", {settings['iterations']} timed iterations after {settings['warmup']} warm-up",
    ]
    memory_kind = next((r.get("peak_memory_kind") for r in report["results"] if r.get("peak_memory_kind")), "")
    memory_header = "peak MiB (RSS delta)" if memory_kind == "cpu_peak_rss_delta" else "peak MiB"
    if report["mode"] == "inference":
        header = ("preset", "params (M)", "dtype", "ms/batch", "p10-p90", "images/s", memory_header, "note")
        rows = []
        for r in report["results"]:
            if r["status"] != "ok":
                rows.append((r["preset"], "", "", "", "", "", "", r["reason"]))
                continue
            t = r["ms_per_batch"]
            rows.append(
                (
                    r["preset"],
                    f"{r['parameters_m']:.1f}",
                    r["dtype"],
                    _fmt_ms(t["median"]),
                    f"{_fmt_ms(t['p10'])}-{_fmt_ms(t['p90'])}",
                    f"{r['images_per_s']:.2f}",
                    _fmt_mib(r["peak_memory_mib"]),
                    "",
                )
            )
    else:
        header = (
            "case",
            "data",
            "variant",
            "ms/iter",
            "p10-p90",
            "x fp32",
            "data wait ms (share)",
            memory_header,
            "parity",
            "note",
        )
        rows = []
        for r in report["results"]:
            if r["status"] != "ok":
                rows.append(
                    (r["case"], r["data"], r["variant"], "", "", "", "", "", "", f"{r['status']}: {r['reason']}")
                )
                continue
            t = r["ms_per_iter"]
            wait = (
                "-"
                if r["data_wait_ms"] is None
                else f"{_fmt_ms(r['data_wait_ms']['median'])} ({r['data_wait_share']:.0%})"
            )
            speedup = "-" if r["speedup_vs_fp32_eager"] is None else f"{r['speedup_vs_fp32_eager']:.2f}"
            parity = "-"
            if r["parity"] is not None:
                difference = r["parity"]["max_difference"]
                passed = r["parity"]["passed"]
                parity = ("n/a" if passed is None else "ok" if passed else "FAIL") + (
                    "" if difference is None else f" {difference:.1e}"
                )
            rows.append(
                (
                    r["case"],
                    r["data"],
                    r["variant"],
                    _fmt_ms(t["median"]),
                    f"{_fmt_ms(t['p10'])}-{_fmt_ms(t['p90'])}",
                    speedup,
                    wait,
                    _fmt_mib(r["peak_memory_mib"]),
                    parity,
                    "",
                )
            )
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    out = lines + [""]
    for row in (header, tuple("-" * w for w in widths), *rows):
        out.append("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    for entry in report.get("summary", []):
        line = f"{entry['case']} ({entry['data']}): fastest {entry['fastest']} (x{entry['fastest_speedup']:.2f})"
        if "fastest_with_parity" in entry:
            line += (
                f"; fastest with parity {entry['fastest_with_parity']} (x{entry['fastest_with_parity_speedup']:.2f})"
            )
        out.append(line)
    out.append(f"command: {report['command']}")
    return "\n".join(out)


def write_report(report: dict[str, Any], path: str | Path) -> None:
    text = (json.dumps(report, indent=2) + "\n").encode()
    atomic_write_bytes(Path(path), lambda handle: handle.write(text))
