"""A progress bar for long runs (rich), silent when output is not a terminal and quiet is asked."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@contextmanager
def cell_progress(enabled: bool = True) -> Iterator:
    """Yields ``tick(index, total, run)`` for ``run_sweep(on_progress=...)``."""
    if not enabled:
        yield None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        task = bar.add_task("cells", total=None)

        def tick(index: int, total: int, run) -> None:
            bar.update(task, total=total, completed=index, description=f"{run.key} [{run.dtype}]")

        yield tick
        bar.update(task, completed=bar.tasks[0].total or 0)
