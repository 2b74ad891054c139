"""Where each lead goes on the sheet: the standard 3 x 4 grid of 2.5 s segments plus
full-length rhythm strips below it, in millimetres from the sheet's lower-left corner.

    ┌ header: record, fs, heart rate, predictions ───────────────────────┐
    │ ⊓ I        │ aVR       │ V1        │ V4        │   0-2.5-5-7.5-10 s │
    │ ⊓ II       │ aVL       │ V2        │ V5        │                    │
    │ ⊓ III      │ aVF       │ V3        │ V6        │                    │
    │ ⊓ II (rhythm strip, the whole 10 s, R-peaks marked)              │
    └────────────────────────────────────────────────────────────────────┘
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ecgmoe_cli.plotting.paper import Paper

LEAD_GRID: tuple[tuple[str, ...], ...] = (
    ("I", "aVR", "V1", "V4"),
    ("II", "aVL", "V2", "V5"),
    ("III", "aVF", "V3", "V6"),
)
WINDOW_S = 10.0  # one printed page shows 10 s, like every 12-lead recorder


@dataclass(frozen=True)
class Panel:
    """One trace slot: which lead, which seconds of the window, and where on the sheet."""

    lead: str
    t0_s: float  # window-relative start of the slot
    t1_s: float
    x_mm: float  # where t0_s is drawn
    baseline_mm: float  # 0 mV
    lo_mm: float  # the row's band: traces are clipped to it
    hi_mm: float


@dataclass(frozen=True)
class Layout:
    """A sheet cut into a header, a grid area and 3 + n_rhythm rows; all lengths in mm."""


    paper: Paper
    n_rhythm: int = 1
    grid_rows: bool = True  # False: strips only (no lead has a standard name to place)
    window_s: float = WINDOW_S
    margin_mm: float = 10.0  # left, right and bottom
    header_mm: float = 30.0  # above the grid, including the top margin
    cal_mm: float = 15.0  # room for the calibration pulse at the start of every row
    baseline_frac: float = 0.45  # QRS mostly point up: the baseline sits a bit below the middle

    def __post_init__(self) -> None:
        if self.n_rhythm < 0:
            raise ValueError("n_rhythm must be >= 0")

    @property
    def grid_box(self) -> tuple[float, float, float, float]:
        """(x0, y0, width, height) of the grid, width a whole number of 5 mm squares."""
        p = self.paper
        need = self.cal_mm + self.window_s * p.speed_mm_s + p.major_mm
        width = min(math.ceil(need / p.major_mm) * p.major_mm, p.width_mm - 2 * self.margin_mm)
        height = p.height_mm - self.header_mm - self.margin_mm
        height = math.floor(height / p.major_mm) * p.major_mm
        return (p.width_mm - width) / 2, self.margin_mm, width, height

    @property
    def n_rows(self) -> int:
        return self._n_grid + self.n_rhythm

    @property
    def _n_grid(self) -> int:
        return len(LEAD_GRID) if self.grid_rows else 0

    @property
    def trace_x0(self) -> float:
        return self.grid_box[0] + self.cal_mm

    @property
    def cal_x0(self) -> float:
        return self.grid_box[0] + self.cal_mm / 6

    def row_band(self, row: int) -> tuple[float, float, float]:
        """(lo, hi, baseline) of row `row`, counted from the top."""
        _, y0, _, h = self.grid_box
        row_h = h / self.n_rows
        hi = y0 + h - row * row_h
        lo = hi - row_h
        return lo, hi, lo + self.baseline_frac * row_h

    def lead_panels(self) -> list[Panel]:
        """The twelve 2.5 s slots: column c shows seconds [c, c+1) * window / 4 of every lead."""
        seg = self.window_s / len(LEAD_GRID[0])
        out: list[Panel] = []
        if not self.grid_rows:
            return out
        for r, leads in enumerate(LEAD_GRID):
            lo, hi, base = self.row_band(r)
            for c, lead in enumerate(leads):
                x = self.trace_x0 + c * seg * self.paper.speed_mm_s
                out.append(Panel(lead, c * seg, (c + 1) * seg, x, base, lo, hi))
        return out

    def rhythm_panels(self, leads: list[str]) -> list[Panel]:
        """Full-window strips, one per lead, in the rows under the 3 x 4 grid."""
        out = []
        for i, lead in enumerate(leads[: self.n_rhythm]):
            lo, hi, base = self.row_band(self._n_grid + i)
            out.append(Panel(lead, 0.0, self.window_s, self.trace_x0, base, lo, hi))
        return out
