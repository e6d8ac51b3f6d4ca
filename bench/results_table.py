"""Combine reports of bench/toy_runs.py into one results table per run length.

    python bench/results_table.py experiments/random_weights/*.json --iterations 1600 --since 2a67681 \\
        --columns source_only:mit_b0 self_training:mit_b0 duda:mit_b1:mit_b0 oracle:mit_b0 \\
        --baseline self_training:mit_b0 --report experiments/random_weights/table_1600

For each benchmark and column: mean ± std of the target mIoU over the seeds found, the difference
from the baseline column, or from the column ``--versus`` names for it (paired by seed: on how many
common seeds the column is ahead, and whether the difference of means is larger than both columns'
standard deviations), and the share of the source-only → oracle gap its mean closes (``--bounds``).
The mIoU is recomputed from each run's per-class IoU over the classes the benchmark's config scores
(``eval.class_subset``), so reports written before a config changed its subset count the same classes
as the newer ones.

A column is a run as toy_runs names it: SPEC, then ``+KEY=VALUE`` for each extra override
(``duda:mit_b1:mit_b0+duda.kd_weight=0``); ``@teacher`` after it is the score of those runs' EMA
teacher at the end (``toy_runs --score-teachers``; in a DUDA run the large network's). One run
(benchmark, column, seed, iterations) may be in several reports. ``--since COMMIT`` keeps, of the
methods in ``--code-sensitive`` (default: duda), only runs trained on COMMIT or a later commit
(``code`` in the report; runs from before toy_runs recorded it have none and are dropped). Two
records of one run with different results are an error unless one was trained on a later commit than
the other, which is then kept. ``--same RUN COLUMN`` counts runs named RUN as COLUMN: one
configuration spelt two ways (``duda:mit_b1:mit_b0+duda.kd_weight=1+duda.kd_teacher_view=clean`` from
the commit on which the toy configs turned KD off, ``duda:mit_b1:mit_b0+duda.kd_teacher_view=clean``
before it, when KD was on by default).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # duda_engine.data.classes imports no torch

from duda_engine.data.classes import SYNTHIA_13_CLASSES, SYNTHIA_16_CLASSES  # noqa: E402

SUBSETS = {"synthia16": SYNTHIA_16_CLASSES, "synthia13": SYNTHIA_13_CLASSES}


@dataclass
class Run:
    benchmark: str
    column: str
    seed: int
    iterations: int
    miou: float
    per_class: dict[str, float]  # the scored classes' IoU
    code: list[str]  # the commits it trained on, one per start (empty: not recorded)
    report: str


TEACHER = "@teacher"


def column_name(record: dict) -> str:
    return record["spec"] + "".join(f"+{pair}" for pair in record["extra"])


def scores(record: dict, same: dict[str, str]) -> list[tuple[str, dict[str, float]]]:
    """A record's (column, per-class IoU) pairs: the run's student, and its EMA teacher when scored;
    a run named in ``same`` counts as the column it names."""
    column = same.get(column_name(record), column_name(record))
    found = [(column, record["per_class"])]
    if record.get("teacher_per_class"):
        found.append((column + TEACHER, record["teacher_per_class"]))
    return found


def scored_classes(benchmark: str) -> tuple[int, ...] | None:
    """The class indices the benchmark's config scores (None: all)."""
    config = yaml.safe_load((REPO / "configs" / "toy" / f"{benchmark}.yaml").read_text())
    return SUBSETS.get((config.get("eval") or {}).get("class_subset", ""))


def scored(per_class: dict[str, float], subset: tuple[int, ...] | None) -> dict[str, float]:
    """The per-class IoU of the scored classes (all, or the subset's indices in class order)."""
    if subset is None:
        return dict(per_class)
    names = list(per_class)
    return {names[i]: per_class[names[i]] for i in subset}


def miou(per_class: dict[str, float]) -> float:
    return statistics.fmean([v for v in per_class.values() if not math.isnan(v)])


