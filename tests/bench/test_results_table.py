"""bench/results_table.py: the combined table's numbers, class subsets, and which record of a run counts."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from duda_engine.data.classes import CITYSCAPES, SYNTHIA_16_CLASSES
from tests.conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "bench"))
import results_table  # noqa: E402


def record(benchmark: str, spec: str, seed: int, per_class: dict[str, float], code: str | None = None,
           extra: list[str] | None = None, iterations: int = 400) -> dict:
    return {"status": "ok", "benchmark": benchmark, "spec": spec, "extra": extra or [], "seed": seed,
            "iterations": iterations, "final_miou": statistics.fmean(per_class.values()), "per_class": per_class,
            "code": code}


def flat(value: float) -> dict[str, float]:
    """Every class at ``value`` but one at ``value + 19`` (the mIoU is ``value + 1``)."""
    per_class = dict.fromkeys(CITYSCAPES.names, value)
    per_class["road"] = value + 19
    return per_class


def write_report(path: Path, records: list[dict]) -> Path:
    path.write_text(json.dumps({"argv": [], "runs": records, "summary": []}))
    return path


def test_the_table_gives_means_paired_differences_and_the_gap_closed(tmp_path):
    runs = [record("toy_gta2real", "source_only:mit_b0", 0, flat(9)),
            record("toy_gta2real", "oracle:mit_b0", 0, flat(29))]
    runs += [record("toy_gta2real", "self_training:mit_b0", s, flat(13 + s)) for s in (0, 1, 2)]
    runs += [record("toy_gta2real", "duda:mit_b1:mit_b0", s, flat(18 - s), extra=["duda.kd_weight=0"]) for s in (0, 1, 2)]
    runs.append(record("toy_gta2real", "self_training:mit_b0", 0, flat(50), iterations=1600))  # another length
    runs.append(record("toy_real2fog", "self_training:mit_b0", 0, flat(50)))  # another benchmark
    report = write_report(tmp_path / "grid.json", runs)
    duda = "duda:mit_b1:mit_b0+duda.kd_weight=0"
    columns = ["source_only:mit_b0", "self_training:mit_b0", duda, "oracle:mit_b0"]
    done = subprocess.run([sys.executable, "bench/results_table.py", str(report), "--iterations", "400", "--columns", *columns,
                           "--baseline", "self_training:mit_b0", "--bounds", "source_only:mit_b0", "oracle:mit_b0",
                           "--labels", "SO", "ST", "DUDA no KD", "oracle", "--benchmarks", "toy_gta2real",
                           "--report", str(tmp_path / "table_0.64")], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = json.loads((tmp_path / "table_0.64.json").read_text())["rows"]  # a dot in REPORT: appended
    row = rows[0]
    assert len(rows) == 1 and row["benchmark"] == "toy_gta2real"
    self_training, distilled = row["cells"]["self_training:mit_b0"], row["cells"][duda]
    assert self_training["values"] == [14.0, 15.0, 16.0] and self_training["mean"] == 15.0 and self_training["std"] == 1.0
    assert distilled["values"] == [19.0, 18.0, 17.0]
    assert distilled["against"] == {"column": "self_training:mit_b0", "difference": 3.0, "ahead": 3, "paired": 3, "beyond_spread": True}
    assert distilled["gap_closed"] == pytest.approx((18 - 10) / (30 - 10))
    assert "against" not in row["cells"]["oracle:mit_b0"]  # the bounds are not compared
    assert list(distilled["best_classes"])[0] == "road" and distilled["best_classes"]["road"] == 36.0
    assert distilled["classes_at_zero"] == [] and len(distilled["worst_classes"]) == 2
    table = (tmp_path / "table_0.64.md").read_text()
    assert "| 18.00 ± 1.00 (3)<br>**+3.00** (3/3)<br>gap 40 % |" in table
    assert "| benchmark | SO | ST | DUDA no KD | oracle |" in table
    assert "| toy_gta2real | ST | 14.00 (s0) / 15.00 (s1) / 16.00 (s2) |" in table  # the label names the run


def test_versus_compares_a_column_with_another_than_the_baseline(tmp_path):
    runs = [record("toy_gta2real", "oracle:mit_b0", s, flat(20 + s)) for s in (0, 1, 2)]
    runs += [record("toy_gta2real", "oracle:mit_b1", s, flat(24 - s)) for s in (0, 1, 2)]
    runs += [record("toy_gta2real", "self_training:mit_b0", s, flat(15)) for s in (0, 1, 2)]
    report = write_report(tmp_path / "grid.json", runs)
    done = subprocess.run([sys.executable, "bench/results_table.py", str(report), "--iterations", "400",
                           "--columns", "self_training:mit_b0", "oracle:mit_b0", "oracle:mit_b1",
                           "--labels", "ST", "oracle B0", "oracle B1", "--baseline", "self_training:mit_b0",
                           "--versus", "oracle:mit_b1", "oracle:mit_b0", "--report", str(tmp_path / "table")],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    cells = json.loads((tmp_path / "table.json").read_text())["rows"][0]["cells"]
    assert cells["oracle:mit_b1"]["against"] == {"column": "oracle:mit_b0", "difference": 2.0, "ahead": 2, "paired": 3,
                                                 "beyond_spread": True}
    assert cells["oracle:mit_b0"]["against"]["column"] == "self_training:mit_b0"  # the others: the baseline
    assert "| 24.00 ± 1.00 (3)<br>**+2.00** (2/3) vs oracle B0 |" in (tmp_path / "table.md").read_text()
    wrong = subprocess.run([sys.executable, "bench/results_table.py", str(report), "--iterations", "400",
                            "--columns", "oracle:mit_b0", "--versus", "oracle:mit_b0", "oracle:mit_b9"],
                           cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert wrong.returncode != 0 and "--versus names oracle:mit_b9, not one of --columns" in wrong.stderr


def test_a_difference_inside_the_spread_is_not_marked():
    cell = results_table.Cell({0: 14.0, 1: 17.0, 2: 14.6})
    baseline = results_table.Cell({0: 15.0, 1: 15.2, 2: 14.8})
    versus = results_table.compare(cell, baseline)
    assert versus["ahead"] == 1 and versus["difference"] == pytest.approx(0.2) and not versus["beyond_spread"]
    assert not results_table.compare(results_table.Cell({0: 30.0}), results_table.Cell({0: 10.0}))["beyond_spread"]


def test_synthia_is_scored_on_the_classes_its_config_names(tmp_path):
    per_class = dict.fromkeys(CITYSCAPES.names, 10.0)
    per_class.update(terrain=90.0, truck=90.0, train=float("nan"))  # outside the 16 SYNTHIA classes
    per_class["bus"] = float("nan")  # absent from the target: left out of the mean
    report = write_report(tmp_path / "r.json", [record("toy_synthia2real", "self_training:mit_b0", 0, per_class)])
    runs, _ = results_table.load_runs([report], 400, None, {"duda"}, results_table.Commits(REPO_ROOT))
    assert results_table.scored_classes("toy_synthia2real") == SYNTHIA_16_CLASSES
    assert runs[0].miou == 10.0  # 19-class mean would be 20.0
    assert "terrain" not in runs[0].per_class and len(runs[0].per_class) == 16


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


def test_since_drops_older_code_and_the_later_commit_wins_a_conflict(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    commits = []
    for n in range(3):
        (repo / "f").write_text(str(n))
        git(repo, "add", "f")
        git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", str(n))
        commits.append(git(repo, "rev-parse", "--short=12", "HEAD"))
    first, second, third = commits
    old = write_report(tmp_path / "old.json", [
        record("toy_gta2real", "duda:mit_b1:mit_b0", 0, flat(10), code=first),
        record("toy_gta2real", "duda:mit_b1:mit_b0", 1, flat(11)),  # code not recorded
        record("toy_gta2real", "self_training:mit_b0", 0, flat(5)),
    ])
    new = write_report(tmp_path / "new.json", [
        record("toy_gta2real", "duda:mit_b1:mit_b0", 0, flat(20), code=f"{second} {third}-modified"),  # resumed
        record("toy_gta2real", "duda:mit_b1:mit_b0", 2, flat(22), code=f"{first} {third}"),  # began on old code
        record("toy_gta2real", "self_training:mit_b0", 0, flat(5)),  # the same result twice: one run
    ])
    git_commits = results_table.Commits(repo)
    runs, notes = results_table.load_runs([old, new], 400, second, {"duda"}, git_commits)
    assert sorted((r.column, r.seed, r.miou) for r in runs) == [("duda:mit_b1:mit_b0", 0, 21.0), ("self_training:mit_b0", 0, 6.0)]
    assert len(notes) == 3 and all(note.startswith("dropped toy_gta2real duda:mit_b1:mit_b0") for note in notes)

    runs, notes = results_table.load_runs([new, old], 400, None, {"duda"}, git_commits)  # no --since: the later code wins
    assert {(r.seed, r.miou) for r in runs if r.column.startswith("duda")} == {(0, 21.0), (1, 12.0), (2, 23.0)}
    assert notes == [f"toy_gta2real duda:mit_b1:mit_b0 seed 0: 21.00 from {new} (trained on later code) instead of 11.00 from {old}"]

    clash = write_report(tmp_path / "clash.json", [record("toy_gta2real", "self_training:mit_b0", 0, flat(7))])
    with pytest.raises(SystemExit, match="self_training:mit_b0 seed 0: .*old.json says 6.00, .*clash.json says 8.00"):
        results_table.load_runs([old, clash], 400, None, {"duda"}, git_commits)


def test_classes_never_learned_are_counted_apart_from_the_weakest_learned():
    per_class = {"road": 80.0, "sky": 60.0, "car": 5.0, "pole": 0.0, "rider": 0.01, "bus": 2.0}
    run = results_table.Run("toy_gta2real", "self_training:mit_b0", 0, 400, 0.0, per_class, [], "r.json")
    entry = results_table.build_table([run], ["self_training:mit_b0"], None, None)[0]["cells"]["self_training:mit_b0"]
    assert entry["best_classes"] == {"road": 80.0, "sky": 60.0}
    assert entry["worst_classes"] == {"bus": 2.0, "car": 5.0} and entry["classes_at_zero"] == ["pole", "rider"]


def test_a_teacher_column_scores_the_runs_ema_teachers(tmp_path):
    runs = []
    for seed in (0, 1):
        duda = record("toy_gta2real", "duda:mit_b1:mit_b0", seed, flat(15 + seed), extra=["duda.kd_weight=0"])
        duda["teacher_per_class"] = flat(20 + 2 * seed)
        runs.append(duda)
    runs.append(record("toy_gta2real", "self_training:mit_b0", 0, flat(13)))  # no teacher scored
    runs.append(record("toy_gta2real", "self_training:mit_b0", 1, flat(14)))
    report = write_report(tmp_path / "grid.json", runs)
    teacher = "duda:mit_b1:mit_b0+duda.kd_weight=0@teacher"
    done = subprocess.run([sys.executable, "bench/results_table.py", str(report), "--iterations", "400",
                           "--columns", "self_training:mit_b0", "self_training:mit_b0@teacher", teacher,
                           "--baseline", "self_training:mit_b0", "--report", str(tmp_path / "table")],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    cells = json.loads((tmp_path / "table.json").read_text())["rows"][0]["cells"]
    assert cells[teacher]["values"] == [21.0, 23.0] and cells[teacher]["mean"] == 22.0
    assert cells[teacher]["against"] == {"column": "self_training:mit_b0", "difference": 7.5, "ahead": 2, "paired": 2, "beyond_spread": True}
    assert "self_training:mit_b0@teacher" not in cells  # its teachers were not scored
    assert "| 22.00 ± 1.41 (2)<br>**+7.50** (2/2) |" in (tmp_path / "table.md").read_text()


def test_same_counts_a_run_spelt_another_way_as_the_column_it_names(tmp_path):
    old, new = "duda.kd_teacher_view=clean", "duda.kd_weight=1"
    runs = [record("toy_gta2real", "duda:mit_b1:mit_b0", s, flat(15 + s), extra=[old]) for s in (0, 1)]
    spelt_out = record("toy_gta2real", "duda:mit_b1:mit_b0", 2, flat(20), extra=[new, old])
    spelt_out["teacher_per_class"] = flat(30)
    runs += [spelt_out, record("toy_gta2real", "self_training:mit_b0", 2, flat(10))]
    report = write_report(tmp_path / "grid.json", runs)
    column = f"duda:mit_b1:mit_b0+{old}"

    def table(*same: str) -> dict:
        done = subprocess.run([sys.executable, "bench/results_table.py", str(report), "--iterations", "400",
                               "--columns", column, f"{column}@teacher", "--report", str(tmp_path / "table"), *same],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads((tmp_path / "table.json").read_text())["rows"][0]["cells"]

    assert table()[column]["seeds"] == [0, 1]  # without --same the spelt-out run is another column
    cells = table("--same", f"duda:mit_b1:mit_b0+{new}+{old}", column)
    assert cells[column]["seeds"] == [0, 1, 2] and cells[column]["values"] == [16.0, 17.0, 21.0]
    assert cells[f"{column}@teacher"]["values"] == [31.0]  # its teacher follows it
