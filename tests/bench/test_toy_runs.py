"""bench/toy_runs.py, which produces docs/RESULTS.md, at a tiny size: it trains, tabulates and resumes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib import metadata

import torch

from tests.conftest import REPO_ROOT
from tests.workers.support import ensure_toy_data

sys.path.insert(0, str(REPO_ROOT / "bench"))
import toy_runs  # noqa: E402

TINY = ["train.crop_size=[64,64]", "train.batch_size=1", "train.max_val_images=3", "train.num_workers=0",
        "train.num_samples=0", "train.checkpoint_interval=1", "self_training.rare_class_sampling=false",
        "optim.warmup_iters=1"]


def run_grid(tmp_path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "bench/toy_runs.py", "--benchmarks", "toy_gta2real",
               "--runs", "source_only:lite0", "duda:lite0:lite0", "--seeds", "0", "1", "--iterations", "2",
               "--eval-interval", "1", "--jobs", "2", "--out", str(tmp_path / "runs"), "--report", str(tmp_path / "report_lr_0.5"),
               *[arg for pair in TINY for arg in ("--set", pair)], *extra]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)


def test_grid_trains_tabulates_and_does_not_train_twice(tmp_path):
    ensure_toy_data()
    completed = run_grid(tmp_path)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    report = json.loads((tmp_path / "report_lr_0.5.json").read_text())
    assert len(report["runs"]) == 4 and all(r["status"] == "ok" for r in report["runs"])
    for record in report["runs"]:
        assert [step for step, _ in record["evaluations"]] == [1, 2]  # the curve is parsed from the log
        assert record["evaluations"][-1][1] == round(record["final_miou"], 2)
        assert "--set method=" in record["command"] and "--set train.iterations=2" in record["command"]
        assert record["wall_s"] > 0
    summary = {row["spec"]: row for row in report["summary"]}
    assert set(summary) == {"source_only:lite0", "duda:lite0:lite0"}
    duda = summary["duda:lite0:lite0"]
    values = [r["final_miou"] for r in report["runs"] if r["spec"] == "duda:lite0:lite0"]
    assert duda["seeds"] == [0, 1] and duda["mean"] == sum(values) / 2 and len(duda["worst_classes"]) == 3
    table = (tmp_path / "report_lr_0.5.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| toy_gta2real | duda:lite0:lite0 "))
    assert "`train.batch_size=1`" in row and f"| 2 | {duda['mean']:.2f} ± {duda['std']:.2f} |" in row
    assert table.startswith("Command: `python bench/toy_runs.py --benchmarks toy_gta2real")
    head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True).stdout
    versions = {record["code"] for record in report["runs"]}  # the commit, "-modified" if the engine differs
    assert len(versions) == 1 and versions.pop().removesuffix("-modified") == head.strip()
    assert f"Code (commit each run trained on): {report['runs'][0]['code']}" in table
    environments = [record["environment"] for record in report["runs"]]  # packages and toy images
    assert all(e == environments[0] for e in environments)
    assert environments[0]["packages"]["torch"] == metadata.version("torch")
    assert set(environments[0]["toy_data"]) == {"synthetic_a_demo/train", "synthetic_a_demo/val", "real_demo/train", "real_demo/val"}
    assert all(len(digest) == 16 for digest in environments[0]["toy_data"].values())
    assert environments[0]["cpu"] == torch.backends.cpu.get_cpu_capability()
    described = [line for line in table.splitlines() if line.startswith("Environment: ")]
    assert len(described) == 1 and f"torch {metadata.version('torch')}" in described[0]
    assert environments[0]["toy_data"]["real_demo/val"] in described[0]
    assert f"CPU kernels {environments[0]['cpu']}" in described[0]

    assert all(r["teacher_miou"] is None for r in report["runs"]) and "EMA teacher" not in table

    again = run_grid(tmp_path, "--score-teachers")  # every result.json exists: nothing is trained again
    assert again.returncode == 0 and "done toy_gta2real" not in again.stdout, again.stderr[-2000:]
    rescored = json.loads((tmp_path / "report_lr_0.5.json").read_text())
    assert [row["values"] for row in rescored["summary"]] == [row["values"] for row in report["summary"]]
    for record in rescored["runs"]:
        teacher_file = tmp_path / "runs" / record["job"] / "teacher_eval.json"
        if record["spec"] == "source_only:lite0":  # no teacher
            assert record["teacher_miou"] is None and not teacher_file.exists()
        else:
            scored = json.loads(teacher_file.read_text())
            assert scored["network"] == "teacher" and record["teacher_miou"] == scored["miou"]
            assert scored["step"] == 2 and scored["preset"] == "lite0" and scored["checkpoint"].endswith("checkpoint_0000002.pt")
            assert 0 <= scored["miou"] <= 100 and set(record["teacher_per_class"]) == set(record["per_class"])
    teachers = [r["teacher_miou"] for r in rescored["runs"] if r["spec"] == "duda:lite0:lite0"]
    table = (tmp_path / "report_lr_0.5.md").read_text()
    assert f"| toy_gta2real | duda:lite0:lite0 `{'` `'.join(TINY)}` | {teachers[0]:.2f} / {teachers[1]:.2f} |" in table

    longer = run_grid(tmp_path, "--runs", "source_only:lite0", "--seeds", "0", "--iterations", "3", "--eval-interval", "1")
    assert longer.returncode == 0 and "done toy_gta2real/source_only-lite0" in longer.stdout  # not the 2-iteration run's result
    assert [step for step, _ in json.loads((tmp_path / "report_lr_0.5.json").read_text())["runs"][0]["evaluations"]] == [1, 2, 3]

    # A run whose checkpoints were deleted: its teacher is reported as not scored, the grid goes on.
    run_dir = tmp_path / "runs" / next(r["job"] for r in rescored["runs"] if r["spec"] == "duda:lite0:lite0")
    shutil.rmtree(run_dir / "checkpoints")
    partial = run_grid(tmp_path, "--score-teachers")
    assert partial.returncode == 0 and "teacher not scored" in partial.stderr and "no full checkpoint" in partial.stderr
    record = next(r for r in json.loads((tmp_path / "report_lr_0.5.json").read_text())["runs"] if run_dir.as_posix().endswith(r["job"]))
    assert record["teacher_miou"] is None and "no full checkpoint" in record["teacher_error"]
    assert f"`{'` `'.join(TINY)}` | – / {teachers[1]:.2f} |" in (tmp_path / "report_lr_0.5.md").read_text()  # seed 0's run

    # The report is the ledger: with every run folder gone (another machine), nothing is trained again, the
    # 3-iteration run another command added stays, and each command is named.
    shutil.rmtree(tmp_path / "runs")
    moved = run_grid(tmp_path)
    assert moved.returncode == 0 and "done toy_gta2real" not in moved.stdout, moved.stderr[-2000:]
    ledger = json.loads((tmp_path / "report_lr_0.5.json").read_text())
    assert len(ledger["runs"]) == 5 and len(ledger["commands"]) == 3
    by_length = {(row["spec"], row["iterations"]): row["values"] for row in ledger["summary"]}
    assert by_length[("duda:lite0:lite0", 2)] == [r["final_miou"] for r in rescored["runs"] if r["spec"] == "duda:lite0:lite0"]
    assert len(by_length[("source_only:lite0", 3)]) == 1 and len(by_length[("source_only:lite0", 2)]) == 2
    table = (tmp_path / "report_lr_0.5.md").read_text()
    assert table.count("Command: `python bench/toy_runs.py") == 3 and "| 3 | 1 |" in table

    # --finished-only trains nothing: a seed never run is left out, the recorded runs stand.
    tabulated = run_grid(tmp_path, "--seeds", "0", "1", "2", "--finished-only")
    assert tabulated.returncode == 0 and "done toy_gta2real" not in tabulated.stdout, tabulated.stderr[-2000:]
    assert not (tmp_path / "runs").exists()
    assert len(json.loads((tmp_path / "report_lr_0.5.json").read_text())["runs"]) == 5


def test_a_seed_placeholder_gives_each_seed_its_own_value_and_the_seeds_one_name(tmp_path):
    extra = ["duda.frozen_teachers=[runs/heavy/seed{seed}/student.pt]"]
    jobs = [toy_runs.Job("toy_synthia2real", "duda:mit_b1:mit_b0", seed, 400, extra) for seed in (0, 2)]
    assert [job.overrides(tmp_path)[-1] for job in jobs] == [
        "duda.frozen_teachers=[runs/heavy/seed0/student.pt]", "duda.frozen_teachers=[runs/heavy/seed2/student.pt]"]
    assert "--set" in jobs[1].command(tmp_path) and "duda.frozen_teachers=[runs/heavy/seed2/student.pt]" in jobs[1].command(tmp_path)
    folder = "toy_synthia2real/duda-mit_b1-mit_b0+duda.frozen_teachers=[runs%heavy%seed{seed}%student.pt]"
    assert [job.name for job in jobs] == [f"{folder}/seed0-400it", f"{folder}/seed2-400it"]  # a path's slashes: one folder
