"""Packaging a student to ship: float and int8 ONNX matching PyTorch, their re-measured mIoU, the model card, predict on ONNX."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from duda_engine import cli
from duda_engine.checkpoint import sha256_file
from duda_engine.config_loading import config_from_dict
from duda_engine.data.datasets import build_dataset
from duda_engine.evaluate import evaluate_model
from duda_engine.export import ExportError, read_metadata
from duda_engine.models import build_segmentor
from duda_engine.ship import package
from duda_engine.ship.card import CARD_JSON, CARD_MARKDOWN
from duda_engine.ship.int8 import MIN_AGREEMENT, quantize_int8, target_images
from duda_engine.ship.runtime import OnnxSegmentor
from duda_engine.student import load_student, save_student
from duda_engine.validation import class_spec

from .conftest import tiny_config

BASELINES = {"source_only": {"miou": 12.5, "per_class": {"ground": 30.0, "box": 5.0, "disc": 2.5}}}


@pytest.fixture(scope="module")
def shipped(tiny_domains, tmp_path_factory):
    """A resnet18 student (random weights: the fastest preset to export) on the tiny domains, packaged once."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("ship")
    config = config_from_dict({**tiny_config(tiny_domains, folder / "run"), "model": {"student": "resnet18"}})
    classes = class_spec(config)
    torch.manual_seed(0)
    checkpoint = folder / "student.pt"
    save_student(build_segmentor("resnet18", classes.num_classes), classes, config, 6, None, checkpoint)
    result = package(checkpoint, folder / "deploy", calibration_images=4, check_images=3,
                     speed_sizes=[(64, 96)], speed_runs=2, baselines=BASELINES)
    yield config, checkpoint, result
    torch.set_num_threads(threads)


def val_images(config) -> torch.Tensor:
    val = build_dataset(config.target, class_spec(config), "val", train=False)
    return torch.stack([val[i]["image"] for i in range(len(val))]).float().div_(255)


