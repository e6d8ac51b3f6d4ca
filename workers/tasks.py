"""Celery tasks: thin wrappers that turn an id into engine calls and service calls.

``run_adaptation(run_id)`` is idempotent: it claims the run atomically (a finished run, or a running
one whose worker is alive, is left alone), and the engine resumes from the latest checkpoint in the
run folder. Late acknowledgement and ``reject_on_worker_lost`` mean a message is only gone once the
task has returned; a worker killed outright leaves a stale heartbeat that ``reap_stale_runs``
(at worker start, then periodically, on its own queue: ``webapp.celery_app``) turns into a fresh
message.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import traceback
from pathlib import Path

from celery import shared_task
from celery.signals import worker_ready, worker_shutting_down
from django.db import close_old_connections

from webapp.celery_app import EXPORT_RUN, REAP_STALE_RUNS, RUN_ADAPTATION, app

log = logging.getLogger(__name__)

# Callbacks of the run this process is training (one at a time: solo pool, one worker per GPU).
_current: dict[str, object] = {}
_current_lock = threading.Lock()


def worker_ranks() -> int:
    """Data-parallel ranks each run is trained with: one per GPU this worker owns (``manage.py worker
    --gpu 0,1``), or ``--ranks N`` processes on the CPU; 1 for the usual one-GPU worker."""
    return max(1, int(os.environ.get("DUDA_WORKER_RANKS", "1")))


def worker_gpu() -> str:
    """The accelerators this worker trains on, in words."""
    import torch

    index = os.environ.get("DUDA_WORKER_GPU", "")
    ranks = worker_ranks()
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        return f"GPUs {index}: {ranks} x {name}" if ranks > 1 else f"GPU {index or 0}: {name}"
    return f"CPU x{ranks}" if ranks > 1 else "CPU"


TRACEBACK_FILE = "traceback.txt"  # in the run folder: the run page shows it under a collapsed "details"


def is_user_error(error: BaseException) -> bool:
    """A config or data problem the user can fix (one line naming the field or file), not a bug."""
    from duda_engine.cli import USER_ERRORS

    return isinstance(error, USER_ERRORS)


def error_line(error: BaseException) -> str:
    """The one line the run's Log and error show: the engine's message (it names the field or file)."""
    text = " ".join(str(error).split()) if is_user_error(error) else f"{type(error).__name__}: {' '.join(str(error).split())}"
    return text[:2000]


def write_traceback(folder: Path | None, text: str) -> None:
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / TRACEBACK_FILE).write_text(text[-20000:])
    except OSError:
        log.warning("could not write the traceback to %s", folder, exc_info=True)


def train_run(config, callbacks):
    """One rank in this process, or rank 0 here (with the callbacks) and the others as engine processes
    on this worker's other GPUs. Every rank resumes from the run's latest checkpoint."""
    from duda_engine.distributed import Rendezvous, free_port, kill_other_ranks, spawn_other_ranks, stop_other_ranks
    from duda_engine.train import train, write_config

    ranks = worker_ranks()
    if ranks == 1:
        return train(config, callbacks, resume=True)
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_config(config)  # the other ranks read the run's config from here
    rendezvous = Rendezvous(size=ranks, port=free_port())
    log_dir = output_dir / "ranks"
    others = spawn_other_ranks(output_dir / "config.json", rendezvous, log_dir)
    try:
        result = train(config, callbacks, resume=True, rendezvous=rendezvous)
    except BaseException:
        kill_other_ranks(others)  # rank 0's failure is the error to report
        raise
    stop_other_ranks(others, log_dir, wait_s=120)
    return result


def worker_host(task_hostname: str | None) -> str:
    return task_hostname or f"worker@{socket.gethostname()}"


@shared_task(name=RUN_ADAPTATION, acks_late=True, reject_on_worker_lost=True, ignore_result=True, bind=True)
def run_adaptation(self, run_id: int) -> str:
    """Train run ``run_id`` with the engine; every outcome ends in a status (or leaves the run alone)."""
    from duda_engine.config_loading import config_from_dict
    from webapp.runs.services import claims, limits, worker
    from workers.callbacks import Heartbeat, RunCallbacks

    close_old_connections()
    claim = worker.run_claim(run_id=run_id, worker_host=worker_host(self.request.hostname), worker_gpu=worker_gpu())
    if claim is None:
        log.info("run %s: nothing to do (finished, deleted, or held by a live worker)", run_id)
        return "skipped"
    heartbeat = Heartbeat(run_id, claim.token, limits.heartbeat_interval_s())
    callbacks = RunCallbacks(run_id, claim.token, heartbeat)
    heartbeat.start()
    with _current_lock:
        _current["callbacks"] = callbacks
    try:
        try:
            config = config_from_dict(claim.run.config)
            result = train_run(config, callbacks)
            callbacks.close()
            final = result.final.miou if result.final is not None else None
            worker.run_finish(
                run_id=run_id, token=claim.token, steps=result.steps, final_miou=final, best_miou=result.best_miou,
                cancelled=result.cancelled, requeue=result.cancelled and callbacks.shutdown_requested.is_set(),
                reason=f"the worker shut down; requeued to resume from iteration {result.steps}",
            )
            return "cancelled" if result.cancelled else "succeeded"
        except claims.ClaimLost:
            raise
        except Exception as error:  # noqa: BLE001 - every failure becomes the run's error message
            log.exception("run %s failed", run_id)
            try:
                callbacks.close()
            except claims.ClaimLost:
                raise
            except Exception:  # noqa: BLE001
                log.warning("run %s: could not flush the last metrics", run_id, exc_info=True)
            close_old_connections()
            line = error_line(error)
            if not is_user_error(error):  # the traceback: in this worker's log above, and under the run page's details
                write_traceback(Path(claim.run.output_dir) if claim.run.output_dir else None, traceback.format_exc())
            worker.run_fail(run_id=run_id, token=claim.token, message=line)  # its Log line: "running → failed: <line>"
            return "failed"
    except claims.ClaimLost:
        log.warning("run %s: this worker no longer holds it (requeued, taken over or ended); stopped without "
                    "writing to it", run_id)
        return "lost"
    finally:
        with _current_lock:
            _current.pop("callbacks", None)
        heartbeat.stop()


@shared_task(name=EXPORT_RUN, ignore_result=True, bind=True)
def export_run(self, export_id: int) -> str:
    """Package a run's student for shipping (``workers.exports``); a duplicate message is skipped."""
    from workers.exports import package_export

    return package_export(export_id, worker_host(self.request.hostname))


