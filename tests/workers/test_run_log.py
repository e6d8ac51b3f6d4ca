"""The run's web Log holds losses and evaluations beside the lifecycle events, in bounded volume."""

from __future__ import annotations

import pytest

from duda_engine.evaluate import EvalResult
from tests.webapp.runs.conftest import launch
from webapp.runs.models import RunEvent
from webapp.runs.services import worker
from workers.callbacks import RunCallbacks
from workers.run_log import MAX_EVALUATION_LINES, MAX_METRIC_LINES, RunLog


def lines(log: RunLog, total: int, *, log_every: int = 1, eval_every: int = 0) -> tuple[list[str], list[str]]:
    metrics, evaluations = [], []
    for step in range(1, total + 1):
        if step % log_every == 0 or step == total:
            metrics.append(log.metrics_line(step, {"loss/source": 1.0, "time/iteration_s": 0.25}))
        if (eval_every and step % eval_every == 0) or step == total:
            evaluations.append(log.evaluation_line(step, 40.0, 90.0))
    return [m for m in metrics if m], [e for e in evaluations if e]


@pytest.mark.parametrize(("total", "log_every", "eval_every"), [(80, 1, 20), (40_000, 10, 1), (7, 1, 0), (1000, 1, 2)])
def test_the_volume_is_bounded_whatever_the_intervals(total, log_every, eval_every):
    metrics, evaluations = lines(RunLog(total_steps=total), total, log_every=log_every, eval_every=eval_every)
    assert 1 <= len(metrics) <= MAX_METRIC_LINES + 1 and 1 <= len(evaluations) <= MAX_EVALUATION_LINES + 1
    assert metrics[-1].startswith(f"iteration {total}/{total}")  # the last iteration always
    assert evaluations[-1].startswith(f"evaluation at iteration {total}:")


def test_a_short_run_logs_every_interval_and_every_evaluation():
    metrics, evaluations = lines(RunLog(total_steps=80), 80, log_every=4, eval_every=20)
    assert len(metrics) == 20 and len(evaluations) == 4
    assert metrics[0] == "iteration 4/80 · loss source 1 · 0.25 s/it"
    assert evaluations[0] == "evaluation at iteration 20: target mIoU 40.00 (pixel accuracy 90.0%)"


def test_a_resumed_run_goes_on_from_its_step():
    metrics, _ = lines(RunLog(total_steps=80, start_step=40), 80)
    assert metrics and all(int(m.split()[1].split("/")[0]) > 0 for m in metrics)


@pytest.mark.django_db
def test_the_worker_writes_them_to_the_run_log(user):
    run = launch(user, iterations=80)
    claim = worker.run_claim(run_id=run.pk, worker_host="w", worker_gpu="CPU")
    callbacks = RunCallbacks(run.pk, claim.token)
    callbacks.on_start(80, 0)
    for step in range(1, 81):
        callbacks.on_metrics(step, {"loss/source": 2.0 / step, "loss/target": 0.5, "time/iteration_s": 0.1})
        if step % 40 == 0:
            callbacks.on_evaluation(step, EvalResult(miou=12.5 * step / 40, per_class={}, pixel_accuracy=80.0,
                                                     num_images=4, scored_classes=[]))
    callbacks.close()
    messages = list(RunEvent.objects.filter(run=run).order_by("id").values_list("message", flat=True))
    losses = [m for m in messages if m.startswith("iteration ")]
    evaluations = [m for m in messages if m.startswith("evaluation at ")]
    assert len(losses) == 41  # the first iteration, then every other one (80 iterations, at most 50 lines)
    assert losses[0] == "iteration 1/80 · loss source 2, target 0.5 · 0.1 s/it"
    assert losses[1] == "iteration 2/80 · loss source 1, target 0.5 · 0.1 s/it" and losses[-1].startswith("iteration 80/80")
    assert evaluations == ["evaluation at iteration 40: target mIoU 12.50 (pixel accuracy 80.0%)",
                           "evaluation at iteration 80: target mIoU 25.00 (pixel accuracy 80.0%)"]
    assert any(m == "training starting of 80" for m in messages)  # the lifecycle events stay
