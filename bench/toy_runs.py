"""Train a grid of runs on the bundled toy benchmarks and tabulate their target mIoU.

    python bench/toy_runs.py --benchmarks toy_gta2real --runs source_only:mit_b0 oracle:mit_b0 \\
        duda:mit_b2:mit_b0 --seeds 0 1 2 --iterations 400 --jobs 2 --out runs/grid --report experiments/random_weights/grid

Each run is ``python -m duda_engine train --config configs/toy/<benchmark>.yaml`` with ``--set``
overrides for the method, the networks, the seed and the iterations, in its own process with one
CPU thread (``--jobs`` of them at a time: on a small CPU two one-thread runs finish sooner than two
two-thread runs in turn). A run whose ``result.json`` exists is not run again, so an interrupted grid
continues where it stopped. The report is also the grid's ledger: a run already recorded in
``<report>.json`` (trained on another machine, its folder gone) is not trained again either, and the
report keeps every run it recorded before, beside this command's, with each command that added runs. ``--score-teachers`` also scores each self-training and DUDA run's EMA
teacher on the target (``eval --network teacher``; for DUDA the large network's), tabulated beside its
student. The report is ``<report>.json`` (every run: final mIoU, the evaluations along the way,
per-class IoU, wall time, the exact command) and ``<report>.md`` (mean ± std over seeds).
``{seed}`` in a ``--set`` value is the run's seed (``--set duda.frozen_teachers=[runs/heavy/seed{seed}/student.pt]``:
each seed's run takes the frozen teacher trained with its seed; the report names the run with ``{seed}``,
so the seeds are one column).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EVAL_LINE = re.compile(r"^\[(\d+)\] target mIoU ([0-9.]+)", re.MULTILINE)
sys.path.insert(0, str(REPO))  # duda_engine, imported only where a teacher is scored (it loads torch)


@dataclass
class Job:
    benchmark: str
    spec: str  # method:student or duda:auxiliary:student
    seed: int
    iterations: int
    extra: list[str] = field(default_factory=list)  # more --set KEY=VALUE pairs

    @property
    def method(self) -> str:
        return self.spec.split(":")[0]

    @property
    def name(self) -> str:
        """The run's folder under ``--out``: every setting that changes its result is in it (the same run
        at another length must not find this one's result.json)."""
        suffix = "".join(f"+{pair}" for pair in self.extra).replace("/", "%")  # a path in a value: one folder
        return f"{self.benchmark}/{self.spec.replace(':', '-')}{suffix}/seed{self.seed}-{self.iterations}it"

    def overrides(self, output_dir: Path) -> list[str]:
        parts = self.spec.split(":")
        pairs = [f"method={parts[0]}", f"seed={self.seed}", f"train.iterations={self.iterations}",
                 f"output_dir={output_dir}"]
        if parts[0] == "duda":
            if len(parts) != 3:
                raise SystemExit(f"error: {self.spec}: write duda:AUXILIARY:STUDENT")
            pairs += [f"model.auxiliary={parts[1]}", f"model.student={parts[2]}"]
        else:
            if len(parts) != 2:
                raise SystemExit(f"error: {self.spec}: write METHOD:STUDENT")
            pairs.append(f"model.student={parts[1]}")
        return pairs + [pair.replace("{seed}", str(self.seed)) for pair in self.extra]

    def command(self, output_dir: Path) -> list[str]:
        args = ["python", "-m", "duda_engine", "train", "--config", f"configs/toy/{self.benchmark}.yaml"]
        for pair in self.overrides(output_dir):
            args += ["--set", pair]
        return args


