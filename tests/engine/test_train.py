"""End-to-end runs of every method on tiny data: callbacks, checkpoints, exact resume, cancel, CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from duda_engine.callbacks import Callbacks
from duda_engine.checkpoint import CheckpointError, latest_full_checkpoint, load_checkpoint
from duda_engine.config import ConfigError
from duda_engine.config_loading import config_from_dict
from duda_engine.student import load_student
from duda_engine.train import train
from tests.conftest import REPO_ROOT
from tests.engine.conftest import COLOURS, tiny_config


class Recorder(Callbacks):
    def __init__(self, stop_after: int | None = None):
        self.metrics, self.evaluations, self.samples, self.checkpoints, self.status = {}, {}, {}, [], []
        self.stop_after, self.started = stop_after, None

    def on_start(self, total_steps, start_step):
        self.started = (total_steps, start_step)

    def on_metrics(self, step, values):
        self.metrics[step] = values

    def on_evaluation(self, step, result):
        self.evaluations[step] = result

    def on_samples(self, step, samples, classes):
        self.samples[step] = samples
        self.classes = classes

    def on_checkpoint(self, step, path, kind):
        self.checkpoints.append((step, path, kind))

    def on_status(self, message):
        self.status.append(message)

    def should_stop(self):
        return self.stop_after is not None and bool(self.metrics) and max(self.metrics) >= self.stop_after


@pytest.mark.parametrize("method", ["source_only", "self_training", "duda", "oracle"])
def test_each_method_runs_and_reports(tiny_domains, tmp_path, method):
    config = config_from_dict(tiny_config(tiny_domains, tmp_path / "run", method))
    recorder = Recorder()
    result = train(config, recorder)
    assert result.steps == 6 and not result.cancelled
    assert sorted(recorder.metrics) == [1, 2, 3, 4, 5, 6]
    assert all(math.isfinite(v) for values in recorder.metrics.values() for v in values.values())
    assert "loss/source" in recorder.metrics[1]
    assert sorted(recorder.evaluations) == [3, 6]
    assert 0 <= result.final.miou <= 100 and set(result.final.per_class) == {"ground", "box", "disc"}
    sample = recorder.samples[6][0]
    expected_roles = {"ground_truth", "student"} | ({"teacher"} if method in ("self_training", "duda") else set())
    assert set(sample.class_ids) == expected_roles and recorder.classes.names == ("ground", "box", "disc")
    assert sample.image.shape == (64, 96, 3) and sample.image.dtype == np.uint8
    for ids in sample.class_ids.values():  # class ids, not colours
        assert ids.shape == (64, 96) and ids.dtype == np.uint8 and set(np.unique(ids)) <= {0, 1, 2, 255}
    kinds = [(step, kind) for step, _, kind in recorder.checkpoints]
    assert kinds == [(3, "full"), (6, "full"), (6, "student")]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["method"] == method
    assert json.loads((tmp_path / "run" / "result.json").read_text())["final_miou"] == pytest.approx(result.final.miou)
    if method in ("source_only", "oracle"):  # one network: nothing else to load from the full checkpoint
        with pytest.raises(CheckpointError, match=rf"\({method}\) holds no 'teacher' network; it holds: student$"):
            load_student(latest_full_checkpoint(tmp_path / "run"), network="teacher")
    if method == "duda":
        assert recorder.metrics[1]["schedule/kd_weight"] == 0.0  # pre-adaptation: hard labels only
        assert recorder.metrics[6]["schedule/kd_weight"] == pytest.approx(1.0)
        assert "loss/kd" in recorder.metrics[6] and "aux/loss_target" in recorder.metrics[6]


@pytest.mark.parametrize("method", ["self_training", "duda"])
def test_resume_continues_exactly(tiny_domains, tmp_path, method):
    """A run stopped after 3 iterations and resumed logs the same losses as an uninterrupted run."""
    uninterrupted = Recorder()
    train(config_from_dict(tiny_config(tiny_domains, tmp_path / "a", method)), uninterrupted)

    config = config_from_dict(tiny_config(tiny_domains, tmp_path / "b", method))
    first = Recorder(stop_after=3)
    assert train(config, first).cancelled
    assert load_checkpoint(latest_full_checkpoint(tmp_path / "b"))["step"] == 3
    second = Recorder()
    train(config, second)
    assert second.started == (6, 3)
    for step in (4, 5, 6):
        for name, value in uninterrupted.metrics[step].items():
            if not name.startswith("time/"):
                assert second.metrics[step][name] == pytest.approx(value, rel=1e-5, abs=1e-7), (step, name)


def test_the_cli_writes_the_training_curve_and_a_resumed_run_does_not_repeat_steps(tiny_domains, tmp_path):
    from duda_engine.cli import ConsoleCallbacks

    class StopsAfter(ConsoleCallbacks):
        def should_stop(self):
            return self.metrics_file.exists() and len(self.metrics_file.read_text().splitlines()) >= 4

    config = config_from_dict(tiny_config(tiny_domains, tmp_path / "run", "duda"))
    assert train(config, StopsAfter(tmp_path / "run", quiet=True)).cancelled  # checkpoint at step 4
    metrics = tmp_path / "run" / "metrics.jsonl"
    with metrics.open("a") as out:  # what a crashed start logged after its last checkpoint, the last line cut short
        out.write(json.dumps({"step": 5, "loss/source": -1.0}) + "\n" + '{"step": 6, "loss/sou')
    train(config, ConsoleCallbacks(tmp_path / "run", quiet=True))
    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3, 4, 5, 6]
    assert all(line["loss/source"] > 0 and "inconsistency/pixel_mean" in line and "lr" in line for line in lines)
    with Image.open(tmp_path / "run" / "samples" / "step_0000006" / "000_student.png") as student:
        assert student.mode == "RGB" and student.size == (96, 64)  # a viewable image in the class colours
        assert {tuple(c) for c in np.array(student).reshape(-1, 3)} <= {tuple(c) for c in COLOURS}


def test_cancel_stops_with_a_checkpoint(tiny_domains, tmp_path):
    recorder = Recorder(stop_after=2)
    result = train(config_from_dict(tiny_config(tiny_domains, tmp_path / "run", "self_training")), recorder)
    assert result.cancelled and result.steps == 2
    assert recorder.checkpoints[-1][0] == 2 and recorder.checkpoints[-1][2] == "full"


def test_resume_refuses_another_experiment(tiny_domains, tmp_path):
    train(config_from_dict(tiny_config(tiny_domains, tmp_path / "run", "source_only", iterations=3)), Recorder())
    other = tiny_config(tiny_domains, tmp_path / "run", "source_only", iterations=6)
    other["model"]["student"] = "resnet18"
    with pytest.raises(ConfigError, match="^model: differs"):
        train(config_from_dict(other), Recorder())


def test_student_checkpoint_is_small_and_evaluates_the_same_through_the_cli(tiny_domains, tmp_path):
    data = tiny_config(tiny_domains, tmp_path / "run", "duda")
    result = train(config_from_dict(data), Recorder())
    student, full = tmp_path / "run" / "student.pt", latest_full_checkpoint(tmp_path / "run")
    assert student.stat().st_size < full.stat().st_size / 2
    model, classes, meta = load_student(student)
    assert classes.names == ("ground", "box", "disc") and meta["preset"] == "mit_b0"
    assert not any(name.startswith("auxiliary") for name in model.state_dict())

    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(data))
    out = tmp_path / "eval.json"
    completed = subprocess.run(
        [sys.executable, "-m", "duda_engine", "eval", "--config", str(config_path), "--checkpoint", str(student), "--json", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert json.loads(out.read_text())["miou"] == pytest.approx(result.final.miou, abs=1e-6)


def test_the_teachers_and_the_auxiliary_of_a_full_checkpoint_load_and_evaluate(tiny_domains, tmp_path):
    """`eval --network teacher` scores DUDA's large EMA teacher: the diagnostic for a student that
    follows a teacher which adapted badly."""
    data = tiny_config(tiny_domains, tmp_path / "run", "duda")
    data["model"]["auxiliary"] = "mit_b1"
    train(config_from_dict(data), Recorder())
    full, student_file = latest_full_checkpoint(tmp_path / "run"), tmp_path / "run" / "student.pt"
    stored = load_checkpoint(full)["method"]
    assert data["duda"]["teachers"] == ["ema", "student_ema"]  # so the run keeps an EMA of the student too
    networks = [("student", "student", "mit_b0"), ("auxiliary", "auxiliary", "mit_b1"), ("teacher", "ema", "mit_b1"),
                ("student_teacher", "student_ema", "mit_b0")]
    for network, key, preset in networks:
        model, classes, meta = load_student(full, network=network)
        assert meta["preset"] == preset and meta["network"] == network and classes.names == ("ground", "box", "disc")
        loaded = model.state_dict()
        assert all(torch.equal(loaded[name], value) for name, value in stored[key].items()), network
    assert any(not torch.equal(stored["ema"][n], stored["auxiliary"][n]) for n in stored["ema"])  # two networks
    with pytest.raises(CheckpointError, match="is a student file: it holds no 'teacher'"):
        load_student(student_file, network="teacher")

    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(data))
    out = tmp_path / "eval.json"
    command = [sys.executable, "-m", "duda_engine", "eval", "--config", str(config_path), "--checkpoint", str(full), "--json", str(out)]
    completed = subprocess.run([*command, "--network", "teacher", "--confusion"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    report = json.loads(out.read_text())
    assert report["network"] == "teacher" and report["preset"] == "mit_b1" and 0 <= report["miou"] <= 100
    assert report["step"] == 6 and len(report["confusion"]) == 3 and all(len(row) == 3 for row in report["confusion"])
    ground = report["confusion"][0]  # where the ground's pixels went, as printed
    share = 100 * max(ground) / sum(ground)
    assert f"labelled pixels predicted as: {('ground', 'box', 'disc')[ground.index(max(ground))]} {share:.0f}%" in completed.stdout
    command[command.index(str(full))] = str(student_file)
    refused = subprocess.run([*command, "--network", "teacher"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "is a student file: it holds no 'teacher'" in refused.stderr


def test_self_training_checkpoint_holds_its_teacher(tiny_domains, tmp_path):
    train(config_from_dict(tiny_config(tiny_domains, tmp_path / "run", "self_training")), Recorder())
    full = latest_full_checkpoint(tmp_path / "run")
    teacher, _, meta = load_student(full, network="teacher")
    stored = load_checkpoint(full)["method"]["teacher"]
    assert meta["preset"] == "mit_b0" and all(torch.equal(teacher.state_dict()[n], v) for n, v in stored.items())
    with pytest.raises(CheckpointError, match=r"\(self_training\) holds no 'auxiliary' network; it holds: student, teacher"):
        load_student(full, network="auxiliary")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda c: c["source"].update(root="/nonexistent/gta"), "source.root"),
        (lambda c: c["model"].update(student="mit_b9"), "model.student"),
        (lambda c: c["train"].update(crop_size=[512, 512]), "train.crop_size"),
        (lambda c: c["model"].update(student_pretrained="/nonexistent/w.pth"), "model.student_pretrained"),
    ],
)
def test_bad_resources_are_refused_before_training(tiny_domains, tmp_path, change, field):
    data = tiny_config(tiny_domains, tmp_path / "run", "self_training")
    change(data)
    with pytest.raises(ConfigError) as caught:
        train(config_from_dict(data), Recorder())
    assert caught.value.field == field
    assert not (tmp_path / "run").exists()


def test_cli_reports_config_errors_without_a_traceback(tiny_domains, tmp_path):
    data = tiny_config(tiny_domains, tmp_path / "run")
    data["train"]["crop_size"] = [48, 48]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    completed = subprocess.run(
        [sys.executable, "-m", "duda_engine", "train", "--config", str(path)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 2
    assert completed.stderr.strip() == "error: train.crop_size: each side must be a multiple of 32"


def test_no_gradient_reaches_the_small_student_from_the_teachers(tiny_domains, tmp_path):
    from duda_engine.methods.duda import softmax_at, teacher_logits

    config = config_from_dict(tiny_config(tiny_domains, tmp_path / "run", "duda"))
    from duda_engine.methods import build_method
    from duda_engine.validation import class_spec

    method = build_method(config, class_spec(config), torch.device("cpu"))
    images = torch.rand(1, 3, 32, 32, requires_grad=True)
    probabilities = softmax_at(teacher_logits(method.teachers(), [images], torch.device("cpu"), amp=False)[0], 2.0)
    assert not any(p.requires_grad for p in probabilities)
    assert all(p.grad is None for p in method.student.parameters())


def method_and_first_batches(data: dict):
    """The method of the config ``data`` on the CPU, and its first source and target batches."""
    from duda_engine.data.pipeline import build_training_data, step_loader
    from duda_engine.methods import build_method
    from duda_engine.methods.common import to_batch
    from duda_engine.validation import class_spec

    cpu = torch.device("cpu")
    config = config_from_dict(data)
    classes = class_spec(config)
    method = build_method(config, classes, cpu)
    training = build_training_data(config, classes)
    source = to_batch(next(iter(step_loader(training.source, training.source_keys(0), 0))), cpu)
    target = to_batch(next(iter(step_loader(training.target, training.target_keys(0), 0))), cpu)
    return method, source, target


def test_the_small_student_trains_on_two_forward_passes_and_only_predicts_the_target(tiny_domains, tmp_path):
    """Its target labels for the inconsistency weights are a prediction (eval mode): no dropout, and no
    BatchNorm statistics of target-only batches, which self-training's student does not get either."""
    method, source, target = method_and_first_batches(tiny_config(tiny_domains, tmp_path / "run", "duda"))
    modes = []
    method.student.register_forward_pre_hook(lambda module, args: modes.append(module.training))
    batchnorm = next(m for m in method.student.modules() if isinstance(m, torch.nn.BatchNorm2d))
    batches_seen = int(batchnorm.num_batches_tracked)
    method.train_step(source, target, 0)
    assert sorted(modes) == [False, True, True]  # the target prediction, then the source and mixed batches
    assert int(batchnorm.num_batches_tracked) == batches_seen + 2
    assert method.student.training


