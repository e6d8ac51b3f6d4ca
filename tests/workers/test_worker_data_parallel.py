"""A worker that owns several devices trains each run data-parallel over all of them: here two gloo
ranks on the CPU (``manage.py worker --ranks 2``), the same path a ``--gpu 0,1`` worker takes on NCCL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.workers import support
from webapp.runs.models import Checkpoint, MetricPoint, Run, RunEvent

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def start_two_rank_worker_and_launch(api, tmp_path, **run: object):
    """A ``--ranks 2`` worker and the id of a tiny run launched through the API."""
    support.purge_queue()
    worker = support.start_worker(tmp_path, tmp_path / "worker.log", "--ranks", "2")
    response = api.post("/api/runs/", {**support.TINY, **run}, format="json")
    assert response.status_code == 201, response.json()
    return worker, response.json()["id"]


def test_a_two_rank_worker_trains_a_run_to_identical_weights(django_db_setup, toy_data, api, tmp_path):
    worker, run_id = start_two_rank_worker_and_launch(api, tmp_path, method="self_training", name="two ranks",
                                                      iterations=4, eval_interval=4, checkpoint_interval=2)
    try:
        run = support.wait_for(lambda: Run.objects.filter(pk=run_id, status__in=("succeeded", "failed")).first(), 240,
                               "the two-rank run to finish")
        events = list(RunEvent.objects.filter(run=run).values_list("message", flat=True))
        assert run.status == "succeeded", (run.error_message, events)
    finally:
        support.stop(worker)
        support.wait_until_disconnected()

    assert run.worker_gpu == "CPU x2" and run.step == 4
    assert any("x2" in message for message in events)  # "preparing data for self_training on cpu x2"
    result = json.loads((Path(run.output_dir) / "result.json").read_text())
    assert result["world_size"] == 2 and result["steps"] == 4
    first, second = result["rank_checksums"]
    assert first == second  # every rank ended with the same student
    assert sorted(MetricPoint.objects.filter(run=run, name="loss/source").values_list("step", flat=True)) == [1, 2, 3, 4]
    assert sorted(Checkpoint.objects.filter(run=run).values_list("kind", "step")) == [("full", 2), ("full", 4), ("student", 4)]
    assert (Path(run.output_dir) / "ranks" / "rank1.log").is_file()


def _rank_processes(output_dir: Path) -> list[int]:
    """PIDs of spawned ranks training the run in ``output_dir`` (their command line names its config)."""
    config = str(output_dir / "config.json")
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if config.encode() in cmdline and b"duda_engine" in cmdline:
                pids.append(int(proc.name))
    return pids


def test_the_spawned_ranks_die_with_a_killed_worker(django_db_setup, toy_data, api, tmp_path):
    worker, run_id = start_two_rank_worker_and_launch(api, tmp_path, method="source_only", name="killed",
                                                      iterations=2000, eval_interval=0, checkpoint_interval=0)
    try:
        run = support.wait_for(lambda: Run.objects.filter(pk=run_id, step__gt=0).first(), 180, "the run to train")
        output_dir = Path(run.output_dir)
        assert len(_rank_processes(output_dir)) == 1  # rank 1; rank 0 is the worker itself
        support.stop(worker, kill=True)  # kill -9: no chance to clean up
        support.wait_for(lambda: not _rank_processes(output_dir), 15, "rank 1 to die with its worker")
    finally:
        support.stop(worker, kill=True)
        support.purge_queue()
        support.wait_until_disconnected()
