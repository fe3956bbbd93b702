"""A progress bar for long runs (rich), silent when output is not a terminal and quiet is asked."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@contextmanager
def cell_progress(enabled: bool = True) -> Iterator:
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
    """One bar per load step: requests done of planned, with in-flight and error counts."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[detail]}"), TimeElapsedColumn()) if enabled else None
        self.task = None

    def __enter__(self) -> LoadProgress:
        if self.bar:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar:
            self.bar.__exit__(*exc)

    def message(self, text: str) -> None:
        if self.bar:
            self.bar.console.log(text)

    def start(self, label: str, total: int | None) -> None:
        if self.bar:
            self.task = self.bar.add_task(label, total=total, detail="")

    def update(self, done: int, in_flight: int, errors: int) -> None:
        if self.bar and self.task is not None:
            self.bar.update(self.task, completed=done, detail=f"in flight {in_flight} · errors {errors}")