@pytest.mark.parametrize("method_name", ["self_training", "duda"])
def test_target_batchnorm_adds_one_statistics_pass_over_the_clean_target_batch(tiny_domains, tmp_path, method_name):
    """With ``self_training.target_batchnorm`` every self-training student (DUDA's two) runs one more
    training-mode pass per step, on the clean target images, and its BatchNorm statistics move with it."""
    running_means, passes = {}, {}
    for switch in (False, True):
        data = tiny_config(tiny_domains, tmp_path / str(switch), method_name)
        data["self_training"] = {**data["self_training"], "target_batchnorm": switch}
        torch.manual_seed(0)
        method, source, target = method_and_first_batches(data)
        students = [method.student] + ([method.auxiliary] if method_name == "duda" else [])
        inputs = {id(s): [] for s in students}
        for student in students:
            student.register_forward_pre_hook(lambda module, args, seen=inputs: seen[id(module)].append((module.training, args[0])))
        batchnorm = next(m for m in method.student.modules() if isinstance(m, torch.nn.BatchNorm2d))
        torch.manual_seed(1)
        method.train_step(source, target, 0)
        passes[switch] = [int(batchnorm.num_batches_tracked)]
        for student in students:
            training_passes = [images for training, images in inputs[id(student)] if training]
            assert any(torch.equal(images, target.images) for images in training_passes) == switch
            passes[switch].append(len(training_passes))
        running_means[switch] = batchnorm.running_mean.clone()
    assert [p + 1 for p in passes[False]] == passes[True]  # one more BN step and one more pass per student
    assert not torch.allclose(running_means[False], running_means[True])


