"""The sheet's geometry, measured on the rendered pixels: 1 mm is the same in x and y, the
grid lines sit every 5 mm, 1 mV is 10 mm tall and 1 s is 25 mm wide."""

from __future__ import annotations

import re

import numpy as np
import pytest

from ecgmoe_cli.plotting.layout import Layout
from ecgmoe_cli.plotting.paper import Paper, px_per_mm
from ecgmoe_cli.plotting.render import Page, Strip, draw_page, save_page

DPI = 100  # 3.94 px per mm: enough to see 5 mm lines and 0.5 mm errors, fast to render
FS = 500.0


def _sine_page() -> Page:
    """1 Hz sine of 1 mV peak to peak in every slot and the strip; no markers, no header."""
    t = np.arange(int(10 * FS)) / FS
    sig = (0.5 * np.sin(2 * np.pi * t)).astype(np.float32)
    return Page(fs=FS, leads={"I": sig, "II": sig}, rhythm=[Strip("II", sig)])


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    fig = draw_page(_sine_page(), Paper(), dpi=DPI)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[:, :, :3].astype(int)


def _runs(mask: np.ndarray) -> np.ndarray:
    """Centres of runs of True (an anti-aliased line covers one or two pixels)."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return idx.astype(float)
    groups = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)
    return np.array([g.mean() for g in groups])


def _to_px(x_mm: float, y_mm: float, paper: Paper) -> tuple[int, int]:
    """(column, row) of a point in mm from the sheet's lower-left corner."""
    k = px_per_mm(DPI)
    return round(x_mm * k), round((paper.height_mm - y_mm) * k)


def test_figure_size_maps_mm_exactly(pixels):
    paper = Paper()
    h, w = pixels.shape[:2]
    assert abs(w - paper.width_mm / 25.4 * DPI) < 1  # Agg truncates to whole pixels
    assert abs(h - paper.height_mm / 25.4 * DPI) < 1


def test_major_grid_lines_every_5_mm_in_x_and_y(pixels):
    paper = Paper()
    x0, y0, gw, gh = Layout(paper).grid_box
    c0, r1 = _to_px(x0, y0, paper)
    c1, r0 = _to_px(x0 + gw, y0 + gh, paper)
    box = pixels[r0 - 2 : r1 + 3, c0 - 2 : c1 + 3]  # the border lines included
    red = (box[..., 0] > 170) & (box[..., 1] < 150) & (box[..., 2] < 150)  # major, not minor
    cols = _runs(red.mean(axis=0) > 0.5)
    rows = _runs(red.mean(axis=1) > 0.5)
    assert len(cols) == round(gw / 5) + 1 and len(rows) == round(gh / 5) + 1
    # pixels per mm from the drawn lines (least squares over all of them)
    kx = np.polyfit(np.arange(len(cols)) * 5.0, cols, 1)[0]
    ky = np.polyfit(np.arange(len(rows)) * 5.0, rows, 1)[0]
    expected = px_per_mm(DPI)
    assert kx == pytest.approx(expected, rel=0.005)
    assert ky == pytest.approx(expected, rel=0.005)
    assert kx == pytest.approx(ky, rel=0.005)


def _dark(region: np.ndarray) -> np.ndarray:
    return region.max(axis=-1) < 100


def test_one_millivolt_is_10_mm_and_one_second_is_25_mm(pixels):
    paper = Paper()
    layout = Layout(paper)
    k = px_per_mm(DPI)
    lead_i = layout.lead_panels()[0]
    # vertical: the 1 mV peak-to-peak sine inside lead I's slot, away from label and separators
    c0, r0 = _to_px(lead_i.x_mm + 1, lead_i.baseline_mm + 8, paper)
    c1, r1 = _to_px(lead_i.x_mm + 60, lead_i.baseline_mm - 8, paper)
    rows = np.flatnonzero(_dark(pixels[r0:r1, c0:c1]).any(axis=1))
    line_w = 0.6 / 72 * 25.4  # the trace's own width, mm
    span_mm = (rows[-1] - rows[0] + 1) / k - line_w
    assert span_mm == pytest.approx(10.0, abs=0.4)
    # horizontal: the crests of the strip's 1 Hz sine are 25 mm apart
    strip = layout.rhythm_panels(["II"])[0]
    c0, r0 = _to_px(strip.x_mm, strip.baseline_mm + 8, paper)
    c1, r1 = _to_px(strip.x_mm + 250, strip.baseline_mm - 8, paper)
    dark = _dark(pixels[r0:r1, c0:c1])
    top = np.where(dark.any(axis=0), dark.argmax(axis=0), dark.shape[0])
    crests = _runs(top <= top.min())
    assert len(crests) == 10
    assert np.diff(crests).mean() / k == pytest.approx(25.0, abs=0.25)
    # the crest of sin(2 pi t) is at t = 0.25 s: 6.25 mm after the slot's start
    assert crests[0] / k == pytest.approx(6.25, abs=0.5)


def test_calibration_pulse_is_10_mm_tall_and_5_mm_wide(pixels):
    paper = Paper()
    layout = Layout(paper)
    base = layout.row_band(0)[2]
    k = px_per_mm(DPI)
    c0, r0 = _to_px(layout.cal_x0 - 0.5, base + 14, paper)
    c1, r1 = _to_px(layout.trace_x0 - 0.5, base - 3, paper)
    dark = _dark(pixels[r0:r1, c0:c1])
    rows = np.flatnonzero(dark.any(axis=1))
    assert (rows[-1] - rows[0] + 1) / k == pytest.approx(10.0, abs=0.5)
    top_cols = np.flatnonzero(dark[rows[0]])
    assert (top_cols[-1] - top_cols[0] + 1) / k == pytest.approx(5.0, abs=0.5)


def test_vector_files_have_the_sheet_size(tmp_path):
    """PDF and SVG keep 297 x 210 mm: printing at 100 % keeps 25 mm/s."""
    page = _sine_page()
    pdf = save_page(page, tmp_path / "a.pdf", fmt="pdf", dpi=DPI).read_bytes()
    box = re.search(rb"/MediaBox \[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", pdf)
    assert box is not None
    w_pt, h_pt = float(box.group(1)), float(box.group(2))
    assert w_pt / 72 * 25.4 == pytest.approx(297.0, abs=0.1)
    assert h_pt / 72 * 25.4 == pytest.approx(210.0, abs=0.1)
    svg = save_page(page, tmp_path / "a.svg", fmt="svg", dpi=DPI).read_text()
    width = re.search(r'width="([\d.]+)pt"', svg)
    assert width is not None and float(width.group(1)) / 72 * 25.4 == pytest.approx(297.0, abs=0.1)