class Commits:
    """Ancestry questions about the commits runs were trained on, answered by git."""

    def __init__(self, repo: Path):
        self.repo = repo
        self._resolved: dict[str, str | None] = {}  # every report names the same few commits
        self._ancestry: dict[tuple[str, str], bool] = {}

    def _resolve(self, version: str) -> str | None:
        if version not in self._resolved:
            commit = version.removesuffix("-modified")
            done = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}"],
                                  cwd=self.repo, capture_output=True, text=True)
            self._resolved[version] = done.stdout.strip() or None
        return self._resolved[version]

    def _is_ancestor(self, ancestor: str, commit: str) -> bool:
        if (ancestor, commit) not in self._ancestry:
            done = subprocess.run(["git", "merge-base", "--is-ancestor", ancestor, commit], cwd=self.repo)
            self._ancestry[(ancestor, commit)] = done.returncode == 0
        return self._ancestry[(ancestor, commit)]

    def at_or_after(self, version: str, since: str) -> bool:
        commit, base = self._resolve(version), self._resolve(since)
        if base is None:
            raise SystemExit(f"error: --since {since}: not a commit of this repository")
        return commit is not None and self._is_ancestor(base, commit)

    def later(self, a: str, b: str) -> bool:
        """True when commit ``a`` strictly descends from commit ``b``."""
        ca, cb = self._resolve(a), self._resolve(b)
        if ca is None:
            return False
        if cb is None:
            return True
        return ca != cb and self._is_ancestor(cb, ca)


def load_runs(reports: list[Path], iterations: int, since: str | None, code_sensitive: set[str],
              commits: Commits, same: dict[str, str] | None = None) -> tuple[list[Run], list[str]]:
    """Every successful run of ``iterations`` in the reports, one record per run; and notes on what was dropped."""
    kept: dict[tuple, Run] = {}
    notes: list[str] = []
    subsets: dict[str, tuple[int, ...] | None] = {}
    for report in reports:
        content = json.loads(report.read_text())
        if not isinstance(content, dict) or "runs" not in content:
            notes.append(f"skipped {report}: not a report of bench/toy_runs.py")
            continue
        for record in content["runs"]:
            if record.get("status") != "ok" or record["iterations"] != iterations:
                continue
            benchmark = record["benchmark"]
            if benchmark not in subsets:
                subsets[benchmark] = scored_classes(benchmark)
            code = (record.get("code") or "").split()
            sensitive = record["spec"].split(":")[0] in code_sensitive
            if since and sensitive and not (code and all(commits.at_or_after(c, since) for c in code)):
                notes.append(f"dropped {benchmark} {column_name(record)} seed {record['seed']} from {report} "
                             f"(trained on {' '.join(code) or 'unrecorded code'}, before {since})")
                continue
            for column, all_classes in scores(record, same or {}):
                per_class = scored(all_classes, subsets[benchmark])
                run = Run(benchmark, column, record["seed"], iterations, miou(per_class), per_class, code, str(report))
                keep(kept, run, commits, notes)
    return list(kept.values()), notes


def keep(kept: dict[tuple, Run], run: Run, commits: Commits, notes: list[str]) -> None:
    """Adds ``run`` to ``kept`` unless a record of it with the same result is there; of two records with
    different results the one trained on later code is kept (equal code: an error)."""
    key = (run.benchmark, run.column, run.seed)
    earlier = kept.get(key)
    if earlier is None or abs(earlier.miou - run.miou) < 1e-9:
        kept.setdefault(key, run)
        return
    newer_code = run.code[-1] if run.code else ""
    older_code = earlier.code[-1] if earlier.code else ""
    if commits.later(newer_code, older_code):
        kept[key], replaced, used = run, earlier, run
    elif commits.later(older_code, newer_code):
        replaced, used = run, earlier
    else:
        raise SystemExit(f"error: {run.benchmark} {run.column} seed {run.seed}: {earlier.report} says "
                         f"{earlier.miou:.2f}, {run.report} says {run.miou:.2f}, and neither was trained on later code")
    notes.append(f"{run.benchmark} {run.column} seed {run.seed}: {used.miou:.2f} from {used.report} "
                 f"(trained on later code) instead of {replaced.miou:.2f} from {replaced.report}")


