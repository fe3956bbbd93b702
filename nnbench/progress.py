"""A progress bar for long runs (rich), silent when output is not a terminal and quiet is asked."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn


@contextmanager
def cell_progress(enabled: bool = True) -> Iterator[Callable[[int, int, Any], None] | None]:
    """Yields ``tick(index, total, item)``: ``item`` is what the bar shows (a CellRun, a probe label)."""
    if not enabled:
        yield None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        task = bar.add_task("cells", total=None)

        def tick(index: int, total: int, item) -> None:
            bar.update(task, total=total, completed=index, description=str(item))

        yield tick
        bar.update(task, completed=bar.tasks[0].total or 0)


class LoadProgress:
    """One bar per load step: requests done of planned, with in-flight and error counts. Where
    stderr is not a terminal (CI logs, a pipe) it prints a plain line per step and at most one a
    second, so a long run in a log still shows progress (and a caller can wait on it)."""

    EVERY_S = 1.0

    def __init__(self, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        live = enabled and self.stream.isatty()
        self.plain = enabled and not live
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[detail]}"), TimeElapsedColumn()) if live else None
        self.task: TaskID | None = None
        self.label = ""
        self.last = -math.inf

    def __enter__(self) -> LoadProgress:
        if self.bar:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar:
            self.bar.__exit__(None, None, None)

    def _say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def message(self, text: str) -> None:
        if self.bar:
            self.bar.console.log(text)
        elif self.plain:
            self._say(text)

    def start(self, label: str, total: int | None) -> None:
        self.label, self.last = label, -math.inf
        if self.bar:
            self.task = self.bar.add_task(label, total=total, detail="")
        elif self.plain:
            self._say(f"{label}: started, {total if total is not None else 'open-ended'} requests planned")

    def update(self, done: int, in_flight: int, errors: int) -> None:
        if self.bar and self.task is not None:
            self.bar.update(self.task, completed=done, detail=f"in flight {in_flight} · errors {errors}")
        elif self.plain and time.monotonic() - self.last >= self.EVERY_S:
            self.last = time.monotonic()
            self._say(f"{self.label}: {done} done · in flight {in_flight} · errors {errors}")
