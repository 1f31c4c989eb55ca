"""The progress bar's rate: steps per second over synchronised intervals, compilation left out."""

import pytest

from cambrian import progress


def test_rate_leaves_out_the_compilation_and_ignores_dispatch_timing():
    # (step, seconds) at synchronisation points: start, step 1 after a 40 s compilation, then
    # every 10 steps at 0.5 s/step (the loop itself ran ahead of the device in between)
    marks = [(0, 0.0), (1, 40.5)] + [(1 + 10 * i, 40.5 + 5.0 * i) for i in range(1, 6)]
    assert progress.steps_per_second(marks) == pytest.approx(2.0)
    assert progress.eta_seconds(2.0, 949) == pytest.approx(474.5)


def test_no_rate_before_a_second_interval():
    assert progress.steps_per_second([(0, 0.0)]) is None
    assert progress.steps_per_second([(0, 0.0), (10, 30.0)]) is None  # compilation only
    assert progress.eta_seconds(None, 100) is None
    assert progress.steps_per_second([(0, 0.0), (10, 30.0), (20, 35.0)]) == pytest.approx(2.0)


def test_rate_follows_the_last_window_of_intervals():
    marks = [(0, 0.0), (1, 10.0)]
    for _ in range(20):  # 1 step/s for a while ...
        marks.append((marks[-1][0] + 10, marks[-1][1] + 10.0))
    for _ in range(3):  # ... then a checkpoint interval twice as slow
        marks.append((marks[-1][0] + 10, marks[-1][1] + 20.0))
    assert progress.steps_per_second(marks, window=4) == pytest.approx(40 / 70)
    assert progress.steps_per_second(marks, window=1) == pytest.approx(0.5)
    # intervals of unequal length weigh by their time, not their count
    assert progress.steps_per_second([(0, 0.0), (1, 9.0), (3, 10.0), (23, 20.0)]) == (
        pytest.approx(22 / 11))