@dataclass
class Cell:
    values: dict[int, float]  # seed -> mIoU

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values.values())

    @property
    def std(self) -> float:
        return statistics.stdev(self.values.values()) if len(self.values) > 1 else 0.0


def compare(cell: Cell, baseline: Cell) -> dict:
    """The column against the baseline: difference of means, paired seeds ahead, beyond both spreads."""
    common = sorted(set(cell.values) & set(baseline.values))
    ahead = sum(cell.values[s] > baseline.values[s] for s in common)
    difference = cell.mean - baseline.mean
    beyond = len(cell.values) > 1 and len(baseline.values) > 1 and abs(difference) > max(cell.std, baseline.std)
    return {"difference": difference, "ahead": ahead, "paired": len(common), "beyond_spread": beyond}


def build_table(runs: list[Run], columns: list[str], baseline: str | None, bounds: tuple[str, str] | None,
                versus: dict[str, str] | None = None) -> list[dict]:
    """``versus`` compares a column with another one instead of the baseline (the bounds with none)."""
    reference = {column: baseline for column in columns if column not in (bounds or ())} | (versus or {})
    grouped: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        grouped.setdefault((run.benchmark, run.column), []).append(run)
    rows = []
    for benchmark in sorted({run.benchmark for run in runs}):
        cells = {column: Cell(dict(sorted((run.seed, run.miou) for run in grouped[(benchmark, column)])))
                 for column in columns if (benchmark, column) in grouped}
        row: dict = {"benchmark": benchmark, "cells": {}}
        for column, cell in cells.items():
            entry = {"seeds": list(cell.values), "values": list(cell.values.values()), "mean": cell.mean, "std": cell.std}
            other = reference.get(column)
            if other in cells and other != column:
                entry["against"] = {"column": other} | compare(cell, cells[other])
            if bounds and bounds[0] in cells and bounds[1] in cells:
                low, high = cells[bounds[0]].mean, cells[bounds[1]].mean
                entry["gap_closed"] = (cell.mean - low) / (high - low) if high != low else None
            classes = class_means(grouped[(benchmark, column)])
            ranked = sorted(classes, key=classes.get)
            learned = [name for name in ranked if classes[name] >= 0.05]
            entry["best_classes"] = {name: classes[name] for name in learned[::-1][:2]}
            entry["worst_classes"] = {name: classes[name] for name in learned[:2]}  # the weakest above 0
            entry["classes_at_zero"] = [name for name in ranked if classes[name] < 0.05]
            row["cells"][column] = entry
        rows.append(row)
    return rows


def class_means(runs: list[Run]) -> dict[str, float]:
    per_class: dict[str, list[float]] = {}
    for run in runs:
        for name, iou in run.per_class.items():
            if not math.isnan(iou):
                per_class.setdefault(name, []).append(iou)
    return {name: statistics.fmean(values) for name, values in per_class.items()}