def code_version() -> str | None:
    """The commit of the code a run trains on (``<sha>-modified`` when ``duda_engine/`` or ``configs/``
    differ from it, new files included); None outside a git checkout. Recorded beside each run (every
    start of a resumed run), since a command reproduces a number only on the code that produced it."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)

    try:
        head = git("rev-parse", "--short=12", "HEAD")
    except OSError:  # no git on this machine
        return None
    if head.returncode != 0:
        return None
    changes = git("status", "--porcelain", "--untracked-files=normal", "--", "duda_engine", "configs")
    modified = changes.returncode != 0 or bool(changes.stdout.strip())  # edited or new files
    return head.stdout.strip() + ("-modified" if modified else "")


PACKAGES = ("torch", "timm", "numpy", "pillow", "opencv-python-headless")


@functools.cache
def toy_digest(domain: str, size: str, split: str) -> str:
    """sha256 prefix of a toy split's images (names and bytes); read once per grid, not once per run."""
    from duda_engine.toy.domains import ensure_toy_domain

    folder, digest = ensure_toy_domain(domain, size, split), hashlib.sha256()
    for file in sorted(folder.rglob("*.png")):
        digest.update(file.relative_to(folder).as_posix().encode() + file.read_bytes())
    return digest.hexdigest()[:16]


def environment(run_config: Path) -> dict:
    """What decides a run's numbers besides the code: package versions, a digest of the toy images it
    trained and was scored on (numpy, Pillow and OpenCV render them; a new release can change pixels),
    and the CPU's vector instruction set PyTorch's kernels use (AVX2, AVX512…): a run is bit-identical
    when repeated on one kind of CPU, but another kind rounds differently and 400 iterations carry that
    as far as a change of seed. ``run_config``: the config.json the run wrote (overrides applied)."""
    config = json.loads(run_config.read_text())
    digests = {}
    for role in ("source", "target"):
        if config[role]["kind"] != "toy":
            continue
        domain, size = config[role]["domain"], config[role]["toy_size"]
        for split in ("train", "val"):
            digests[f"{domain}_{size}/{split}"] = toy_digest(domain, size, split)
    return {"packages": {name: metadata.version(name) for name in PACKAGES}, "toy_data": digests, "cpu": cpu_capability()}