def test_the_distillation_target_is_the_teachers_view_of_the_clean_images_mixed(tiny_domains, tmp_path):
    """The teacher predicts the clean source and target images and its two soft predictions are mixed
    with the ClassMix mask, as the hard labels are."""
    from duda_engine.methods.augment import mix

    data = tiny_config(tiny_domains, tmp_path / "run", "duda")
    data["duda"] = {"pre_adaptation": 0.0, "ramp": 0.0, "temperature": 2.0}
    method, source, target = method_and_first_batches(data)
    classes = method.classes
    seen = []
    method.ema.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    losses = method.train_step(source, target, 0)
    assert losses["schedule/kd_weight"].item() == 1.0 and losses["loss/kd"].item() > 0
    assert torch.equal(seen[0], target.images)  # the pseudo-labels: always the clean target
    assert len(seen) == 2 and torch.equal(seen[1], source.images)

    on_source, on_target = (torch.randn(2, classes.num_classes, 8, 8) for _ in range(2))
    mask = (torch.rand(2, 1, 8, 8) > 0.5).float()
    distil = {"target": [on_target], "source": [on_source]}
    soft = method.soft_labels_of_mixed(distil, {"target": [], "source": []}, mask)
    expected = mix(mask, torch.softmax(on_source / 2, dim=1), torch.softmax(on_target / 2, dim=1))
    assert torch.allclose(soft, expected)
    assert torch.allclose(soft.sum(1), torch.ones(2, 8, 8))


