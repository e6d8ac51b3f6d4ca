"""The training loop every method shares: data, schedule, evaluation, checkpoints, resume, callbacks.

``train(config, callbacks)`` is what the CLI and the web worker call. A method (source_only,
self_training, duda, oracle) owns its networks and optimisers and does one iteration in
``train_step``; everything around it happens here.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from duda_engine.callbacks import Callbacks, PredictionSample
from duda_engine.checkpoint import (
    atomic_write_bytes,
    full_checkpoint_path,
    latest_full_checkpoint,
    load_checkpoint,
    prune_full_checkpoints,
    save_checkpoint,
    student_checkpoint_path,
)
from duda_engine.config import ConfigError, ExperimentConfig
from duda_engine.data.classes import ClassSpec
from duda_engine.data.dataset_check import Progress
from duda_engine.data.datasets import SegmentationDataset
from duda_engine.data.pipeline import TrainingData, build_training_data, step_loader
from duda_engine.data.samples import DatasetError
from duda_engine.distributed import (
    Rendezvous,
    World,
    any_rank,
    barrier,
    gather_objects,
    init_world,
    shutdown,
    state_checksum,
)
from duda_engine.evaluate import EvalResult, class_id_map, evaluate_model
from duda_engine.methods import build_method
from duda_engine.methods.common import to_batch
from duda_engine.student import save_student
from duda_engine.validation import check_data, class_spec, resolve_device, validate_config

CHECKPOINT_FORMAT = "duda-train-v1"
KEEP_FULL_CHECKPOINTS = 2


@dataclass
class TrainResult:
    output_dir: Path
    steps: int  # iterations completed
    final: EvalResult | None  # last evaluation of the student on the target
    best_miou: float
    student_path: Path | None
    cancelled: bool = False


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_full_checkpoint(config: ExperimentConfig, method, step: int, best_miou: float, rng: list[dict]) -> Path:
    """Everything needed to continue exactly: networks, optimisers, schedules, the RNG state of each rank."""
    path = full_checkpoint_path(Path(config.output_dir), step)
    state = {
        "format": CHECKPOINT_FORMAT,
        "step": step,
        "config": config.to_dict(),
        "method": method.state_dict(),
        "rng": rng,
        "best_miou": best_miou,
    }
    save_checkpoint(state, path)
    prune_full_checkpoints(Path(config.output_dir), KEEP_FULL_CHECKPOINTS)
    return path


def check_resumable(saved: dict[str, Any], config: ExperimentConfig, path: Path) -> None:
    """A checkpoint only continues the same experiment: method, networks, classes and seed must match."""
    current = config.to_dict()
    for key in ("method", "seed", "model", "classes"):
        if saved["config"].get(key) != current[key]:
            raise ConfigError(key, f"differs from the run in {path}; use a new output_dir or the same config")


@torch.no_grad()
def prediction_samples(
    models: dict[str, torch.nn.Module], dataset: SegmentationDataset, indices: list[int], classes: ClassSpec, device
) -> list[PredictionSample]:
    """Class-id maps of the ground truth and of each model's prediction (role -> network) on fixed target
    images, at the input size."""
    samples = []
    for index in indices:
        item = dataset[index]
        images = item["image"][None].to(device).float().div_(255.0)
        size = tuple(images.shape[-2:])
        label = torch.nn.functional.interpolate(item["label"][None, None].float(), size=size, mode="nearest")[0, 0]
        sample = PredictionSample(name=item["name"], image=item["image"].permute(1, 2, 0).numpy())
        sample.class_ids["ground_truth"] = class_id_map(label.long(), classes)
        for role, model in models.items():
            was_training = model.training
            model.eval()
            prediction = model(images).argmax(1)[0]
            model.train(was_training)
            sample.class_ids[role] = class_id_map(prediction, classes)
        samples.append(sample)
    return samples


def sample_indices(dataset: SegmentationDataset, count: int) -> list[int]:
    if count <= 0:
        return []
    count = min(count, len(dataset))
    return [round(i * (len(dataset) - 1) / max(count - 1, 1)) for i in range(count)]


def write_config(config: ExperimentConfig) -> None:
    path = Path(config.output_dir) / "config.json"
    text = json.dumps(config.to_dict(), indent=2).encode()
    atomic_write_bytes(path, lambda handle: handle.write(text))


def train(config: ExperimentConfig, callbacks: Callbacks | None = None, *, resume: bool = True,
          rendezvous: Rendezvous | None = None, check_progress: Callable[[str], Progress | None] | None = None
          ) -> TrainResult:
    """Train ``config.method`` for ``config.train.iterations`` steps; resumes from the latest checkpoint.

    The config and every image and label the run reads are checked before anything is written
    (``check_progress(side)``: the progress callback of a dataset's check); a failure before the first
    checkpoint removes what the run wrote. Under ``torchrun`` every rank calls this; rank 0 alone
    reports, evaluates and writes files. With ``rendezvous`` this process is rank 0 of ranks it started
    itself (``spawn_other_ranks``).
    """
    try:
        validate_config(config)
    except (ConfigError, DatasetError) as error:
        if isinstance(error, DatasetError) or error.field.endswith(".root"):  # problems with files: list them all
            check_data(config, check_progress, files_only=True)
        raise
    check_data(config, check_progress)
    world = init_world(config.train.device, rendezvous)
    output_dir = Path(config.output_dir)
    before = set(output_dir.iterdir()) if output_dir.is_dir() else None
    try:
        return _train(config, callbacks, resume, world)
    except BaseException:
        if world.is_main and latest_full_checkpoint(output_dir) is None:
            remove_written(output_dir, before)
        raise
    finally:
        shutdown()


def remove_written(output_dir: Path, before: set[Path] | None) -> None:
    """Remove what a run wrote to ``output_dir``: the folder if it did not exist, else the new entries."""
    if before is None:
        shutil.rmtree(output_dir, ignore_errors=True)
        return
    for path in set(output_dir.iterdir()) - before if output_dir.is_dir() else ():
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _train(config: ExperimentConfig, callbacks: Callbacks | None, resume: bool, world: World) -> TrainResult:
    callbacks = (callbacks or Callbacks()) if world.is_main else Callbacks()
    classes = class_spec(config)
    device = resolve_device(config.train.device)
    if world.size > 1 and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    output_dir = Path(config.output_dir)
    seed_everything(config.seed)

    callbacks.on_status(f"preparing data for {config.method} on {device}" + (f" x{world.size}" if world.size > 1 else ""))
    data: TrainingData = build_training_data(config, classes)
    if world.is_main:  # the run folder appears once the config and the data have been checked and loaded
        output_dir.mkdir(parents=True, exist_ok=True)
        write_config(config)
    method = build_method(config, classes, device)
    # Work before the first iteration (DUDA: precomputed frozen teachers); the other ranks wait for rank 0's files.
    method.prepare(data, output_dir, wait=not world.is_main, status=callbacks.on_status)
    if world.size > 1:
        seed_everything(config.seed * 1000 + world.rank)  # same weights everywhere, own dropout per rank

    start_step, best_miou = 0, -1.0
    latest = latest_full_checkpoint(output_dir) if resume else None
    if latest is not None:
        saved = load_checkpoint(latest)
        check_resumable(saved, config, latest)
        method.load_state_dict(saved["method"])
        set_rng_state(saved["rng"][world.rank if len(saved["rng"]) == world.size else 0])
        start_step, best_miou = saved["step"], saved["best_miou"]
        callbacks.on_status(f"resumed from {latest.name} at iteration {start_step}")

    total = config.train.iterations
    t = config.train
    callbacks.on_start(total, start_step)
    source_keys = data.source_keys(start_step, world.rank, world.size)
    source_iter = iter(step_loader(data.source, source_keys, t.num_workers))
    target_iter = None
    if method.uses_target:
        target_keys = data.target_keys(start_step, world.rank, world.size)
        target_iter = iter(step_loader(data.target, target_keys, t.num_workers))
    samples_at = sample_indices(data.val, t.num_samples)
    sums: dict[str, torch.Tensor] = {}
    interval_start, interval_steps = time.perf_counter(), 0
    final: EvalResult | None = None

    def checkpoint(at: int) -> None:
        rng = gather_objects(rng_state())
        if world.is_main:
            callbacks.on_checkpoint(at, save_full_checkpoint(config, method, at, best_miou, rng), "full")
        barrier()

    step = start_step
    while step < total:
        if any_rank(callbacks.should_stop(), device):
            checkpoint(step)
            callbacks.on_status(f"cancelled at iteration {step}")
            return TrainResult(output_dir, step, final, best_miou, None, cancelled=True)

        source = to_batch(next(source_iter), device, t.channels_last)
        target = to_batch(next(target_iter), device, t.channels_last) if target_iter is not None else None
        losses = method.train_step(source, target, step)
        step += 1
        interval_steps += 1
        for name, value in losses.items():
            sums[name] = sums.get(name, 0) + value.detach().float()

        if step % t.log_interval == 0 or step == total:
            names = list(sums)
            values = torch.stack([sums[n].cpu() for n in names]).tolist()  # one device sync per interval
            averaged = {n: v / interval_steps for n, v in zip(names, values, strict=True)}
            averaged["time/iteration_s"] = (time.perf_counter() - interval_start) / interval_steps
            callbacks.on_metrics(step, averaged)
            sums, interval_start, interval_steps = {}, time.perf_counter(), 0

        if (t.eval_interval and step % t.eval_interval == 0) or step == total:
            if world.is_main:
                final = evaluate_model(method.student, data.val, config, classes, device)
                best_miou = max(best_miou, final.miou)
                callbacks.on_evaluation(step, final)
                roles = {"student": method.student}
                if method.teacher is not None:
                    roles["teacher"] = method.teacher
                if samples_at:
                    samples = prediction_samples(roles, data.val, samples_at, classes, device)
                    callbacks.on_samples(step, samples, classes)
            barrier()

        if (t.checkpoint_interval and step % t.checkpoint_interval == 0) or step == total:
            checkpoint(step)

    checksums = gather_objects(state_checksum(method.student, method.teacher))
    if len(set(checksums)) != 1:
        raise RuntimeError(f"data-parallel ranks ended with different student or teacher weights: {checksums}")
    if not world.is_main:
        return TrainResult(output_dir, step, final, best_miou, None)
    student_path = student_checkpoint_path(output_dir)
    save_student(method.student, classes, config, step, final.miou if final else None, student_path)
    callbacks.on_checkpoint(step, student_path, "student")
    summary = {"steps": step, "final_miou": final.miou if final else None, "best_miou": best_miou, "world_size": world.size, "rank_checksums": checksums}
    if final is not None:
        summary["per_class"] = final.per_class
    text = json.dumps(summary, indent=2).encode()
    atomic_write_bytes(output_dir / "result.json", lambda handle: handle.write(text))
    callbacks.on_status(f"finished: target mIoU {final.miou:.2f}" if final else "finished")
    return TrainResult(output_dir, step, final, best_miou, student_path)