@shared_task(name=REAP_STALE_RUNS, ignore_result=True)
def reap_stale_runs() -> list:
    """Requeue or fail runs whose worker stopped beating, send stranded queued runs again (scheduled by
    Celery beat, routed to ``MAINTENANCE_QUEUE``, which no training worker reads)."""
    from webapp.runs.services import reaper

    close_old_connections()
    return reaper.run_reap_stale()


@worker_ready.connect
def _reap_at_worker_start(**kwargs) -> None:
    try:
        from webapp.runs.services import reaper

        actions = reaper.run_reap_stale()
        if actions:
            log.warning("at start: %s", actions)
    except Exception:  # noqa: BLE001 - a worker must start even when the reaper cannot run
        log.exception("could not reap stale runs at worker start")
    finally:
        close_old_connections()


@worker_shutting_down.connect
def _stop_current_run(**kwargs) -> None:
    """A warm shutdown (SIGTERM): the current run checkpoints within an iteration and is requeued."""
    with _current_lock:
        callbacks = _current.get("callbacks")
    if callbacks is not None:
        callbacks.shutdown_requested.set()


def setup_periodic_tasks(sender, **kwargs) -> None:
    from django.conf import settings

    interval = float(getattr(settings, "RUN_REAP_INTERVAL_S", 60))
    sender.add_periodic_task(interval, reap_stale_runs.s(), name="reap stale runs")


app.on_after_finalize.connect(setup_periodic_tasks, weak=False)
