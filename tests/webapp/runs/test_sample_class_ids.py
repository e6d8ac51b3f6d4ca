"""Samples are class-id maps from the engine to the browser: two classes that share a colour stay two
ids in what the engine hands the worker, in the stored PNG, in the API the gallery reads, and in the
ids the gallery's PNG reader (static/js/class_ids.js, run with Node) takes from that PNG."""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from duda_engine.callbacks import CallbackList
from duda_engine.config_loading import config_from_dict
from duda_engine.train import train
from tests.conftest import REPO_ROOT
from tests.engine.conftest import write_domain
from tests.engine.test_train import Recorder
from tests.webapp.runs.conftest import launch
from webapp.runs.models import PredictionSample
from webapp.runs.services import worker
from workers.callbacks import RunCallbacks

pytestmark = pytest.mark.django_db

TWINS = {"preset": "custom", "names": ["ground", "box", "disc"], "colours": [[9, 9, 9], [9, 9, 9], [40, 40, 220]]}
NODE = shutil.which("node")


def ids_read_by_the_gallery(tmp_path: Path, png: bytes) -> np.ndarray:
    """The pixel values ``classIdsOfPng`` (the gallery's reader) takes from ``png``, as ``H x W``."""
    module = tmp_path / "class_ids.mjs"  # .mjs: Node loads it as the ES module the browser does
    shutil.copy(REPO_ROOT / "static" / "js" / "class_ids.js", module)
    (tmp_path / "sample.png").write_bytes(png)
    script = ("import { readFileSync } from 'node:fs'; import { classIdsOfPng } from './class_ids.mjs';"
              "const b = readFileSync('sample.png');"
              "const r = await classIdsOfPng(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));"
              "console.log(JSON.stringify({ width: r.width, height: r.height, ids: Array.from(r.ids) }));")
    out = subprocess.run([NODE, "--input-type=module", "-e", script], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    read = json.loads(out)
    return np.array(read["ids"], dtype=np.uint8).reshape(read["height"], read["width"])


def test_classes_that_share_a_colour_stay_apart_from_the_engine_to_the_browser(alice, api, settings, tmp_path):
    root = tmp_path / "datasets"
    for name, shift, seed in (("source", 0, 1), ("target", 40, 2)):
        write_domain(root / name, "train", 4, seed, shift)
        write_domain(root / name, "val", 2, seed + 10, shift)
        (root / name / "dataset.yaml").write_text("image_dir: '{split}/images'\nlabel_dir: '{split}/labels'\n")
    settings.DATASETS_ROOT = root
    run = launch(alice, benchmark="", source="custom:source", target="custom:target", method="source_only",
                 weights="random", iterations=2, crop_size=[32, 32], batch_size=1, eval_interval=2, num_samples=2,
                 device="cpu", overrides={"classes": TWINS})
    claim = worker.run_claim(run_id=run.pk, worker_host="test@host", worker_gpu="CPU")
    engine = Recorder()
    callbacks = RunCallbacks(run.pk, claim.token)
    train(config_from_dict(claim.run.config), CallbackList(callbacks, engine))
    callbacks.close()

    handed = engine.samples[2]
    assert engine.classes.colours[0] == engine.classes.colours[1] and len(handed) == 2
    truth = handed[0].class_ids["ground_truth"]
    assert {0, 1} <= set(np.unique(truth))  # both twins are in the image
    index = api.get(f"/api/runs/{run.pk}/samples/").json()
    assert [(c["index"], c["name"], c["colour"]) for c in index["classes"]] == [
        (0, "ground", [9, 9, 9]), (1, "box", [9, 9, 9]), (2, "disc", [40, 40, 220])]
    assert index["unlabelled_id"] == PredictionSample.UNLABELLED_ID
    shown = {entry["name"]: entry for entry in index["images"]}
    predictions = next(s["predictions"] for s in index["steps"] if s["step"] == 2)
    for sample in handed:
        stem = Path(sample.name).stem
        urls = {"ground_truth": shown[stem]["ground_truth"], "student": predictions[stem]["student"]}
        for role, ids in sample.class_ids.items():
            row = PredictionSample.objects.get(run=run, image_name=stem, role=role)
            stored = (Path(run.output_dir) / row.path).read_bytes()
            with Image.open(io.BytesIO(stored)) as png:
                assert png.mode == "P" and png.getpalette()[:9] == [9, 9, 9, 9, 9, 9, 40, 40, 220]
                assert np.array_equal(np.array(png), ids), (stem, role)  # pixel values are the engine's ids
            served = api.get(urls[role])
            assert served.status_code == 200 and served.content == stored
            if NODE:
                assert np.array_equal(ids_read_by_the_gallery(tmp_path, served.content), ids), (stem, role)


def filtered_png(ids: np.ndarray) -> bytes:
    """An 8-bit palette PNG of ``ids`` whose rows use each of the five PNG filters in turn, its image
    data split over two IDAT chunks (what other encoders than the server's may write)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    def paeth(a: int, b: int, c: int) -> int:
        p = a + b - c
        return a if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - c) else b if abs(p - b) <= abs(p - c) else c

    height, width = ids.shape
    raw = bytearray()
    for y in range(height):
        kind = y % 5
        raw.append(kind)
        for x in range(width):
            a = int(ids[y, x - 1]) if x else 0
            b = int(ids[y - 1, x]) if y else 0
            c = int(ids[y - 1, x - 1]) if x and y else 0
            raw.append((int(ids[y, x]) - (0, a, b, (a + b) // 2, paeth(a, b, c))[kind]) % 256)
    data = zlib.compress(bytes(raw))
    header = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"PLTE", bytes(3 * 256))
            + chunk(b"IDAT", data[:40]) + chunk(b"IDAT", data[40:]) + chunk(b"IEND", b""))


@pytest.mark.skipif(NODE is None, reason="needs Node to run the gallery's PNG reader")
def test_the_gallerys_png_reader_undoes_every_row_filter(tmp_path):
    ids = np.random.default_rng(0).integers(0, 19, (37, 53)).astype(np.uint8)
    ids[0, 0], ids[-1, -1] = PredictionSample.UNLABELLED_ID, 254
    assert np.array_equal(ids_read_by_the_gallery(tmp_path, filtered_png(ids)), ids)