def test_the_large_student_takes_self_trainings_step_with_mic_and_feature_distance(tiny_domains, tmp_path):
    """DUDA's large (auxiliary) student takes the base method's step unchanged. With MIC and the ImageNet
    feature distance on, two DUDA steps move the auxiliary exactly as two self-training steps move a
    student that starts from the same weights, with the same losses; the DUDA config asks for the
    auxiliary's ImageNet weights and feature-distance classes of this run, and its frozen ImageNet copy
    holds those weights."""
    from duda_engine.models import create_encoder, get_preset
    from duda_engine.validation import validate_config

    weights = tmp_path / "imagenet_mit_b0.pth"
    torch.manual_seed(0)
    torch.save(create_encoder(get_preset("mit_b0")).state_dict(), weights)
    data = tiny_config(tiny_domains, tmp_path / "run", "duda")
    data["duda"]["teachers"] = ["ema"]
    data["self_training"].update({"mic_weight": 1.0, "fdist_weight": 0.5, "pseudo_threshold": 0.0})
    with pytest.raises(ConfigError, match="model.auxiliary_pretrained"):
        config_from_dict(data)
    data["model"].update({"student_pretrained": str(weights), "auxiliary_pretrained": str(weights)})
    with pytest.raises(ConfigError, match="self_training.fdist_classes: 'traffic light' is not a class of this run"):
        validate_config(config_from_dict(data))
    data["self_training"]["fdist_classes"] = ["ground", "box", "disc"]  # at 32x32 the last stage has one pixel
    duda, source, target = method_and_first_batches(data)
    self_training, _, _ = method_and_first_batches({**data, "method": "self_training"})
    for network in (self_training.student, self_training.teacher, self_training.imagenet):
        network.load_state_dict(duda.auxiliary.state_dict())

    for step in (0, 1):  # at step 0 the network is its ImageNet copy: no feature distance yet
        torch.manual_seed(step)
        duda_losses = duda.train_step(source, target, step)
        torch.manual_seed(step)
        losses = self_training.train_step(source, target, step)
        for name in ("source", "target", "mic", "fdist"):
            assert duda_losses[f"aux/loss_{name}"].item() == pytest.approx(losses[f"loss/{name}"].item(), rel=1e-6), name
    assert losses["loss/mic"] > 0 and losses["loss/fdist"] > 0 and losses["pseudo/confident_share"] == 1.0
    for ours, theirs in zip(duda.auxiliary.parameters(), self_training.student.parameters(), strict=True):
        assert torch.allclose(ours, theirs, atol=1e-6)
    imagenet = torch.load(weights)
    assert all(torch.equal(value, duda.auxiliary_imagenet.encoder.state_dict()[name]) for name, value in imagenet.items())
    assert "auxiliary_imagenet" in duda.state_dict()


def test_self_trainings_target_weight_scales_the_pseudo_labelled_gradient(tiny_domains, tmp_path):
    """The gradient of one step is the source term plus ``target_weight`` times the pseudo-labelled term."""
    gradients = {}
    for weight in (0.0, 0.5, 1.0):
        data = tiny_config(tiny_domains, tmp_path / str(weight), "self_training")
        data["self_training"] = {**data["self_training"], "target_weight": weight}
        torch.manual_seed(0)
        method, source, target = method_and_first_batches(data)
        torch.manual_seed(1)  # the same dropout in every run
        method.train_step(source, target, 0)
        gradients[weight] = torch.cat([p.grad.flatten() for p in method.student.parameters() if p.grad is not None])
    target_term = gradients[1.0] - gradients[0.0]
    assert target_term.abs().max() > 1e-3
    assert torch.allclose(gradients[0.5] - gradients[0.0], 0.5 * target_term, atol=1e-6)
