"""Draw a Page on grid paper: calibration pulses, the 3 x 4 leads, rhythm strips, header."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ecgmoe_cli.plotting.layout import Layout, Panel
from ecgmoe_cli.plotting.paper import (
    PAPER_COLOR,
    TRACE_COLOR,
    Paper,
    draw_calibration,
    draw_grid,
    new_sheet,
)

FORMATS = ("png", "pdf", "svg")
PEAK_COLOR = "#1f4fbf"
MISSING_COLOR = "#8a8a8a"


@dataclass
class Strip:
    """One full-length rhythm strip: its printed label and its (n,) signal in mV."""

    label: str
    signal: np.ndarray


@dataclass
class Page:
    """What one sheet shows. Signals are ready to draw (filtered), sample 0 = window start."""

    fs: float
    leads: dict[str, np.ndarray]  # canonical lead -> (n,) mV; a lead not in it is not recorded
    rhythm: list[Strip]  # drawn under the 3 x 4 grid, top to bottom
    rpeaks: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # 1st strip
    title: str = ""
    info: list[str] = field(default_factory=list)  # header lines under the title (left)
    predictions: list[str] = field(default_factory=list)  # header lines (right)
    footer: str = ""  # under the grid, right, after the speed and gain
    grid_rows: bool = True  # False: no 3 x 4 leads, only strips (no standard lead names)


def draw_page(page: Page, paper: Paper | None = None, dpi: float = 200) -> Figure:
    """The whole sheet as a matplotlib Figure of the paper's exact physical size."""
    paper = paper or Paper()
    # Rows keep the 3 x 4 + 1 height however few strips a sheet without the grid has.
    n_rows = max(len(page.rhythm), 1 if page.grid_rows else 4)
    layout = Layout(paper, n_rhythm=n_rows, grid_rows=page.grid_rows)
    fig, ax = new_sheet(paper, dpi)
    draw_grid(ax, *layout.grid_box, paper)
    used = layout.n_rows - layout.n_rhythm + max(len(page.rhythm), 1)
    for row in range(used):
        draw_calibration(ax, layout.cal_x0, layout.row_band(row)[2], paper)
    for panel in layout.lead_panels():
        sig = page.leads.get(panel.lead)
        if sig is None:
            _label(ax, panel, panel.lead)
            _missing(ax, panel, paper)
        else:
            _trace(ax, panel, sig, page.fs, paper)
            _label(ax, panel, panel.lead)
    _separators(ax, layout)
    strips = layout.rhythm_panels([s.label for s in page.rhythm])
    for i, (panel, strip) in enumerate(zip(strips, page.rhythm)):
        _trace(ax, panel, strip.signal, page.fs, paper)
        _label(ax, panel, strip.label)
        if i == 0:
            _peaks(ax, panel, strip.signal, page.rpeaks, page.fs, paper)
    _header(ax, page, layout)
    return fig


def save_page(page: Page, out: Path, *, fmt: str = "png", dpi: float = 200,
              paper: Paper | None = None) -> Path:
    """Render and write the sheet; no tight bounding box, so 100 % print keeps 25 mm/s."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    fig = draw_page(page, paper, dpi)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format=fmt, dpi=dpi, facecolor="white")
    return out


def _clip(ax: Axes, panel: Panel, paper: Paper) -> Rectangle:
    """The trace's box: its own time slot and its row, nothing spills onto a neighbour."""
    width = (panel.t1_s - panel.t0_s) * paper.speed_mm_s
    return Rectangle((panel.x_mm, panel.lo_mm), width, panel.hi_mm - panel.lo_mm,
                     transform=ax.transData)


def _trace(ax: Axes, panel: Panel, sig: np.ndarray, fs: float, paper: Paper) -> None:
    i0 = int(np.ceil(panel.t0_s * fs - 1e-9))
    i1 = min(int(np.ceil(panel.t1_s * fs - 1e-9)) + 1, sig.shape[0])  # +1 joins the next slot
    if i1 - i0 < 2:
        return  # the record ends before this slot: draw what exists, nothing here
    t = np.arange(i0, i1) / fs
    x = panel.x_mm + (t - panel.t0_s) * paper.speed_mm_s
    y = panel.baseline_mm + sig[i0:i1] * paper.gain_mm_mv
    (line,) = ax.plot(x, y, color=TRACE_COLOR, linewidth=0.6, zorder=3)
    line.set_clip_path(_clip(ax, panel, paper))


def _label(ax: Axes, panel: Panel, text: str) -> None:
    ax.text(panel.x_mm + 1.5, panel.hi_mm - 2.0, text, fontsize=9, fontweight="bold",
            va="top", ha="left", zorder=6,
            bbox={"facecolor": PAPER_COLOR, "edgecolor": "none", "alpha": 0.75, "pad": 1.0})


def _missing(ax: Axes, panel: Panel, paper: Paper) -> None:
    mid = panel.x_mm + (panel.t1_s - panel.t0_s) * paper.speed_mm_s / 2
    ax.text(mid, panel.baseline_mm, "not recorded", fontsize=8, style="italic",
            color=MISSING_COLOR, ha="center", va="center", zorder=4)


def _separators(ax: Axes, layout: Layout) -> None:
    """Short bars where one 2.5 s column ends and the next begins, as recorders print them."""
    panels = [p for p in layout.lead_panels() if p.t0_s > 0]
    for p in panels:
        ax.plot([p.x_mm, p.x_mm], [p.baseline_mm - 2.5, p.baseline_mm + 2.5],
                color=TRACE_COLOR, linewidth=0.8, zorder=3)


def _peaks(ax: Axes, panel: Panel, sig: np.ndarray, rpeaks: np.ndarray, fs: float,
           paper: Paper) -> None:
    """A small triangle above every detected R-peak of the strip, kept inside its row."""
    r = np.asarray(rpeaks, dtype=np.int64)
    r = r[(r >= 0) & (r < sig.shape[0])]
    if r.size == 0:
        return
    x = panel.x_mm + (r / fs - panel.t0_s) * paper.speed_mm_s
    v = np.nan_to_num(sig[r], nan=0.0)
    y = np.clip(panel.baseline_mm + v * paper.gain_mm_mv + 2.5, panel.lo_mm + 2, panel.hi_mm - 1.5)
    ax.plot(x, y, linestyle="none", marker="v", markersize=3.5, color=PEAK_COLOR, zorder=5)


def _header(ax: Axes, page: Page, layout: Layout) -> None:
    x0, y0, w, h = layout.grid_box
    top = layout.paper.height_mm - 5.0
    step = 3.3  # mm per 7.5 pt line
    room = int((top - 6.0 - (y0 + h) - 1.0) // step)  # lines that fit above the grid
    ax.text(x0, top, page.title, fontsize=12, fontweight="bold", va="top", ha="left")
    for i, line in enumerate(page.info[:room]):
        ax.text(x0, top - 6.0 - step * i, line, fontsize=7.5, va="top", ha="left")
    right = x0 + w * 0.55
    for i, line in enumerate(page.predictions[: room + 1]):
        ax.text(right, top - step * i, line, fontsize=7.5, va="top", ha="left",
                fontweight="bold" if i == 0 else "normal")
    p = layout.paper
    ax.text(x0 + w, y0 - 2.0,
            f"{p.speed_mm_s:g} mm/s   {p.gain_mm_mv:g} mm/mV   {page.footer}".rstrip(),
            fontsize=7, va="top", ha="right")
