"""The battery's stages, announced and timed: each prints one line as it starts (``evaluating <what> …``), the loops
that can take minutes (the importance-weighted NLL, the domain classifier's training) a progress line at most every
``every_s`` seconds, and each stage's wall time goes into the results as ``eval/<stage>_seconds`` — so whoever
watches a suite sees what the evaluation is doing, and ``result.json`` says where its time went."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


class Progress:
    """``progress(done, total)`` inside a stage's loop: a line ``  <stage>: done/total <unit> (N s)`` when at least
    ``every_s`` seconds passed since the last line (or the stage began), never for the last step; a loop may name
    its own unit (``progress(done, total, "domain classifier steps")``)."""

    def __init__(self, stage: str, unit: str, every_s: float, stream: TextIO | None) -> None:
        self.stage, self.unit, self.every_s, self.stream = stage, unit, every_s, stream
        self.started = self.last = time.perf_counter()

    def __call__(self, done: int, total: int, unit: str | None = None) -> None:
        now = time.perf_counter()
        if self.stream is None or done >= total or now - self.last < self.every_s:
            return
        self.last = now
        line = f"  {self.stage}: {done}/{total} {unit or self.unit} ({now - self.started:.0f} s)"
        print(line, file=self.stream, flush=True)


class Stages:
    """``with stages("iw_nll", "importance-weighted NLL, 500 images × 200 samples", unit="images") as progress:``
    prints the start line, times the block into ``seconds["iw_nll"]`` and hands the loop its ``Progress``.
    ``quiet=True`` (tests, library use) prints nothing and still times."""

    def __init__(self, quiet: bool = False, every_s: float = 10.0, stream: TextIO | None = None) -> None:
        self.stream = None if quiet else (stream or sys.stdout)
        self.every_s = every_s
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str, what: str, unit: str = "batches") -> Iterator[Progress]:
        if self.stream is not None:
            print(f"evaluating {what} …", file=self.stream, flush=True)
        started = time.perf_counter()
        try:
            yield Progress(name, unit, self.every_s, self.stream)
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

    def metrics(self) -> dict[str, float]:
        """``eval/<stage>_seconds`` for every stage, and ``eval/seconds`` in all."""
        timed = {f"eval/{name}_seconds": seconds for name, seconds in self.seconds.items()}
        return {**timed, "eval/seconds": sum(self.seconds.values())}

    def summary(self) -> str:
        parts = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.seconds.items())
        return f"evaluation done in {sum(self.seconds.values()):.1f} s: {parts}"
