"""A rich progress bar for evaluation runs that shows the running cost."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from routerforge.evalrun.runner import ProgressHook


@contextmanager
def cost_progress(
    total: int, label: str, *, console: Console | None = None, enabled: bool = True
) -> Iterator[ProgressHook]:
    """A progress hook for :func:`run_eval` that advances a bar and shows ``$`` spent so far."""
    if not enabled or total <= 0:
        yield lambda _model, _cost: None
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[green]${task.fields[cost]:.6f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
        transient=False,
    )
    task = progress.add_task(label, total=total, cost=0.0)

    def hook(_model: str, cost: float) -> None:
        progress.update(task, advance=1, cost=cost)

    with progress:
        yield hook
