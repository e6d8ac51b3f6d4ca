"""The ETA from a moving window of recent step times, on synthetic step-time sequences."""

from __future__ import annotations

import pytest

from workers.eta import WINDOW, EtaEstimator


def play(total: int, step_seconds, *, eval_every: int, eval_seconds: float, until: int,
         log_every: int = 1) -> tuple[EtaEstimator, float, list[float]]:
    """Feed an estimator what a worker sees up to iteration ``until``: a mark per logged interval, an
    evaluation (taking ``eval_seconds``, then samples) every ``eval_every`` iterations and at the last.
    Returns the estimator, the true time left from ``until`` to the end, and each iteration's time."""
    times = [step_seconds(step) for step in range(1, total + 1)]
    eta = EtaEstimator(total, 0, 0.0)
    clock, clock_at_until = 0.0, None
    for step in range(1, total + 1):
        clock += times[step - 1]
        if step <= until and (step % log_every == 0 or step == total):
            eta.on_metrics(step, clock)
        if step % eval_every == 0 or step == total:
            clock += eval_seconds
            if step <= until:
                eta.on_evaluation(step)
                eta.on_pause()
        if step == until:
            clock_at_until = clock
    return eta, clock - clock_at_until, times


def warm_then_steady(step: int) -> float:
    return {1: 20.0, 2: 6.0, 3: 2.0}.get(step, 0.5)  # a slow start (workers, kernels), then 0.5 s per iteration


def test_a_slow_start_does_not_inflate_the_estimate():
    eta, true_left, times = play(80, warm_then_steady, eval_every=40, eval_seconds=0.0, until=5)
    assert eta.eta_seconds() == pytest.approx(75 * 0.5)  # the median of the newer half: 2, 0.5, 0.5
    assert true_left == pytest.approx(75 * 0.5)
    average_since_start = sum(times[:5]) / 5  # what an average since the start would say
    assert average_since_start * 75 > 4 * true_left


def test_the_window_forgets_the_warm_up_after_a_few_logs():
    eta, _, _ = play(80, warm_then_steady, eval_every=40, eval_seconds=0.0, until=4)
    assert eta.seconds_per_iteration() == pytest.approx(1.25)  # the newer half of 20, 6, 2, 0.5: still warming
    eta, _, _ = play(80, warm_then_steady, eval_every=40, eval_seconds=0.0, until=7)
    assert eta.seconds_per_iteration() == pytest.approx(0.5)  # the newer half of seven: steady


def test_evaluations_to_come_are_counted_at_their_measured_cost():
    steady = lambda step: 0.5  # noqa: E731
    eta, true_left, _ = play(80, steady, eval_every=20, eval_seconds=6.0, until=45)
    assert eta.eval_every() == 20 and eta.evaluations_left() == 2  # at 60 and 80
    assert eta.eval_cost == pytest.approx(6.0)
    assert eta.eta_seconds() == pytest.approx(35 * 0.5 + 2 * 6.0) == pytest.approx(true_left)
    assert eta.seconds_per_step() == pytest.approx(true_left / 35)


def test_an_evaluation_does_not_enter_the_window():
    eta, _, _ = play(80, lambda step: 0.5, eval_every=10, eval_seconds=30.0, until=11)
    assert eta.seconds_per_iteration() == pytest.approx(0.5)


def test_a_slower_phase_is_followed_within_the_window():
    slower = lambda step: 0.5 if step <= 40 else 1.0  # noqa: E731
    eta, _, _ = play(200, slower, eval_every=1000, eval_seconds=0.0, until=40 + WINDOW)
    assert eta.seconds_per_iteration() == pytest.approx(1.0)


def test_logged_intervals_of_several_iterations():
    eta, true_left, _ = play(100, lambda step: 0.25, eval_every=50, eval_seconds=4.0, until=60, log_every=10)
    assert eta.seconds_per_iteration() == pytest.approx(0.25)
    assert eta.eta_seconds() == pytest.approx(40 * 0.25 + 4.0) == pytest.approx(true_left)


def test_nothing_known_yet():
    eta = EtaEstimator(80, 0, 0.0)
    assert eta.eta_seconds() is None and eta.seconds_per_step() is None
    resumed = EtaEstimator(80, 40, 100.0)
    resumed.on_metrics(41, 101.0)
    assert resumed.eta_seconds() == pytest.approx(39.0)