@functools.cache
def cpu_capability() -> str:
    """The instruction set PyTorch dispatches its CPU kernels to on this machine, e.g. ``AVX512``."""
    result = subprocess.run([sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
                            capture_output=True, text=True, check=True)
    return result.stdout.strip()


def score_teacher(job: Job, output_dir: Path) -> dict | None:
    """The target mIoU of the run's EMA teacher (``eval --network teacher`` on its last full checkpoint):
    self-training's teacher of the student, DUDA's large teacher. Stored beside the run as
    ``teacher_eval.json`` and computed again only when the checkpoint changed. ``{"error": ...}`` when it
    cannot be scored (the report says so; the grid goes on)."""
    from duda_engine.checkpoint import latest_full_checkpoint
    from duda_engine.student import NETWORKS_BY_METHOD

    if "teacher" not in NETWORKS_BY_METHOD[job.method]:
        return None
    checkpoint = latest_full_checkpoint(output_dir)
    if checkpoint is None:
        return {"error": f"no full checkpoint under {output_dir / 'checkpoints'}"}
    source = {"checkpoint": str(checkpoint), "checkpoint_mtime_ns": checkpoint.stat().st_mtime_ns}
    scored = output_dir / "teacher_eval.json"
    stored = json.loads(scored.read_text()) if scored.is_file() else {}
    if all(stored.get(k) == v for k, v in source.items()):
        return stored
    fresh = output_dir / "teacher_eval.tmp.json"
    command = [sys.executable, "-m", "duda_engine", "eval", "--config", f"configs/toy/{job.benchmark}.yaml",
               "--checkpoint", str(checkpoint), "--network", "teacher", "--json", str(fresh)]
    for pair in job.overrides(output_dir):
        command += ["--set", pair]
    env = dict(os.environ) | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    result = json.loads(fresh.read_text()) | source
    scored.write_text(json.dumps(result, indent=1) + "\n")
    fresh.unlink()
    return result


def run_job(job: Job, out: Path, eval_interval: int, teachers: bool = False) -> dict:
    output_dir = out / job.name
    result_path = output_dir / "result.json"
    command = job.command(output_dir)
    if eval_interval:
        command += ["--set", f"train.eval_interval={eval_interval}"]
    log_path = output_dir / "train.log"
    if not result_path.is_file():
        output_dir.mkdir(parents=True, exist_ok=True)
        code_file, version = output_dir / "code.txt", code_version() or "unknown"
        earlier = code_file.read_text().split() if code_file.is_file() else []  # a resumed run: each start's code
        if version not in earlier:
            code_file.write_text(" ".join([*earlier, version]) + "\n")
        env = dict(os.environ) | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
        started = time.perf_counter()
        with open(log_path, "w") as log:
            code = subprocess.call([sys.executable, *command[1:]], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        if code != 0:
            return {"job": job.name, "status": "failed", "exit_code": code, "log_tail": log_path.read_text()[-1500:]}
        (output_dir / "wall_s.txt").write_text(f"{time.perf_counter() - started:.1f}\n")
        (output_dir / "environment.json").write_text(json.dumps(environment(output_dir / "config.json"), indent=1) + "\n")
        print(f"done {job.name}", flush=True)
    result = json.loads(result_path.read_text())
    log_text = log_path.read_text() if log_path.is_file() else ""
    wall, code, env = output_dir / "wall_s.txt", output_dir / "code.txt", output_dir / "environment.json"
    teacher = score_teacher(job, output_dir) if teachers else None
    return {
        "job": job.name, "status": "ok", "benchmark": job.benchmark, "spec": job.spec, "extra": job.extra,
        "seed": job.seed, "iterations": job.iterations, "final_miou": result["final_miou"],
        "evaluations": [[int(s), float(m)] for s, m in EVAL_LINE.findall(log_text)],
        "per_class": result.get("per_class", {}), "wall_s": float(wall.read_text()) if wall.is_file() else None,
        "command": " ".join(command), "code": code.read_text().strip() if code.is_file() else None,
        "environment": json.loads(env.read_text()) if env.is_file() else None,
        "teacher_miou": teacher.get("miou") if teacher else None, "teacher_per_class": teacher.get("per_class", {}) if teacher else {},
        "teacher_error": teacher.get("error") if teacher else None,
    }


def recorded_runs(report: Path) -> tuple[list[list[str]], dict[str, dict]]:
    """The commands and the finished runs (by folder name) an earlier report holds; none if there is none."""
    if not report.is_file():
        return [], {}
    content = json.loads(report.read_text())
    commands = content.get("commands") or [content["argv"]]
    return commands, {r["job"]: r for r in content["runs"] if r["status"] == "ok"}


def summarise(records: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for record in records:
        if record["status"] == "ok":
            key = (record["benchmark"], record["spec"], tuple(record["extra"]), record["iterations"])
            groups.setdefault(key, []).append(record)
    rows = []
    for (benchmark, spec, extra, iterations), members in groups.items():
        values = [m["final_miou"] for m in members]
        per_class: dict[str, list[float]] = {}
        for m in members:
            for name, iou in m["per_class"].items():
                if iou == iou:  # not NaN
                    per_class.setdefault(name, []).append(iou)
        class_mean = {name: statistics.fmean(v) for name, v in per_class.items()}
        ranked = sorted(class_mean, key=class_mean.get)
        rows.append({
            "benchmark": benchmark, "spec": spec, "extra": list(extra), "iterations": iterations, "seeds": sorted(m["seed"] for m in members),
            "mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values, "best_classes": {n: class_mean[n] for n in ranked[::-1][:3]},
            "worst_classes": {n: class_mean[n] for n in ranked[:3]},
            "wall_s_mean": statistics.fmean([m["wall_s"] for m in members if m["wall_s"]] or [0.0]),
            "teacher_values": [m.get("teacher_miou") for m in members],  # None: not scored
            "code": sorted({m.get("code") or "not recorded" for m in members}),
            "environments": [m.get("environment") for m in members],
        })
    return rows


def markdown(rows: list[dict], commands: list[list[str]]) -> str:
    lines = [*(f"Command: `python bench/toy_runs.py {' '.join(argv)}`" for argv in commands), "",
             "| benchmark | run | iterations | seeds | target mIoU (mean ± std) | per seed | best classes | worst classes | wall per run |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        run = r["spec"] + "".join(f" `{e}`" for e in r["extra"])
        best = ", ".join(f"{n} {v:.1f}" for n, v in r["best_classes"].items())
        worst = ", ".join(f"{n} {v:.1f}" for n, v in r["worst_classes"].items())
        per_seed = " / ".join(f"{v:.2f}" for v in r["values"])
        lines.append(f"| {r['benchmark']} | {run} | {r['iterations']} | {len(r['seeds'])} | {r['mean']:.2f} ± {r['std']:.2f} | {per_seed} "
                     f"| {best} | {worst} | {r['wall_s_mean'] / 60:.1f} min |")
    versions = sorted({version for r in rows for version in r["code"]})
    lines += ["", f"Code (commit each run trained on): {', '.join(versions)}"]
    environments = sorted({json.dumps(e, sort_keys=True) for r in rows for e in r["environments"]})
    for described in environments:
        e = json.loads(described)
        if e is None:
            lines.append("Environment: not recorded (runs from before toy_runs recorded it)")
            continue
        packages = ", ".join(f"{name} {version}" for name, version in e["packages"].items())
        data = ", ".join(f"{name} {digest}" for name, digest in e["toy_data"].items())
        cpu = f"; CPU kernels {e['cpu']}" if "cpu" in e else ""
        lines.append(f"Environment: {packages}; toy images (sha256 prefix): {data}{cpu}")
    teachers = [r for r in rows if any(v is not None for v in r["teacher_values"])]
    if teachers:
        lines += ["", "Target mIoU of each run's EMA teacher at the end (`eval --network teacher`; DUDA: the large network's):",
                  "", "| benchmark | run | teacher per seed | student per seed |", "|---|---|---|---|"]
        for r in teachers:
            lines.append(f"| {r['benchmark']} | {r['spec']}{''.join(f' `{e}`' for e in r['extra'])} | "
                         f"{' / '.join('–' if v is None else f'{v:.2f}' for v in r['teacher_values'])} | {' / '.join(f'{v:.2f}' for v in r['values'])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmarks", nargs="+", default=["toy_gta2real", "toy_synthia2real", "toy_real2fog", "toy_real2night"])
    parser.add_argument("--runs", nargs="+", required=True, help="method:student or duda:auxiliary:student")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--eval-interval", type=int, default=0, help="override train.eval_interval (0: the config's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="an extra override for every run")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default="runs/toy_grid")
    parser.add_argument("--report", required=True, help="writes REPORT.json and REPORT.md")
    parser.add_argument("--finished-only", action="store_true",
                        help="train nothing: tabulate the runs that have finished (a result.json or the report's record)")
    parser.add_argument("--score-teachers", action="store_true",
                        help="also score each self-training and DUDA run's EMA teacher on the target (eval --network teacher)")
    args = parser.parse_args(argv)
    jobs = [Job(b, spec, seed, args.iterations, list(args.set)) for b in args.benchmarks for spec in args.runs
            for seed in args.seeds]
    out = Path(args.out).resolve()
    commands, recorded = recorded_runs(Path(f"{args.report}.json"))
    if args.finished_only:
        jobs = [job for job in jobs if job.name in recorded or (out / job.name / "result.json").is_file()]

    def record(job: Job) -> dict:
        if job.name in recorded and not (out / job.name / "result.json").is_file():
            return recorded[job.name]  # trained before, its folder elsewhere: the report's record stands
        return run_job(job, out, args.eval_interval, args.score_teachers)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        records = list(pool.map(record, jobs))
    names = {job.name for job in jobs}
    records += [r for name, r in recorded.items() if name not in names]  # the report's other runs stay
    commands = commands if argv in commands else [*commands, argv]
    rows = summarise(records)
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)  # REPORT may hold dots: append, not with_suffix
    Path(f"{args.report}.json").write_text(json.dumps({"commands": commands, "runs": records, "summary": rows}, indent=1) + "\n")
    Path(f"{args.report}.md").write_text(markdown(rows, commands))
    print(markdown(rows, commands))
    failed = [r for r in records if r["status"] != "ok"]
    for record in failed:
        print(f"FAILED {record['job']} (exit {record['exit_code']}):\n{record['log_tail']}", file=sys.stderr)
    for record in records:
        if record.get("teacher_error"):
            print(f"teacher not scored for {record['job']}: {record['teacher_error']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
