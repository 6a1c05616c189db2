"""The progress bar counts what ends the run: steps, or seconds of training when
--max_minutes is set (a bar of 44/100000 steps under a 6-minute budget says nothing)."""

import io

from minibert.training import ProgressBar


def test_a_time_budget_shows_seconds_not_steps():
    bar = ProgressBar({"max_minutes": 0.5, "max_steps": 100000}, step=0, elapsed=0.0, desc="x", file=io.StringIO())
    assert bar.bar.total == 30 and bar.bar.unit == "s"
    bar.update(1, 12.5, loss="1.0")
    bar.update(2, 20.0, loss="0.9")
    assert bar.bar.n == 20.0
    bar.update(3, 31.0)  # the last step may overrun the budget: the bar stops at its total
    assert bar.bar.n == 30
    bar.close()


def test_resuming_a_time_budget_starts_at_the_time_already_spent():
    bar = ProgressBar({"max_minutes": 1.0, "max_steps": 100000}, step=40, elapsed=42.4, desc="x", file=io.StringIO())
    assert bar.bar.n == 42
    bar.close()


def test_a_step_budget_shows_steps():
    bar = ProgressBar({"max_minutes": 0, "max_steps": 8}, step=3, elapsed=5.0, desc="x", file=io.StringIO())
    assert bar.bar.total == 8 and bar.bar.n == 3
    bar.update(4, 6.0)
    assert bar.bar.n == 4
    bar.close()