def markdown(rows: list[dict], columns: list[str], baseline: str | None, argv: list[str], notes: list[str],
             labels: list[str] | None = None) -> str:
    """The table; ``labels`` name the columns in both tables (default: the columns themselves)."""
    heads = labels or columns
    label = dict(zip(columns, heads, strict=True))
    lines = [f"Command: `python bench/results_table.py {' '.join(argv)}`", "",
             "Target mIoU, mean ± std over seeds (n); below it the difference from "
             f"{label.get(baseline, 'the baseline')} or the column named (seeds ahead of it / common seeds; "
             "** = larger than both spreads) and the share of the source-only → oracle gap closed.", "",
             "| benchmark | " + " | ".join(heads) + " |", "|---|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for column in columns:
            entry = row["cells"].get(column)
            if entry is None:
                cells.append("not measured")
                continue
            text = f"{entry['mean']:.2f} ± {entry['std']:.2f} ({len(entry['seeds'])})"
            versus = entry.get("against")
            if versus:
                mark = "**" if versus["beyond_spread"] else ""
                text += f"<br>{mark}{versus['difference']:+.2f}{mark} ({versus['ahead']}/{versus['paired']})"
                if versus["column"] != baseline:
                    text += f" vs {label[versus['column']]}"
            if entry.get("gap_closed") is not None:
                text += f"<br>gap {100 * entry['gap_closed']:.0f} %"
            cells.append(text)
        lines.append(f"| {row['benchmark']} | " + " | ".join(cells) + " |")
    lines += ["", "Per seed, and the classes with the highest and lowest mean IoU:", "",
              "| benchmark | run | per seed | best classes | worst classes above 0 | classes at 0 |", "|---|---|---|---|---|---|"]
    for row in rows:
        for column, entry in row["cells"].items():
            seeds = " / ".join(f"{v:.2f} (s{s})" for s, v in zip(entry["seeds"], entry["values"], strict=True))
            best = ", ".join(f"{n} {v:.1f}" for n, v in entry["best_classes"].items())
            worst = ", ".join(f"{n} {v:.1f}" for n, v in entry["worst_classes"].items())
            zero = len(entry["classes_at_zero"])
            lines.append(f"| {row['benchmark']} | {label[column]} | {seeds} | {best} | {worst} | {zero} |")
    if notes:
        lines += ["", "Left out:", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="+", type=Path, help="REPORT.json files written by bench/toy_runs.py")
    parser.add_argument("--iterations", type=int, required=True)
    parser.add_argument("--columns", nargs="+", required=True, help="SPEC[+KEY=VALUE...] in table order")
    parser.add_argument("--labels", nargs="+", help="names for the columns in the table's head, one per column")
    parser.add_argument("--baseline", help="the column every other is compared with")
    parser.add_argument("--versus", nargs=2, action="append", default=[], metavar=("COLUMN", "OTHER"),
                        help="compare COLUMN with OTHER instead of the baseline; repeatable")
    parser.add_argument("--bounds", nargs=2, metavar=("LOWER", "UPPER"), help="columns of the gap (source-only, oracle)")
    parser.add_argument("--benchmarks", nargs="+", help="only these benchmarks (default: every one in the reports)")
    parser.add_argument("--since", help="keep runs of --code-sensitive methods trained on this commit or later only")
    parser.add_argument("--code-sensitive", nargs="+", default=["duda"], help="methods --since applies to")
    parser.add_argument("--same", nargs=2, action="append", default=[], metavar=("RUN", "COLUMN"),
                        help="count runs named RUN as COLUMN (one configuration spelt two ways); repeatable")
    parser.add_argument("--report", type=Path, help="also write REPORT.json and REPORT.md")
    args = parser.parse_args(argv)
    same = dict(args.same)
    missing = [str(path) for path in args.reports if not path.is_file()]
    if missing:
        raise SystemExit(f"error: no such report: {', '.join(missing)}")
    if args.labels and len(args.labels) != len(args.columns):
        raise SystemExit(f"error: --labels names {len(args.labels)} columns, --columns has {len(args.columns)}")
    if args.baseline and args.baseline not in args.columns:
        raise SystemExit(f"error: --baseline {args.baseline} is not one of --columns")
    unknown = [c for pair in args.versus for c in pair if c not in args.columns]
    if unknown:
        raise SystemExit(f"error: --versus names {', '.join(unknown)}, not one of --columns")
    runs, notes = load_runs(args.reports, args.iterations, args.since, set(args.code_sensitive), Commits(REPO), same)
    if args.benchmarks:
        runs = [run for run in runs if run.benchmark in args.benchmarks]
    rows = build_table(runs, args.columns, args.baseline, tuple(args.bounds) if args.bounds else None, dict(args.versus))
    text = markdown(rows, args.columns, args.baseline, argv, notes, args.labels)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        Path(f"{args.report}.json").write_text(json.dumps({"argv": argv, "rows": rows, "notes": notes}, indent=1) + "\n")
        Path(f"{args.report}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