def test_float_and_int8_files_match_pytorch_on_target_images(shipped):
    config, checkpoint, result = shipped
    model, _, _ = load_student(checkpoint)
    images = val_images(config)  # 6 target val images, 64x96: the size the files were exported at
    assert (result.float_file.height, result.float_file.width) == (64, 96)
    with torch.no_grad():
        expected = model(images)
    float_logits = OnnxSegmentor(result.float_file.path)(images)
    assert (float_logits - expected).abs().max().item() <= 1e-4
    int8_logits = OnnxSegmentor(result.int8_file.path)(images)
    agreement = (int8_logits.argmax(1) == expected.argmax(1)).double().mean().item()
    assert agreement >= MIN_AGREEMENT and result.int8_file.argmax_agreement >= MIN_AGREEMENT
    assert result.int8_file.size_bytes < result.float_file.size_bytes / 3  # int8 weights: about a quarter
    metadata = read_metadata(result.int8_file.path)
    assert metadata["classes"] == ["ground", "box", "disc"] and "int8" in metadata["quantization"]["weights"]
    assert not [p for p in result.out_dir.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_remeasured_miou_equals_the_engines_evaluation_of_the_student(shipped):
    config, checkpoint, result = shipped
    model, classes, _ = load_student(checkpoint)
    val = build_dataset(config.target, classes, "val", train=False)
    engine = evaluate_model(model, val, config, classes, torch.device("cpu"))
    measured = result.accuracy["float"]
    assert measured.num_images == engine.num_images == 6
    assert measured.miou == pytest.approx(engine.miou, abs=0.05)
    assert result.accuracy["int8"].miou == pytest.approx(engine.miou, abs=5.0)  # int8 costs little, not nothing


def test_the_model_card_holds_the_measured_numbers(shipped):
    config, _, result = shipped
    card = json.loads((result.out_dir / CARD_JSON).read_text())
    assert card == json.loads(json.dumps(result.card))
    files = {f["kind"]: f for f in card["files"]}
    for kind, path in result.files().items():
        assert files[kind]["sha256"] == sha256_file(path) == result.sha256[path.name]
        assert files[kind]["target_miou"] == result.accuracy[kind].miou
        assert files[kind]["per_class"] == result.accuracy[kind].per_class
        assert files[kind]["speed"] == [s.to_dict() for s in result.speed[kind]]
    assert files["float"]["max_abs_diff_vs_pytorch"] == result.float_file.max_abs_diff
    assert files["int8"]["argmax_agreement_with_float"] == result.int8_file.argmax_agreement
    assert [c["name"] for c in card["classes"]] == ["ground", "box", "disc"] and card["classes"][1]["colour"] == [200, 40, 40]
    assert card["input"]["height"] == 64 and card["input"]["mean"] == [0.485, 0.456, 0.406]
    assert card["training"] == {"method": "source_only", "teachers": [], "iterations": 6, "crop_size": [32, 32], "seed": 3}
    assert card["baselines"] == BASELINES and card["config"] == config.to_dict()
    speed = result.speed["int8"][0]
    assert (speed.height, speed.width, speed.runs) == (64, 96, 2) and speed.images_per_second > 0
    assert speed.latency_p50_ms <= speed.latency_p95_ms
    markdown = (result.out_dir / CARD_MARKDOWN).read_text()
    assert result.sha256["student.int8.onnx"] in markdown and f"{result.accuracy['float'].miou:.2f}" in markdown
    assert "| **mIoU** |" in markdown and "12.50" in markdown  # the baseline's column


def test_predict_on_the_onnx_file_equals_predict_on_the_checkpoint(shipped, tiny_domains, tmp_path):
    _, checkpoint, result = shipped
    images = tiny_domains / "target" / "val" / "images"
    for name, source in (("pt", checkpoint), ("onnx", result.float_file.path)):
        assert cli.main(["predict", "--checkpoint", str(source), "--input", str(images), "--output", str(tmp_path / name),
                         "--device", "cpu"]) == 0
    written = sorted(p.name for p in (tmp_path / "pt").iterdir())
    assert written == sorted(p.name for p in (tmp_path / "onnx").iterdir()) and len(written) == 12
    for name in written:
        from_pt, from_onnx = (np.array(Image.open(tmp_path / d / name)) for d in ("pt", "onnx"))
        assert (from_pt == from_onnx).mean() >= 0.999  # float rounding may flip an exactly tied pixel


def test_an_int8_file_that_disagrees_is_not_written(shipped):
    config, _, result = shipped
    images = target_images(config, "train", 2)
    output = result.out_dir / "never.int8.onnx"
    with pytest.raises(ExportError, match="agrees with the float model"):
        quantize_int8(result.float_file.path, output, images, images, min_agreement=1.01)
    assert not output.exists() and not [p for p in result.out_dir.iterdir() if p.name.startswith(".")]


def test_the_export_verb_takes_the_packaging_flags():
    args = cli.build_parser().parse_args(
        ["export", "--checkpoint", "s.pt", "--output", "deploy/s.onnx", "--int8", "--card", "--speed", "--speed", "128x256"]
    )
    assert args.int8 and args.card and args.speed == [None, (128, 256)] and args.calibration_images == 32
    plain = cli.build_parser().parse_args(["export", "--checkpoint", "s.pt", "--output", "s.onnx"])
    assert not (plain.int8 or plain.card or plain.speed)


def test_the_export_verb_runs_package_and_reports_it(shipped, monkeypatch, tmp_path, capsys):
    config, checkpoint, result = shipped
    calls = []

    def recorded(*args, **kwargs):
        calls.append((args, kwargs))
        return result

    monkeypatch.setattr("duda_engine.ship.packaging.package", recorded)
    report = tmp_path / "result.json"
    argv = ["export", "--checkpoint", str(checkpoint), "--output", str(tmp_path / "model.onnx"), "--int8", "--card",
            "--speed", "--speed", "40x60", "--json", str(report)]
    assert cli.main(argv) == 0
    (args, kwargs), = calls
    assert args[1] == tmp_path and args[2] == config and kwargs["stem"] == "model"
    assert kwargs["speed_sizes"] == [(32, 32), (512, 1024), (40, 60)]  # the training crop, 1024x512, then the one asked
    assert kwargs["int8"] and kwargs["card"] and kwargs["accuracy"]  # a card needs the accuracy
    printed = capsys.readouterr().out
    assert f"float: target mIoU {result.accuracy['float'].miou:.2f}" in printed and "model card:" in printed
    assert json.loads(report.read_text())["sha256"] == result.sha256
