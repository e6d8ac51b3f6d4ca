"""The time left of a training run, from a moving window of recent step times.

Not the average since the start: that one carries the first iterations' warm-up (data loader
workers starting, kernels being chosen) and the first evaluation for the whole run. Instead:

- the training time per iteration is the median of the recent logged intervals (seconds per
  iteration of each): the last ``WINDOW``, and early on only the newer half of those seen so far,
  since the slow ones come first; so a slow start or one slow interval is forgotten after a few logs;
- an interval during which the run evaluated (and wrote samples or a checkpoint) is kept out of
  that window; what it took beyond its iterations' training time is the cost of an evaluation,
  and the latest such cost counts for each evaluation still to come (one every ``eval_every``
  iterations, as seen between the last two, and one at the end).

Before the first evaluation its cost is unknown and counted as zero. Times come in as arguments
(``time.monotonic()`` in the worker), so a synthetic sequence tests the estimate exactly.
"""

from __future__ import annotations

import math
import statistics
from collections import deque

WINDOW = 20  # logged intervals


class EtaEstimator:
    def __init__(self, total_steps: int, start_step: int, now: float, window: int = WINDOW):
        self.total = total_steps
        self.start = start_step
        self.mark = (now, start_step)
        self.step = start_step
        self.per_step: deque[float] = deque(maxlen=window)  # seconds per iteration of recent clean intervals
        self.seen = 0  # clean intervals so far
        self.evaluated_in_interval = False  # an evaluation since the last mark
        self.paused_in_interval = False  # samples or a checkpoint since the last mark
        self.eval_steps: list[int] = []
        self.eval_cost: float | None = None  # seconds the latest evaluation added to its interval

    # --- what the worker tells it -----------------------------------------------------------
    def on_metrics(self, step: int, now: float) -> None:
        """A logged interval ended at ``step``."""
        then, previous = self.mark
        self.mark, self.step = (now, step), max(self.step, step)
        if step <= previous:
            return
        seconds = (now - then) / (step - previous)
        if self.evaluated_in_interval and self.per_step:
            self.eval_cost = max(0.0, (now - then) - (step - previous) * self.seconds_per_iteration())
        elif not self.evaluated_in_interval and not self.paused_in_interval:
            self.per_step.append(seconds)
            self.seen += 1
        self.evaluated_in_interval = self.paused_in_interval = False

    def on_evaluation(self, step: int) -> None:
        self.step = max(self.step, step)
        if not self.eval_steps or step > self.eval_steps[-1]:
            self.eval_steps.append(step)
        self.evaluated_in_interval = True

    def on_pause(self) -> None:
        """Samples or a checkpoint written: the interval holding them is not training time."""
        self.paused_in_interval = True

    # --- the estimate -----------------------------------------------------------------------
    def seconds_per_iteration(self) -> float | None:
        """Training seconds per iteration: the median of the recent window (the newer half of the
        intervals seen, up to ``WINDOW``)."""
        if not self.per_step:
            return None
        size = min(len(self.per_step), math.ceil(self.seen / 2))
        return statistics.median(list(self.per_step)[-size:])

    def eval_every(self) -> int | None:
        """Iterations between evaluations, as seen: the gap of the last two, else the first one's distance
        from the start."""
        if len(self.eval_steps) >= 2:
            return self.eval_steps[-1] - self.eval_steps[-2]
        if self.eval_steps:
            return self.eval_steps[0] - self.start or None
        return None

    def evaluations_left(self) -> int:
        every = self.eval_every()
        if every is None or self.step >= self.total:
            return 0
        left = self.total // every - self.step // every
        return left + (1 if self.total % every else 0)  # the last iteration always evaluates

    def eta_seconds(self) -> float | None:
        rate = self.seconds_per_iteration()
        if rate is None:
            return None
        evaluations = self.evaluations_left() * (self.eval_cost or 0.0)
        return max(0, self.total - self.step) * rate + evaluations

    def seconds_per_step(self) -> float | None:
        """The ETA spread over the iterations left (what ``Run.seconds_per_step`` stores)."""
        eta = self.eta_seconds()
        left = self.total - self.step
        if eta is None:
            return None
        return eta / left if left > 0 else self.seconds_per_iteration()
