"""The training progress bar: a rate and an ETA that hold still.

The trainer dispatches steps asynchronously and waits for the device only at synchronisation
points (logged steps, checkpoints, a stage's first step), so the time between two loop iterations
says nothing about speed: a per-iteration rate swings from "dispatch is instant" to "this
iteration waited for ten steps". The bar therefore moves only at synchronisation points, and its
rate is the steps per second over the last few synchronised intervals, leaving out the first one
(compilation).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from tqdm import tqdm

WINDOW = 10  # synchronised intervals the rate is measured over


def steps_per_second(marks: Sequence[tuple[int, float]], window: int = WINDOW) -> float | None:
    """Steps/s over the last ``window`` intervals between consecutive ``(step, seconds)``
    synchronisation marks, the first interval (the loop's start to its first synchronisation,
    which holds the compilation) left out; None until there is another one."""
    spans = list(zip(marks[:-1], marks[1:]))[1:][-window:]
    steps = sum(b[0] - a[0] for a, b in spans)
    seconds = sum(b[1] - a[1] for a, b in spans)
    return steps / seconds if spans and seconds > 0 else None


def eta_seconds(rate: float | None, remaining: int) -> float | None:
    return remaining / rate if rate else None


class Bar:
    """tqdm over a stage's steps, advanced by :meth:`sync` at each synchronisation point."""

    def __init__(self, desc: str, start: int, total: int, *, enabled: bool = True):
        self.total = total
        self.marks = [(start, time.monotonic())]
        self._bar = tqdm(total=total, initial=start, desc=desc, disable=not enabled,
                         bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                                    "[{elapsed}{postfix}]")

    def sync(self, step: int, loss: float | None = None) -> None:
        """``step`` steps are done (the device has caught up)."""
        self.marks.append((step, time.monotonic()))
        rate = steps_per_second(self.marks)
        eta = eta_seconds(rate, self.total - step)
        parts = [] if loss is None else [f"loss {loss:.3f}"]
        if rate is not None:
            parts += [f"{rate:.2f} step/s", f"ETA {tqdm.format_interval(eta)}"]
        self._bar.n = step
        self._bar.set_postfix_str(", ".join(parts))  # redraws the bar once

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
