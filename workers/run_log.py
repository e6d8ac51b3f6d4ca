"""The lines a training run adds to its web Log, beside the lifecycle events: losses and evaluations.

The Log is for people; the curves hold every number. So it stays short whatever the run's length
or intervals: at most ``MAX_METRIC_LINES`` loss lines and ``MAX_EVALUATION_LINES`` evaluation lines
per run (a line at the first logged interval or evaluation at or after each of evenly spaced
milestones, and always at the last iteration).
"""

from __future__ import annotations

import math

MAX_METRIC_LINES = 50
MAX_EVALUATION_LINES = 50


def _spacing(total: int, lines: int) -> int:
    return max(1, math.ceil(total / lines))


class RunLog:
    def __init__(self, total_steps: int = 0, start_step: int = 0):
        self.total = total_steps
        self.metric_every = _spacing(total_steps, MAX_METRIC_LINES)
        self.evaluation_every = _spacing(total_steps, MAX_EVALUATION_LINES)
        self.next_metrics = start_step + 1
        self.next_evaluation = start_step + 1

    def metrics_line(self, step: int, values: dict[str, float]) -> str | None:
        """A line for a logged interval, or None when it falls between milestones (or before the start)."""
        if not self.total or (step < self.next_metrics and step != self.total):
            return None
        self.next_metrics = (step // self.metric_every + 1) * self.metric_every
        losses = ", ".join(f"{name[5:]} {value:.4g}" for name, value in values.items() if name.startswith("loss/"))
        parts = [f"iteration {step}/{self.total}"]
        if losses:
            parts.append(f"loss {losses}")
        if "time/iteration_s" in values:
            parts.append(f"{values['time/iteration_s']:.3g} s/it")
        return " · ".join(parts)

    def evaluation_line(self, step: int, miou: float, pixel_accuracy: float | None) -> str | None:
        if not self.total or (step < self.next_evaluation and step != self.total):
            return None
        self.next_evaluation = (step // self.evaluation_every + 1) * self.evaluation_every
        accuracy = f" (pixel accuracy {pixel_accuracy:.1f}%)" if pixel_accuracy is not None else ""
        return f"evaluation at iteration {step}: target mIoU {miou:.2f}{accuracy}"
