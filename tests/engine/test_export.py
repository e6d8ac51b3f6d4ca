"""Exporting the student: ONNX and torch.export files that match PyTorch, atomic and verified writes."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch

from duda_engine import export
from duda_engine.config_loading import config_from_dict
from duda_engine.export import ExportError, export_student, read_metadata
from duda_engine.models import build_segmentor
from duda_engine.student import load_student, save_student
from duda_engine.validation import class_spec

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_student(path: Path, preset: str) -> Path:
    config = config_from_dict(
        {
            "source": {"kind": "toy", "domain": "synthetic_a"},
            "target": {"kind": "toy", "domain": "real"},
            "model": {"student": preset},
        }
    )
    classes = class_spec(config)
    torch.manual_seed(0)
    save_student(build_segmentor(preset, classes.num_classes), classes, config, 7, 42.0, path)
    return path


def test_onnx_export_matches_pytorch(tmp_path):
    import onnxruntime

    # resnet18: the fastest preset to export (the mit_b0 student exports the same way, in ~3x the time)
    checkpoint = write_student(tmp_path / "student.pt", "resnet18")
    output = tmp_path / "deploy" / "student.onnx"
    result = export_student(checkpoint, output, fmt="onnx", height=64, width=96)
    assert output.is_file() and result.path == output and result.format == "onnx"
    assert result.max_abs_diff <= 1e-4 and result.argmax_agreement == 1.0
    assert not [p for p in output.parent.iterdir() if p.name.endswith(".tmp")]

    metadata = read_metadata(output)
    assert metadata["preset"] == "resnet18" and metadata["classes"][0] == "road" and metadata["height"] == 64

    model, _, _ = load_student(checkpoint)
    images = torch.rand(2, 3, 64, 96)
    session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"images": images.numpy()})
    with torch.no_grad():
        expected = model(images).numpy()
    assert logits.shape == (2, 19, 64, 96)
    assert np.abs(logits - expected).max() <= 1e-4


def test_torch_export_of_the_default_student_through_the_command(tmp_path, capsys):
    checkpoint = write_student(tmp_path / "student.pt", "mit_b0")
    output = tmp_path / "student.pt2"
    argv = [
        "--checkpoint",
        str(checkpoint),
        "--output",
        str(output),
        "--format",
        "torch_export",
        "--height",
        "64",
        "--width",
        "64",
    ]
    assert export.main(argv) == 0
    printed = capsys.readouterr().out
    assert "max |diff|" in printed and "torch_export" in printed
    with open(output, "rb") as handle:
        program = torch.export.load(handle)
    model, _, _ = load_student(checkpoint)
    images = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(program.module()(images), model(images), atol=1e-5)
    assert read_metadata(output)["preset"] == "mit_b0"


def test_a_mismatching_export_never_replaces_the_previous_file(tmp_path, monkeypatch):
    checkpoint = write_student(tmp_path / "student.pt", "resnet18")
    output = tmp_path / "student.pt2"
    output.write_bytes(b"the previous, good export")

    def broken_exporter(model, example, path, metadata):
        path.write_bytes(b"half an export")
        return lambda images: model(images) + 1.0

    monkeypatch.setattr(export, "_export_program", broken_exporter)
    with pytest.raises(ExportError, match="differ from PyTorch's by up to 1"):
        export_student(checkpoint, output, fmt="torch_export", height=32, width=32)
    assert output.read_bytes() == b"the previous, good export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student.pt", "student.pt2"]


def test_errors_are_reported_not_raised(tmp_path, capsys, monkeypatch):
    assert export.main(["--checkpoint", str(tmp_path / "missing.pt"), "--output", str(tmp_path / "s.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(ExportError, match="unknown export format"):
        export.check_format("tflite")
    monkeypatch.setattr(export, "_missing", lambda *modules: ["onnx"])
    with pytest.raises(ExportError, match="--format torch_export"):
        export.check_format("onnx")


def test_subcommand_registration():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    export.add_export_parser(sub)
    args = parser.parse_args(["export", "--checkpoint", "s.pt", "--output", "s.onnx"])
    assert args.handler is export.command_export
    assert (args.format, args.height, args.width) == ("onnx", 512, 1024)
