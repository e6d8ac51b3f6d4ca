"""The fencing of a worker's writes.

A worker that claims a run gets a token (``worker.run_claim``). Every write from a worker carries
that token and is refused with ``ClaimLost`` (nothing written) unless that claim still holds the run:
running, under this token. The check locks the run's row in the write's own transaction, so a requeue
cannot slip between the check and the write.
"""

from __future__ import annotations

from dataclasses import dataclass

from webapp.runs.models import Run, RunStatus


class ClaimLost(Exception):
    """A worker's claim no longer holds its run (requeued and maybe taken by another worker, finished,
    deleted): nothing was written, and the worker stops training the run."""

    def __init__(self, run_id: int):
        super().__init__(f"run {run_id} is no longer held by this worker")
        self.run_id = run_id


def held_run(*, run_id: int, token: str) -> Run:
    """The run, its row locked until the transaction ends, if claim ``token`` holds it; ClaimLost otherwise."""
    run = Run.objects.select_for_update(no_key=True).filter(pk=run_id, status=RunStatus.RUNNING).first()
    if run is None or not token or run.claim_token != token:
        raise ClaimLost(run_id)
    return run


@dataclass
class HeartbeatState:
    owner: bool  # this worker still holds the run
    cancel_requested: bool


def run_claim_state(*, run_id: int, token: str) -> HeartbeatState:
    """Whether claim ``token`` still holds the run and whether a cancel was asked; reads only."""
    row = Run.objects.filter(pk=run_id).values_list("status", "claim_token", "cancel_requested").first()
    if row is None or row[0] != RunStatus.RUNNING or not token or row[1] != token:
        return HeartbeatState(owner=False, cancel_requested=False)
    return HeartbeatState(owner=True, cancel_requested=bool(row[2]))


def check_held(*, run_id: int, token: str) -> None:
    """Before work that writes files: ClaimLost if the claim no longer holds the run (the rows are
    still checked under the lock when they are written)."""
    if not run_claim_state(run_id=run_id, token=token).owner:
        raise ClaimLost(run_id)
