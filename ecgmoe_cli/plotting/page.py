"""From a Record to a Page: pick the 10 s window, map leads, filter for display, find beats."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from scipy.signal import butter, sosfiltfilt

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.records.record import Record
from ecgmoe_cli.plotting.layout import WINDOW_S
from ecgmoe_cli.plotting.render import Page, Strip
from ecgmoe_cli.signal.beats import heart_rate_bpm
from ecgmoe_cli.signal.leads import CANONICAL_LEADS
from ecgmoe_cli.signal.rpeaks import detect_rpeaks

if TYPE_CHECKING:
    from ecgmoe_cli.signal.leads import LeadMapping

DISPLAY_BAND_HZ = (0.5, 40.0)  # wander out, tremor and mains out; QRS shape kept for the eye
PAD_S = 2.0  # filter on this much signal either side of the window: no edge transients
MAX_STRIPS = 2  # rhythm strips under the 3 x 4 grid: the main one, an unmapped channel
MAX_STRIPS_ALONE = 6  # strips on a sheet without the grid


def n_windows(record: Record) -> int:
    """How many 10 s windows the record has (a short record has one, partly empty)."""
    return max(1, math.ceil(record.signal.shape[1] / (WINDOW_S * record.fs) - 1e-9))


def display_filter(x: np.ndarray, fs: float) -> np.ndarray:
    """Zero-phase 0.5-40 Hz band-pass of (L, n) mV; NaN gaps stay gaps, short input passes."""
    lo, hi = DISPLAY_BAND_HZ
    nyq = fs / 2
    if hi < 0.9 * nyq:
        sos = butter(2, [lo / nyq, hi / nyq], btype="band", output="sos")
    else:  # a low rate already limits the band: only take the wander out
        sos = butter(2, lo / nyq, btype="high", output="sos")
    out = np.array(x, dtype=np.float64)
    for row in out:
        bad = ~np.isfinite(row)
        if bad.all():
            continue
        if bad.any():
            good = np.flatnonzero(~bad)
            row[bad] = np.interp(np.flatnonzero(bad), good, row[good])
        if row.size > 3 * (2 * sos.shape[0] + 1):  # sosfiltfilt's minimum pad length
            row[:] = sosfiltfilt(sos, row)
        row[bad] = np.nan
    return out.astype(np.float32)


def build_page(record: Record, mapping: LeadMapping, *, window: int = 0,
               predictions: list[str] | None = None) -> Page:
    """The sheet for window `window` (10 s each, from 0) of a record whose leads `mapping` maps."""
    fs = float(record.fs)
    nw = n_windows(record)
    if window < 0 or window >= nw:
        raise EcgMoeError(f"window {window} is out of range: the record has {nw} window(s) "
                          f"of {WINDOW_S:g} s (0-{nw - 1})", record.path)
    n = record.signal.shape[1]
    w0 = round(window * WINDOW_S * fs)
    w1 = min(n, round((window + 1) * WINDOW_S * fs))
    p0, p1 = max(0, w0 - int(PAD_S * fs)), min(n, w1 + int(PAD_S * fs))
    raw = record.signal[:, p0:p1]
    shown = display_filter(raw, fs)[:, w0 - p0 : w1 - p0]

    mapped = {lead: src for lead, src in zip(CANONICAL_LEADS, mapping.source_index)
              if src is not None}
    leads = {lead: shown[src] for lead, src in mapped.items()}
    dropped = set(mapping.dropped)
    unmapped = [i for i, name in enumerate(record.lead_names)
                if i not in mapped.values() and name not in dropped]
    ecg_rows = sorted(set(mapped.values()) | set(unmapped))
    if not ecg_rows:
        raise EcgMoeError("no ECG lead to draw (every channel is a non-ECG signal)", record.path)

    notes: list[str] = []
    strips: list[Strip] = []
    if not mapped:  # nothing to place in the 3 x 4 grid: every channel gets a strip
        for i in unmapped[:MAX_STRIPS_ALONE]:
            strips.append(Strip(record.lead_names[i], shown[i]))
        names = ", ".join(record.lead_names[i] for i in unmapped)
        notes.append(f"no standard lead name ({names}): strips only; use --lead-map NAME=LEAD")
    else:
        if "II" in leads:
            strips.append(Strip("II", leads["II"]))
        else:
            first = next(iter(mapped))
            strips.append(Strip(f"{first} (lead II not recorded)", leads[first]))
            notes.append(f"rhythm strip: lead II not recorded, showing {first}")
        for i in unmapped[: MAX_STRIPS - 1]:
            strips.append(Strip(f"{record.lead_names[i]} (no standard name)", shown[i]))
        if unmapped:
            names = ", ".join(record.lead_names[i] for i in unmapped)
            notes.append(f"no standard lead name: {names}; use --lead-map NAME=LEAD")

    # Beats from all ECG leads on the unfiltered padded window, kept where the window is.
    peaks = detect_rpeaks(raw[ecg_rows], fs) + p0 - w0
    peaks = peaks[(peaks >= 0) & (peaks < w1 - w0)]
    hr = heart_rate_bpm(peaks, fs)
    missing = [lead for lead in CANONICAL_LEADS if lead not in leads]
    info = [
        (f"fs {fs:g} Hz   duration {record.duration_s:.1f} s   shown {w0 / fs:.1f}-{w1 / fs:.1f} s"
         f" (window {window} of {nw}, counted from 0)"),
        (f"heart rate {hr:.0f} bpm ({peaks.size} R-peaks marked on the rhythm strip)"
         if math.isfinite(hr) else f"heart rate: not measurable ({peaks.size} R-peak(s) found)"),
        *([f"leads: {' '.join(leads)}"
           + (f"   not recorded: {' '.join(missing)}" if missing else "")] if leads else []),
        *notes,
        *mapping.warnings,
    ]
    return Page(fs=fs, leads=leads, rhythm=strips, rpeaks=peaks, title=record.name, info=info,
                predictions=predictions or [], grid_rows=bool(mapped),
                footer=f"display band-pass {DISPLAY_BAND_HZ[0]:g}-{DISPLAY_BAND_HZ[1]:g} Hz")
