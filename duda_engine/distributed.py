"""Data-parallel training of one run over several processes (``torchrun``), one GPU each.

Every rank builds the same networks from the same seed, draws its own share of each iteration's
images, and averages its gradients with the others before each optimiser step, so all ranks hold
identical weights after every step, and so identical EMA teachers. Rank 0 alone evaluates, writes
checkpoints and reports through the callbacks. Without ``torchrun`` (WORLD_SIZE unset) every
function here is a no-op.

A Celery worker that owns several GPUs runs rank 0 itself (its callbacks write to the database) and
starts the other ranks with ``spawn_other_ranks``: the same ``python -m duda_engine train`` that
``torchrun`` would start, meeting rank 0 at a ``Rendezvous`` on the loopback address.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass(frozen=True)
class Rendezvous:
    """Where the ranks of one run meet when this process is rank 0 and started the others itself."""

    size: int
    port: int
    address: str = "127.0.0.1"

    def rank_environment(self, rank: int) -> dict[str, str]:
        """What ``torchrun`` would set for ``rank`` (one machine: local rank = rank)."""
        return {"WORLD_SIZE": str(self.size), "RANK": str(rank), "LOCAL_RANK": str(rank),
                "MASTER_ADDR": self.address, "MASTER_PORT": str(self.port)}


def collective_timeout() -> datetime.timedelta:
    """How long a rank waits for the others in one collective before failing (``$DUDA_DIST_TIMEOUT_S``):
    a rank that died turns into an error, not a hang."""
    return datetime.timedelta(seconds=float(os.environ.get("DUDA_DIST_TIMEOUT_S", "600")))


def init_world(device_name: str, rendezvous: Rendezvous | None = None) -> World:
    """Join the process group of a data-parallel run (gloo on CPU, NCCL on CUDA): the one ``torchrun``
    describes in the environment, or, as rank 0, the one at ``rendezvous``."""
    env = rendezvous.rank_environment(0) if rendezvous is not None else os.environ
    size = int(env.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    rank, local_rank = int(env["RANK"]), int(env.get("LOCAL_RANK", "0"))
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local_rank)
        init_method = f"tcp://{env['MASTER_ADDR']}:{env['MASTER_PORT']}" if rendezvous is not None else "env://"
        dist.init_process_group("nccl" if use_cuda else "gloo", init_method=init_method, rank=rank,
                                world_size=size, timeout=collective_timeout())
    return World(rank, size, local_rank)


def free_port(address: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now, for a ``Rendezvous``."""
    with socket.socket() as probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the child gets SIGKILL when the process that started it dies (a ``kill -9`` of the worker)."""
    PR_SET_PDEATHSIG = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn_other_ranks(config_path: Path, rendezvous: Rendezvous, log_dir: Path) -> list[subprocess.Popen]:
    """Start ranks 1..size-1 of the run in ``config_path`` as ``python -m duda_engine train`` processes
    (resuming like rank 0), each logging to ``log_dir/rank<N>.log`` and dying with this process."""
    repo = str(Path(__file__).resolve().parents[1])
    processes = []
    log_dir.mkdir(parents=True, exist_ok=True)
    for rank in range(1, rendezvous.size):
        env = dict(os.environ) | rendezvous.rank_environment(rank)
        env["PYTHONPATH"] = repo + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        with open(log_dir / f"rank{rank}.log", "wb") as log:
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "duda_engine", "train", "--config", str(config_path), "--quiet"],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            ))
    return processes


def kill_other_ranks(processes: list[subprocess.Popen]) -> None:
    """After rank 0 failed: the others would only wait for it in their next collective."""
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()


def stop_other_ranks(processes: list[subprocess.Popen], log_dir: Path, wait_s: float) -> None:
    """Wait up to ``wait_s`` for spawned ranks to finish; kill what is left. Raises when one failed,
    with the tail of its log."""
    failures = []
    for rank, process in enumerate(processes, start=1):
        try:
            code = process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        if code != 0:
            log = log_dir / f"rank{rank}.log"
            tail = log.read_text(errors="replace")[-1500:] if log.is_file() else ""
            failures.append(f"rank {rank} exited with {code}:\n{tail}")
    if failures:
        raise RuntimeError("data-parallel rank failed: " + "\n".join(failures))


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def average_gradients(module: nn.Module) -> None:
    """All-reduce the mean of every gradient and of every floating-point buffer (BatchNorm statistics),
    one flat buffer each: after the step every rank holds the same weights and statistics, so the EMA
    teachers that follow them stay identical too."""
    if not is_distributed():
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    buffers = [b for b in module.buffers() if b.dtype.is_floating_point]
    for tensors in (grads, buffers):
        if not tensors:
            continue
        flat = torch._utils._flatten_dense_tensors(tensors)
        dist.all_reduce(flat)
        flat.div_(dist.get_world_size())
        for tensor, synced in zip(tensors, torch._utils._unflatten_dense_tensors(flat, tensors), strict=True):
            tensor.copy_(synced)


def broadcast_module(module: nn.Module) -> None:
    """Make every rank start from rank 0's parameters and buffers."""
    if not is_distributed():
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=0)


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any (for a cancel decided by rank 0)."""
    if not is_distributed():
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def gather_objects(obj) -> list:
    if not is_distributed():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def state_checksum(*modules: nn.Module | None) -> float:
    """A number that differs when the weights or buffers of ``modules`` differ (the cross-rank check)."""
    total = 0.0
    with torch.no_grad():
        for module in modules:
            if module is None:
                continue
            for i, tensor in enumerate(module.state_dict().values()):
                if tensor.dtype.is_floating_point:
                    total += float(tensor.double().sum() * (i + 1))
    return total


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
