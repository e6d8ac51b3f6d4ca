"""What the CLI prints: ``train --quiet`` no config; ``predict`` on a folder with an unreadable image
writes the others, lists it and exits with 1 (a single unreadable image: an error, exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import torch
from PIL import Image

from duda_engine.config_loading import config_from_dict
from duda_engine.models import build_segmentor
from duda_engine.student import save_student
from duda_engine.validation import class_spec
from tests.conftest import REPO_ROOT
from tests.engine.conftest import tiny_config


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "duda_engine", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_train_quiet_prints_no_config(tiny_domains, tmp_path):
    data = tiny_config(tiny_domains, tmp_path / "run", iterations=2, eval_interval=2, checkpoint_interval=2)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    quiet = cli("train", "--config", str(path), "--quiet")
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert quiet.stdout.startswith("done in ") and quiet.stdout.count("\n") == 1, quiet.stdout
    assert "output_dir" not in quiet.stdout + quiet.stderr and "classes:" not in quiet.stdout + quiet.stderr
    loud = cli("train", "--config", str(path), "--restart", "--set", f"output_dir={tmp_path / 'loud'}")
    assert loud.returncode == 0, loud.stderr[-2000:]
    assert "classes:" in loud.stdout and "output_dir:" in loud.stdout  # without --quiet: the resolved config


def write_student(path):
    config = config_from_dict(tiny_config(REPO_ROOT, path.parent / "run"))
    classes = class_spec(config)
    torch.manual_seed(0)
    save_student(build_segmentor("mit_b0", classes.num_classes), classes, config, 1, None, path)
    return path


def test_predict_writes_the_good_images_and_reports_the_bad_one(tmp_path):
    student = write_student(tmp_path / "student.pt")
    images = tmp_path / "photos"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "c.jpg"):
        Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(images / name)
    (images / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + rng.bytes(300))  # a PNG header, then noise
    out = tmp_path / "predictions"
    completed = cli("predict", "--checkpoint", str(student), "--input", str(images), "--output", str(out), "--device", "cpu")
    assert completed.returncode == 1, completed.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a_color.png", "a_labelTrainIds.png", "c_color.png", "c_labelTrainIds.png"]
    assert completed.stdout.strip() == f"wrote 2 predictions to {out}"
    lines = completed.stderr.strip().splitlines()
    assert lines[0] == "1 of 3 images could not be read (no prediction written for them):"
    assert len(lines) == 2 and str(images / "b.png") in lines[1] and "Traceback" not in completed.stderr

    single = cli("predict", "--checkpoint", str(student), "--input", str(images / "b.png"), "--output",
                 str(tmp_path / "single"), "--device", "cpu")
    assert single.returncode == 2 and single.stderr.startswith("error: cannot decode image"), single.stderr
    assert not (tmp_path / "single").exists()

    (images / "b.png").unlink()
    clean = cli("predict", "--checkpoint", str(student), "--input", str(images), "--output", str(tmp_path / "clean"), "--device", "cpu")
    assert clean.returncode == 0 and clean.stderr == "" and clean.stdout.strip() == f"wrote 2 predictions to {tmp_path / 'clean'}"
