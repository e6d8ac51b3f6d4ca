"""The engine's callbacks implemented with database rows and channel messages.

Every metric point is stored; points are buffered and written in batches at most ``PUBLISH_HZ``
times a second. The services publish each write to the run's group once it is committed, so the
browser gets at most about ten metrics messages a second per run and whatever it gets is already in
the database (a client that reconnects and asks REST for ``since=<step>`` finds no gap).

A heartbeat thread beats while the run trains (also through long evaluations and data
generation) and notices when this worker has lost the run. A cancel is seen one way: the read of the
claim at most every ``CLAIM_CHECK_S`` (``should_stop``), so the run stops within a few iterations. Every write carries the worker's claim token: once another claim holds the run
(this worker froze, its run was requeued and taken over), the services refuse it with
``claims.ClaimLost``, which the callbacks let through so that the engine stops at once, without
the checkpoint a cancel would write; ``should_stop`` and ``on_metrics`` also look for a lost claim
at most every ``CLAIM_CHECK_S``, so the engine stops before its next evaluation or checkpoint.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from django.db import close_old_connections, connection

from duda_engine.callbacks import Callbacks, PredictionSample
from duda_engine.data.classes import ClassSpec
from duda_engine.evaluate import EvalResult
from webapp.runs.services import claims, lifecycle, records, worker
from workers.eta import EtaEstimator
from workers.run_log import RunLog

log = logging.getLogger(__name__)

PUBLISH_HZ = 10.0
CLAIM_CHECK_S = 0.25  # how often the training thread reads whether it still holds the run


class Heartbeat(threading.Thread):
    """Beats ``Run.heartbeat_at`` every ``interval`` seconds while the run is held by this worker."""

    def __init__(self, run_id: int, token: str, interval: float):
        super().__init__(name=f"heartbeat-run-{run_id}", daemon=True)
        self.run_id, self.token, self.interval = run_id, token, interval
        self.lost = threading.Event()
        self._stop_event = threading.Event()

    def beat(self) -> None:
        state = worker.run_heartbeat(run_id=self.run_id, token=self.token)
        if not state.owner:
            self.lost.set()

    def run(self) -> None:
        try:
            while not self._stop_event.wait(self.interval):
                try:
                    self.beat()
                except Exception:  # noqa: BLE001 - a database hiccup must not kill the heartbeat
                    log.warning("heartbeat of run %s failed", self.run_id, exc_info=True)
                    close_old_connections()
        finally:
            connection.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=self.interval + 5)


class RunCallbacks(Callbacks):
    """Maps the engine's callbacks to ``webapp.runs.services`` calls (rows, files, and the messages
    they publish)."""

    def __init__(self, run_id: int, token: str, heartbeat: Heartbeat | None = None, publish_hz: float = PUBLISH_HZ):
        self.run_id, self.token, self.heartbeat = run_id, token, heartbeat
        self.min_interval = 1.0 / publish_hz
        self.pending: list[tuple[int, str, float]] = []
        self.last_flush = 0.0
        self.step = 0
        self.total = 0
        self.eta: EtaEstimator | None = None
        self.run_log = RunLog()
        self._last_claim_check = 0.0
        self._cancel = False
        self.shutdown_requested = threading.Event()  # set on a warm worker shutdown: stop and requeue
        self.published = 0

    # --- batching and publishing ------------------------------------------------------------
    def flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.pending or (not force and now - self.last_flush < self.min_interval):
            return
        points, self.pending = self.pending, []
        progress = records.Progress(step=self.step, total_steps=self.total, seconds_per_step=self.seconds_per_step)
        records.metrics_record(run_id=self.run_id, token=self.token, points=points, progress=progress)
        self.last_flush = now
        self.published += 1

    @property
    def seconds_per_step(self) -> float | None:
        """The ETA spread over the iterations left (``workers.eta``: a moving window, evaluations apart)."""
        return self.eta.seconds_per_step() if self.eta is not None else None

    def _log(self, line: str | None) -> None:
        if line:
            lifecycle.run_event_add(run_id=self.run_id, token=self.token, message=line)

    # --- the engine's callbacks -----------------------------------------------------------------
    def on_start(self, total_steps: int, start_step: int) -> None:
        self.step, self.total = start_step, total_steps
        self.eta = EtaEstimator(total_steps, start_step, time.monotonic())
        self.run_log = RunLog(total_steps=total_steps, start_step=start_step)
        worker.run_progress(run_id=self.run_id, token=self.token, step=start_step, seconds_per_step=None)
        where = f"resuming at iteration {start_step}" if start_step else "starting"
        lifecycle.run_event_add(run_id=self.run_id, token=self.token, message=f"training {where} of {total_steps}")

    def on_metrics(self, step: int, values: dict[str, float]) -> None:
        self._check_claim()
        if self.eta is not None:
            self.eta.on_metrics(step, time.monotonic())
        self.step = step
        self.pending.extend((step, name, float(value)) for name, value in values.items())
        self.flush()
        self._log(self.run_log.metrics_line(step, values))

    def on_evaluation(self, step: int, result: EvalResult) -> None:
        self.step = max(self.step, step)
        self.flush(force=True)
        records.evaluation_record(
            run_id=self.run_id, token=self.token, step=step, miou=result.miou, per_class=result.per_class,
            pixel_accuracy=result.pixel_accuracy,
        )
        if self.eta is not None:
            self.eta.on_evaluation(step)
        self._log(self.run_log.evaluation_line(step, result.miou, result.pixel_accuracy))

    def on_samples(self, step: int, samples: list[PredictionSample], classes: ClassSpec) -> None:
        records.samples_record(run_id=self.run_id, token=self.token, step=step, samples=samples, classes=classes)
        if self.eta is not None:
            self.eta.on_pause()

    def on_checkpoint(self, step: int, path: Path, kind: str) -> None:
        self.flush(force=True)
        records.checkpoint_record(run_id=self.run_id, token=self.token, step=step, path=Path(path), kind=kind)
        if self.eta is not None:
            self.eta.on_pause()

    def on_status(self, message: str) -> None:
        self.flush(force=True)
        lifecycle.run_event_add(run_id=self.run_id, token=self.token, message=message)

    def should_stop(self) -> bool:
        """A warm shutdown or a cancel: stop, with a checkpoint. A lost claim: ``ClaimLost``, at once."""
        self._check_claim()
        if self.shutdown_requested.is_set():
            return True
        return self._cancel

    def _check_claim(self) -> None:
        """``ClaimLost`` if this worker no longer holds the run (its heartbeat said so, or a read at most
        every ``CLAIM_CHECK_S``); the same read notices a cancel."""
        if self.heartbeat is not None and self.heartbeat.lost.is_set():
            raise claims.ClaimLost(self.run_id)
        now = time.monotonic()
        if now - self._last_claim_check < CLAIM_CHECK_S:
            return
        self._last_claim_check = now
        state = claims.run_claim_state(run_id=self.run_id, token=self.token)
        if not state.owner:
            raise claims.ClaimLost(self.run_id)
        self._cancel = self._cancel or state.cancel_requested

    def close(self) -> None:
        self.flush(force=True)
