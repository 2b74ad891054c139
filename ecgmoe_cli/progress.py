"""Progress on stderr for every long command: a transient rich bar on a terminal; anywhere else
(a Slurm log, a pipe) a plain line every `every_s` seconds, so an hour-long batch job shows it
is alive and a short run prints nothing (a rich bar there printed blank lines).
"""

from __future__ import annotations

import math
import time
from typing import Any

from rich.console import Console

PLAIN_EVERY_S = 30.0  # seconds between plain progress lines


class Progress:
    """`with Progress("predict", total) as p: p.update(advance=1)`; starts on the first update
    (so a setup error prints its one line alone). `fields` (e.g. loss=) show beside the count."""

    def __init__(self, title: str, total: int | None = None, show: bool = True,
                 every_s: float = PLAIN_EVERY_S, unit: str = "", console: Console | None = None
                 ) -> None:
        self.title, self.total, self.show = title, total, show
        self.every_s, self.unit = every_s, unit
        self.console = console or Console(stderr=True)
        self.done = 0
        self._bar: Any = None
        self._task: Any = None
        self._t0 = self._last = 0.0
        self._shown: int | None = None  # the count of the last plain line

    def __enter__(self) -> Progress:  # noqa: PYI034 (py3.10: no typing.Self)
        return self

    def update(self, completed: int | None = None, total: int | None = None, advance: int = 0,
               **fields: float) -> None:
        """Set (`completed`) or advance the count; `total` may arrive with the first update."""
        if not self.show:
            return
        self.total = self.total if total is None else total
        self.done = (self.done if completed is None else completed) + advance
        if not self._t0:
            self._start(fields)
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, total=self.total, **fields)
        elif time.monotonic() - self._last >= self.every_s:
            self._line(fields)

    def _start(self, fields: dict[str, float]) -> None:
        self._t0 = self._last = time.monotonic()
        if not self.console.is_terminal:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress

        columns: list[Any] = [TextColumn(self.title), BarColumn(), MofNCompleteColumn()]
        columns += [TextColumn(f"{k} {{task.fields[{k}]:.4f}}") for k in fields]
        self._bar = RichProgress(*columns, TimeRemainingColumn(), console=self.console,
                                 transient=True)
        self._bar.start()
        self._task = self._bar.add_task(self.title, total=self.total,
                                        **{k: math.nan for k in fields})

    def _line(self, fields: dict[str, float]) -> None:
        """One plain line: count, share, rate, time left, fields."""
        now = time.monotonic()
        self._last, self._shown = now, self.done
        rate = self.done / (now - self._t0) if now > self._t0 else 0.0
        text = f"{self.title}: {self.done}" + (f"/{self.total}" if self.total else "")
        text += f" {self.unit}".rstrip()
        if self.total:
            text += f" ({100 * self.done / self.total:.0f} %)"
        text += f", {rate:.1f}/s"
        if self.total and rate > 0 and self.done < self.total:
            text += f", about {(self.total - self.done) / rate / 60:.0f} min left"
        text += "".join(f", {k} {v:.4f}" for k, v in fields.items())
        self.console.print(text, highlight=False, markup=False, soft_wrap=True)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif self._shown is not None and self._shown != self.done and exc[0] is None:
            self._line({})  # the final count of a run that printed lines
