"""ECG grid paper in millimetres: the one place where millimetres, inches and pixels meet.

The figure is one axes spanning the whole sheet with data units of millimetres, so anything
drawn at x mm lands x mm from the sheet's edge when the file is printed at 100 %.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

MM_PER_INCH = 25.4
MINOR_COLOR = "#f4b6b6"  # 1 mm lines: pale pink
MAJOR_COLOR = "#e05a5a"  # 5 mm lines: red
PAPER_COLOR = "#fffafa"
TRACE_COLOR = "black"


@dataclass(frozen=True)
class Paper:
    """A sheet and the recorder's settings (defaults: A4 landscape, 25 mm/s, 10 mm/mV)."""

    width_mm: float = 297.0
    height_mm: float = 210.0
    speed_mm_s: float = 25.0  # paper speed: 1 s of signal is this many mm wide
    gain_mm_mv: float = 10.0  # 1 mV of signal is this many mm tall
    minor_mm: float = 1.0
    major_mm: float = 5.0

    def __post_init__(self) -> None:
        if min(self.width_mm, self.height_mm, self.speed_mm_s, self.gain_mm_mv) <= 0:
            raise ValueError("paper sizes, speed and gain must be positive")

    @property
    def figsize_in(self) -> tuple[float, float]:
        return self.width_mm / MM_PER_INCH, self.height_mm / MM_PER_INCH


def px_per_mm(dpi: float) -> float:
    """Pixels per millimetre of a raster rendered at `dpi`."""
    return dpi / MM_PER_INCH


def new_sheet(paper: Paper, dpi: float) -> tuple[Figure, Axes]:
    """A headless figure of the sheet's exact size and one axes whose units are millimetres."""
    fig = Figure(figsize=paper.figsize_in, dpi=dpi, facecolor="white")
    FigureCanvasAgg(fig)  # Agg without pyplot: no global backend state, works without a display
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(0.0, paper.width_mm)
    ax.set_ylim(0.0, paper.height_mm)
    ax.set_axis_off()
    return fig, ax


def draw_grid(ax: Axes, x0: float, y0: float, width: float, height: float, paper: Paper) -> None:
    """1 mm minor and 5 mm major lines over the box (x0, y0, width, height), all in mm."""
    ax.add_patch(Rectangle((x0, y0), width, height, facecolor=PAPER_COLOR, edgecolor="none"))
    for step, color, lw, skip in (
        (paper.minor_mm, MINOR_COLOR, 0.25, paper.major_mm),
        (paper.major_mm, MAJOR_COLOR, 0.6, None),
    ):
        xs = _ticks(width, step, skip)
        ys = _ticks(height, step, skip)
        segs = [((x0 + x, y0), (x0 + x, y0 + height)) for x in xs]
        segs += [((x0, y0 + y), (x0 + width, y0 + y)) for y in ys]
        ax.add_collection(LineCollection(segs, colors=color, linewidths=lw, zorder=1))


def draw_calibration(ax: Axes, x: float, baseline: float, paper: Paper) -> float:
    """The 1 mV standardisation pulse (0.2 s wide, 1 mV tall) from x; returns where it ends."""
    w = 0.2 * paper.speed_mm_s  # 5 mm at 25 mm/s
    h = 1.0 * paper.gain_mm_mv  # 10 mm at 10 mm/mV
    lead_in = w / 2
    xs = [x, x + lead_in, x + lead_in, x + lead_in + w, x + lead_in + w, x + 2 * lead_in + w]
    ys = [baseline, baseline, baseline + h, baseline + h, baseline, baseline]
    ax.plot(xs, ys, color=TRACE_COLOR, linewidth=0.7, solid_joinstyle="miter", zorder=3)
    return xs[-1]


def _ticks(length: float, step: float, skip: float | None) -> np.ndarray:
    """Line offsets 0, step, ... <= length, less the multiples of `skip` (the major pass's)."""
    n = int(np.floor(length / step + 1e-9))
    t = np.arange(n + 1) * step
    if skip is not None:
        ratio = t / skip
        t = t[np.abs(ratio - np.round(ratio)) > 1e-6]
    return t

