"""Data-parallel training over two processes (gloo on CPU) through torchrun."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, free_port
from tests.engine.conftest import tiny_config


@pytest.mark.parametrize("method", ["self_training", "duda"])
def test_two_ranks_finish_with_identical_weights(tiny_domains, tmp_path, method):
    """Identical student and EMA teacher, BatchNorm statistics included (each rank normalises its own
    images, so without averaging the statistics the ranks' teachers would drift apart)."""
    config = tiny_config(tiny_domains, tmp_path / "run", method, iterations=4, eval_interval=0, checkpoint_interval=2)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
        f"--master_port={free_port()}", "-m", "duda_engine", "train", "--config", str(path), "--quiet",
    ]
    env = os.environ | {"OMP_NUM_THREADS": "1"}  # two ranks on two cores
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-3000:]
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["world_size"] == 2 and result["steps"] == 4
    first, second = result["rank_checksums"]
    assert first == second
    checkpoint_steps = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert checkpoint_steps == ["checkpoint_0000002.pt", "checkpoint_0000004.pt"]


def test_a_failed_spawned_rank_is_reported_with_its_log(tmp_path):
    from duda_engine.distributed import Rendezvous, spawn_other_ranks, stop_other_ranks

    rendezvous = Rendezvous(size=2, port=free_port())
    assert rendezvous.rank_environment(1) == {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1",
                                              "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(rendezvous.port)}
    others = spawn_other_ranks(tmp_path / "missing.yaml", rendezvous, tmp_path / "ranks")
    assert len(others) == 1
    with pytest.raises(RuntimeError, match=r"rank 1 exited with 2:[\s\S]*missing.yaml does not exist"):
        stop_other_ranks(others, tmp_path / "ranks", wait_s=120)
