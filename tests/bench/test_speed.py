"""The bench at a tiny size on CPU: table, JSON report, skip reasons, parity of the CPU speed paths."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import yaml

from bench.speed import cli
from bench.speed.cases import BASELINE, BENCH_FIRST_STEP, VARIANTS, BenchError, parse_case, skip_reason
from bench.speed.machine import BenchSettings
from bench.speed.report import format_table
from bench.speed.run import run_bench
from bench.speed.training import check_parity, compare_traces, loss_trace
from bench.speed.workload import bench_config, synthetic_batches
from duda_engine import cli as engine_cli
from duda_engine.methods import build_method
from duda_engine.validation import class_spec
from tests.engine.conftest import tiny_config

CPU = torch.device("cpu")
CUDA = torch.device("cuda")  # only compared against, never allocated on


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def tiny_config_file(tiny_domains, tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tiny_domains, tmp_path / "run")))
    return path


def test_cases_by_name_and_spelled_out():
    assert parse_case("duda_b5_b0").auxiliary == "mit_b5" and parse_case("duda_b5_b0").student == "mit_b0"
    assert parse_case("duda_r101_r18").auxiliary == "resnet101"
    case = parse_case("duda:mit_b2:mit_b0")
    assert (case.method, case.auxiliary, case.student) == ("duda", "mit_b2", "mit_b0")
    assert parse_case("self_training:resnet18").student == "resnet18"
    for wrong in ("nope", "duda:mit_b0", "source_only:mit_b0:mit_b5", "source_only:no_such_preset"):
        with pytest.raises(BenchError):
            parse_case(wrong)


def test_variants_that_do_not_apply_are_skipped_with_a_reason():
    source_only, duda = parse_case("source_only_b0"), parse_case("duda_b5_b0")
    assert "CUDA" in skip_reason(VARIANTS["bf16"], duda, CPU)
    assert skip_reason(VARIANTS["bf16"], duda, CUDA) == ""
    assert "CUDA only" in skip_reason(VARIANTS["cuda_graphs"], duda, CPU)
    assert skip_reason(VARIANTS["cuda_graphs"], duda, CUDA) == ""  # measured on a GPU: compile mode reduce-overhead
    assert _config("source_only:mit_b0", "cuda_graphs").train.compile_mode == "reduce-overhead"
    assert "already" in skip_reason(VARIANTS["fused_adamw"], duda, CUDA)
    assert skip_reason(VARIANTS["fused_adamw"], duda, CPU) == ""
    assert skip_reason(VARIANTS["teacher_inference_mode"], source_only, CPU) == "this method has no teacher"
    assert skip_reason(VARIANTS["channels_last"], source_only, CPU) == ""


def test_compare_traces_measures_the_largest_relative_difference():
    a = [{"loss/source": 2.0, "loss/kd": 0.5}, {"loss/source": 1.0, "loss/kd": 0.4}]
    b = [{"loss/source": 2.0, "loss/kd": 0.5}, {"loss/source": 1.0, "loss/kd": 0.4005}]
    result = compare_traces(a, b, tolerance=1e-3)
    assert result.passed and result.max_difference == pytest.approx(5e-4) and result.worst == "iteration 1, loss/kd"
    assert not compare_traces(a, b, tolerance=1e-4).passed
    assert not compare_traces(a, [{"loss/source": 2.0}, {"loss/source": 1.0}], tolerance=1.0).passed
    assert not compare_traces(a, [{"loss/source": float("nan"), "loss/kd": 0.5}] + b[1:], tolerance=1.0).passed


def _config(case: str, variant: str, **kwargs):
    return bench_config(parse_case(case), VARIANTS[variant], height=64, width=64, batch=1, device="cpu", **kwargs)


# Stated tolerance: every loss of every iteration within 1e-3 of fp32 eager, relative to max(|loss|, 1).
# Measured here: channels_last differs by ~1e-4 after 3 steps (other convolution kernels), fused AdamW by ~1e-6.
PARITY_TOLERANCE = 1e-3


def test_cpu_speed_paths_keep_parity_with_fp32_eager():
    baseline = _config("duda:mit_b0:mit_b0", BASELINE)
    channels_last = check_parity(baseline, _config("duda:mit_b0:mit_b0", "channels_last"), 3, PARITY_TOLERANCE)
    assert channels_last.passed, channels_last.to_dict()
    reference = channels_last.losses_a
    assert len(reference) == 3 and {"loss/source", "loss/target", "loss/kd", "aux/loss_source"} <= set(reference[0])

    again = compare_traces(reference, loss_trace(baseline, 3), tolerance=0.0)
    assert again.passed and again.max_difference == 0.0, "the same config must train identically from the same seed"
    fused = compare_traces(reference, loss_trace(baseline, 3, tweaks=("fused_adamw",)), PARITY_TOLERANCE)
    assert fused.passed, fused.to_dict()


def test_bench_writes_table_and_json(tiny_config_file, tmp_path, capsys):
    report_path = tmp_path / "out" / "bench.json"
    argv = [
        "--methods", "source_only:mit_b0", "duda:mit_b0:mit_b0",
        "--variants", "channels_last", "bf16",
        "--height", "64", "--width", "64", "--batch", "1", "--iterations", "2", "--warmup", "1",
        "--data", "both", "--config", str(tiny_config_file), "--device", "cpu", "--json", str(report_path),
    ]  # fmt: skip
    assert cli.main(argv) == 0
    table = capsys.readouterr().out
    for text in (
        "ms/iter",
        "x fp32",
        "data wait",
        "fp32_eager",
        "channels_last",
        "skipped: bf16",
        "command: python -m duda_engine bench",
    ):
        assert text in table

    report = json.loads(report_path.read_text())
    assert report["format"] == "duda-bench-v1" and report["mode"] == "train"
    assert report["command"].startswith("python -m duda_engine bench ") and "--height 64" in report["command"]
    assert report["device"]["type"] == "cpu" and report["device"]["cpu_count"] >= 1
    assert report["settings"]["height"] == 64 and report["settings"]["iterations"] == 2
    results = report["results"]
    assert len(results) == 2 * 2 * 3  # cases x data x (baseline, channels_last, bf16)
    for record in results:
        if record["variant"] == "bf16":
            assert record["status"] == "skipped" and "CUDA" in record["reason"]
            continue
        assert record["status"] == "ok", record
        timing = record["ms_per_iter"]
        assert 0 < timing["p10"] <= timing["median"] <= timing["p90"]
        assert record["speedup_vs_fp32_eager"] > 0 and record["images_per_s"] > 0
        assert record["peak_memory_kind"] == "cpu_peak_rss_delta"
        assert all(v == v for v in record["last_losses"].values())  # finite, not NaN
        if record["variant"] == BASELINE:
            assert record["speedup_vs_fp32_eager"] == 1.0
        if record["data"] == "pipeline":
            assert record["data_wait_ms"]["median"] > 0 and 0 < record["data_wait_share"] < 1
        else:
            assert record["data_wait_ms"] is None
    assert {(s["case"], s["data"]) for s in report["summary"]} == {
        (case, data) for case in ("source_only:mit_b0", "duda:mit_b0:mit_b0") for data in ("synthetic", "pipeline")
    }


def test_inference_mode_reports_images_per_second():
    settings = BenchSettings(
        inference=True, presets=["mit_b0", "resnet18"], height=64, width=128, iterations=2, warmup=1, device="cpu"
    )
    report = run_bench(settings)
    assert [r["preset"] for r in report["results"]] == ["mit_b0", "resnet18"]
    for record in report["results"]:
        assert record["status"] == "ok" and record["dtype"] == "fp32"
        assert record["images_per_s"] > 0 and record["parameters_m"] > 0
    assert "--inference --presets mit_b0 resnet18" in report["command"] and "--batch 1" in report["command"]
    assert "images/s" in format_table(report)


def test_bad_options_are_errors_not_tracebacks(capsys):
    assert cli.main(["--methods", "no_such_case", "--device", "cpu"]) == 2
    assert "unknown case" in capsys.readouterr().err
    assert cli.main(["--variants", "turbo", "--device", "cpu"]) == 2
    assert "unknown variant" in capsys.readouterr().err
    assert cli.main(["--list"]) == 0
    assert "duda_b5_b0" in capsys.readouterr().out


def test_the_engines_bench_command_is_the_bench(capsys):
    """``python -m duda_engine bench ...`` runs the bench's own command line, imported only then."""
    args = cli.build_parser().parse_args(["--inference", "--presets", "mit_b0,resnet18", "--device", "cpu"])
    assert cli.settings_from_args(args).presets == ["mit_b0", "resnet18"]
    assert engine_cli.main(["bench", "--list"]) == 0
    assert "duda_b5_b0" in capsys.readouterr().out
    assert engine_cli.main(["bench", "--variants", "turbo", "--device", "cpu"]) == 2
    assert "unknown variant" in capsys.readouterr().err
    code = "import sys, duda_engine.cli; print('bench.speed' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_interleaved_variants_are_timed_side_by_side():
    settings = BenchSettings(
        cases=["source_only:mit_b0"], variants=["channels_last", "fused_adamw"], height=64, width=64, batch=1,
        iterations=2, warmup=1, data="synthetic", device="cpu", interleave=True,
    )  # fmt: skip
    report = run_bench(settings)
    assert "--interleave" in report["command"] and report["settings"]["interleave"] is True
    assert [r["variant"] for r in report["results"]] == [BASELINE, "channels_last", "fused_adamw"]
    for record in report["results"]:
        assert record["status"] == "ok" and record["iterations"] == 2 and record["warmup"] == 1
        assert record["peak_memory_mib"] is None and record["ms_per_iter"]["median"] > 0
    assert report["results"][0]["speedup_vs_fp32_eager"] == 1.0


def test_batched_teacher_forwards_train_as_separate_passes_with_one_call_per_teacher():
    """Teachers predict in eval mode, so one pass over the target + source images gives each view's
    predictions unchanged: the losses match separate passes, and each steady teacher runs once a step.
    The auxiliary student, a teacher that steps during the step, labels the target before its update and
    predicts each distillation view (the target and the source batch) once after it: in one pass when
    batched, else two."""
    views = 2
    assert "DUDA" in skip_reason(VARIANTS["batched_teacher_forwards"], parse_case("self_training_b5"), CPU)
    traces, calls = {}, {}
    for batched in (False, True):
        config = _config("duda:mit_b0:mit_b0", "batched_teacher_forwards" if batched else BASELINE)
        assert config.duda.batch_teacher_forwards is batched
        config.duda.teachers, config.duda.kd_on_source = ["ema", "auxiliary", "student_ema"], True
        classes = class_spec(config)
        torch.manual_seed(config.seed)
        method = build_method(config, classes, torch.device("cpu"))
        calls[batched] = {"ema": 0, "student_ema": 0}
        for name in calls[batched]:
            getattr(method, name).register_forward_pre_hook(lambda *_, n=name, c=calls[batched]: c.__setitem__(n, c[n] + 1))
        auxiliary_as_teacher = []  # the auxiliary's weights (one of them) at each eval-mode call
        first_weight = next(method.auxiliary.parameters())
        method.auxiliary.register_forward_pre_hook(
            lambda module, _, seen=auxiliary_as_teacher, w=first_weight: None if module.training else seen.append(w.detach().clone())
        )
        source, target = synthetic_batches(config, classes.num_classes, torch.device("cpu"), config.seed)
        traces[batched] = []
        for i in range(2):
            auxiliary_as_teacher.clear()
            traces[batched].append(method.train_step(source, target, BENCH_FIRST_STEP + i))
            labels_target, *distils = auxiliary_as_teacher
            assert len(distils) == (1 if batched else 2)
            assert not torch.equal(labels_target, first_weight) and all(torch.equal(w, first_weight) for w in distils)
    assert calls[False] == {"ema": 2 * views, "student_ema": 2 * views}  # each view, two steps
    assert calls[True] == {"ema": 2, "student_ema": 2}
    for separate, batched in zip(traces[False], traces[True], strict=True):
        assert separate["loss/kd"] > 0 and separate["loss/kd_source"] > 0
        for name in ("loss/kd", "loss/kd_source", "loss/target", "loss/source", "aux/loss_target"):
            assert batched[name].item() == pytest.approx(separate[name].item(), rel=1e-5), name
