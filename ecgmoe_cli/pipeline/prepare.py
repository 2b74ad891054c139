"""Record -> model-ready windows: the join of io (readers) and signal (leads, clean, beats).

`prepare_record(path, spec)` reads and prepares one file; `prepare_from_record(record, spec)`
does the same for a Record already in memory (plot, simulate). A long record is cleaned and
searched for R-peaks in chunks of `CHUNK_S` seconds (with overlapping margins so filters and
the detector see no seams); `prepare_chunks` yields one Prepared per chunk, so a 24 h Holter
record can be consumed window block by window block without holding every window at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.records.record import Record
from ecgmoe_cli.model.batch import BATCH_KEYS
from ecgmoe_cli.signal.beats import heart_rate_bpm, rr_features
from ecgmoe_cli.signal.clean import clean, resample_ratio
from ecgmoe_cli.signal.leads import CANONICAL_LEADS, LeadMapping, canonicalize
from ecgmoe_cli.signal.quality import record_quality, window_quality
from ecgmoe_cli.signal.rpeaks import detect_rpeaks
from ecgmoe_cli.signal.spec import PreprocessSpec

CHUNK_S = 1800.0  # long records are processed in chunks of this many seconds
MARGIN_S = 10.0  # context on each side of a chunk (filter edges, detector warm-up)
MIN_DURATION_S = 1.0  # shorter records hold no full beat to analyse
DETECT_LEADS = 3  # R-peaks are searched in this many of the cleanest leads


@dataclass
class Prepared:
    """One record (or one chunk of a long one) as the model and the dataset need it."""

    path: str
    record: str
    fs_in: float
    duration_s: float
    leads_used: list[str]
    lead_warnings: list[str]
    signal: np.ndarray  # (nw, 12, W) float32 mV; masked leads are zero
    lead_mask: np.ndarray  # (nw, 12) bool
    n_valid: np.ndarray  # (nw,) int32
    rpeaks: np.ndarray  # (nw, K) int32, -1 = padding
    rr: np.ndarray  # (nw, K, 4) float32
    window_start_s: np.ndarray  # (nw,) float32
    heart_rate_bpm: float
    n_beats: int
    quality: float  # the record's (or block's) signal quality, signal/quality.py
    window_quality: np.ndarray  # (nw,) float32, each window's
    flags: list[str] = field(default_factory=list)
    first_window: int = 0  # index of signal[0] among the record's windows (prepare_chunks)
    record_rpeaks: np.ndarray = field(  # this block's R-peaks, samples at spec.fs from the start
        default_factory=lambda: np.zeros(0, np.int64))
    leads_present: list[str] = field(default_factory=list)  # in the file, flat or not
    mapping_warnings: list[str] = field(default_factory=list)  # canonicalize's alone


def prepare_record(path: str | Path, spec: PreprocessSpec, *,
                   lead_map: dict[str, str] | None = None, fs: float | None = None,
                   lead_names: list[str] | None = None) -> Prepared:
    """Read `path` and prepare it; EcgMoeError for an unreadable or unusable record."""
    from ecgmoe_cli.io.records.read import read_record

    return prepare_from_record(read_record(path, fs=fs, lead_names=lead_names), spec,
                               lead_map=lead_map)


def prepare_from_record(record: Record, spec: PreprocessSpec,
                        lead_map: dict[str, str] | None = None) -> Prepared:
    """Prepare an in-memory Record (all windows at once).

    A record where no lead is usable in any window (all flat, saturated or missing) raises
    EcgMoeError: there is nothing to learn from or predict on.
    """
    return join_blocks(list(prepare_chunks(record, spec, lead_map=lead_map)), spec)


def join_blocks(blocks: list[Prepared], spec: PreprocessSpec) -> Prepared:
    """One Prepared for a whole record from its `prepare_chunks` blocks, with heart_rate_bpm,
    n_beats, quality and flags over the whole record.

    Blocks whose window arrays were emptied (0 rows, once the model has seen them)
    join too: that is how `predict` keeps a 24 h record's summary without its samples. A record
    where no lead is usable in any window raises EcgMoeError: nothing to learn from or predict on.
    """
    if not any(c.lead_mask.any() for c in blocks):
        raise EcgMoeError("no usable ECG signal: every lead is flat, saturated or missing",
                          blocks[0].path if blocks else None)
    if len(blocks) == 1:
        return blocks[0]
    first = blocks[0]
    peaks = np.concatenate([c.record_rpeaks for c in blocks])
    cat = {k: np.concatenate([getattr(c, k) for c in blocks])
           for k in (*BATCH_KEYS, "window_start_s", "window_quality")}
    flags = sorted({f for c in blocks for f in c.flags})
    if peaks.size:
        flags = [f for f in flags if f != "no_beats"]
    present = present_leads(blocks)
    used, warnings = lead_usage(present, cat["lead_mask"], first.mapping_warnings)
    return Prepared(first.path, first.record, first.fs_in, first.duration_s, used,
                    warnings, cat["signal"], cat["lead_mask"], cat["n_valid"],
                    cat["rpeaks"], cat["rr"], cat["window_start_s"],
                    heart_rate_bpm=heart_rate_bpm(peaks, spec.fs), n_beats=int(peaks.size),
                    quality=record_quality(cat["window_quality"], cat["n_valid"]),
                    window_quality=cat["window_quality"], flags=flags,
                    first_window=first.first_window, record_rpeaks=peaks,
                    leads_present=present, mapping_warnings=first.mapping_warnings)


def present_leads(blocks: list[Prepared]) -> list[str]:
    """The leads the file holds (before any was found flat), in canonical order."""
    have = {lead for c in blocks for lead in c.leads_present}
    return [lead for lead in CANONICAL_LEADS if lead in have]


def lead_usage(present: list[str], lead_mask: np.ndarray, warnings: list[str]
               ) -> tuple[list[str], list[str]]:
    """`leads_used` (leads usable in at least one window) and `lead_warnings`: the mapping's
    warnings plus one for leads the file holds but that were flat, saturated or missing in
    every window (masked inside, so never listed as used)."""
    usable = lead_mask.any(axis=0) if lead_mask.size else np.zeros(len(CANONICAL_LEADS), bool)
    used = [lead for lead in present if usable[CANONICAL_LEADS.index(lead)]]
    masked = [lead for lead in present if lead not in used]
    if masked:
        warnings = [*warnings, f"lead{'s' if len(masked) > 1 else ''} {', '.join(masked)} "
                    "flat, saturated or missing throughout: not used"]
    return used, list(warnings)


def window_starts(n: int, spec: PreprocessSpec) -> np.ndarray:
    """Window start samples (at spec.fs) for a record of n samples: full windows every stride,
    plus a padded tail window when at least min_tail_s is left; always at least one."""
    w, s = spec.window_samples, max(round(spec.stride_s * spec.fs), 1)
    if n <= w:
        return np.zeros(1, np.int64)
    starts = np.arange((n - w) // s + 1, dtype=np.int64) * s
    nxt = starts[-1] + s
    if n - (starts[-1] + w) > 0 and n - nxt >= spec.min_tail_s * spec.fs:
        starts = np.append(starts, nxt)
    return starts


def prepare_chunks(record: Record, spec: PreprocessSpec, *, lead_map: dict[str, str] | None = None,
                   chunk_s: float = CHUNK_S) -> Iterator[Prepared]:
    """Yield the record's windows as Prepared blocks of about chunk_s seconds each.

    Each block's heart_rate_bpm/n_beats cover that block; `join_blocks` (used by
    `prepare_from_record`) recomputes them over the whole record.
    """
    x = record.signal
    if x.ndim != 2 or x.shape[1] == 0 or record.fs <= 0:
        raise EcgMoeError("record has no samples", record.path)
    if x.shape[1] < MIN_DURATION_S * record.fs:
        raise EcgMoeError(f"record lasts {x.shape[1] / record.fs:.3g} s; at least "
                          f"{MIN_DURATION_S:g} s is needed", record.path)
    mapping = canonicalize(record.lead_names, lead_map)
    rows = [i for i in mapping.source_index if i is not None]
    if not rows:
        names = ", ".join(record.lead_names) or "none"
        raise EcgMoeError(f"no ECG lead among the channels ({names}); name one with --lead-map",
                          record.path)
    present = np.array([i is not None for i in mapping.source_index])
    if not any(np.isfinite(x[r]).any() for r in rows):
        raise EcgMoeError("record holds no finite sample in its ECG leads", record.path)
    up, down = resample_ratio(record.fs, spec.fs)
    n_out = -(-x.shape[1] * up // down)
    starts = window_starts(n_out, spec)
    w = spec.window_samples
    align = up  # output offsets that map onto whole input samples
    chunk = max(int(chunk_s * spec.fs) // w, 1) * w
    chunk = -(-chunk // align) * align
    margin = -(-int(MARGIN_S * spec.fs) // align) * align
    c0 = 0
    while c0 < n_out:
        c1 = min(c0 + chunk, n_out)
        mine = starts[(starts >= c0) & (starts < c1)] if c1 < n_out else starts[starts >= c0]
        if mine.size:
            block = _prepare_span(record, spec, mapping, rows, present, mine, n_out,
                                  (up, down), margin, (c0, c1))
            block.first_window = int(np.searchsorted(starts, mine[0]))
            yield block
        c0 = c1


def _prepare_span(record: Record, spec: PreprocessSpec, mapping: LeadMapping, rows: list[int],
                  present: np.ndarray, starts: np.ndarray, n_out: int, ratio: tuple[int, int],
                  margin: int, core_span: tuple[int, int]) -> Prepared:
    """Clean the output span covering `starts` (plus margins) and cut its windows; beats in
    [core_span) count towards this block's heart rate and beat total."""
    up, down = ratio
    w, k = spec.window_samples, spec.max_beats
    lo = max(int(starts[0]) - margin, 0)
    hi = min(int(starts[-1]) + w + margin, n_out)
    i0, i1 = lo * down // up, min(-(-hi * down // up), record.signal.shape[1])
    y, gaps, stuck = clean(record.signal[rows, i0:i1], record.fs, spec)
    offset = lo  # y[:, j] is output sample lo + j

    nw = starts.size
    n_valid = np.minimum(w, n_out - starts).astype(np.int32)
    win = _windows(y, starts - offset, w, spec.stride_s * spec.fs)  # (L', nw, W), zero padded
    s0 = starts - offset
    gap_frac = _fraction(gaps, s0, n_valid)  # (L', nw)
    stuck_frac = _fraction(stuck, s0, n_valid)
    n = n_valid.astype(np.float64)
    mean = win.sum(axis=2, dtype=np.float64) / n
    std = np.sqrt(np.maximum(np.einsum("lwk,lwk->lw", win, win, dtype=np.float64) / n
                             - mean * mean, 0.0))
    ok = (gap_frac <= spec.nan_mask_frac) & (stuck_frac <= spec.saturation_frac) & \
        (std >= spec.flat_std_mv)  # (L', nw)

    cols = [mapping.source_index.index(src) for src in rows]
    signal = np.zeros((nw, len(CANONICAL_LEADS), w), np.float32)
    lead_mask = np.zeros((nw, len(CANONICAL_LEADS)), bool)
    lead_mask[:, cols] = ok.T
    signal[:, cols] = win.transpose(1, 0, 2)
    signal[~lead_mask] = 0.0

    good = _detector_leads(y, ok.any(axis=1))
    peaks = (detect_rpeaks(y[np.sort(good)], spec.fs) + offset if good.size
             else np.zeros(0, np.int64))
    wq = window_quality(y, ok, stuck_frac, s0, n_valid, peaks - offset, good, spec.fs)
    feats = rr_features(peaks, spec.fs)
    rpeaks = np.full((nw, k), -1, np.int32)
    rr = np.zeros((nw, k, 4), np.float32)
    a = np.searchsorted(peaks, starts)
    b = np.searchsorted(peaks, starts + n_valid)
    for i in range(nw):
        m = min(b[i] - a[i], k)
        rpeaks[i, :m] = peaks[a[i]:a[i] + m] - starts[i]
        rr[i, :m] = feats[a[i]:a[i] + m]
    core = peaks[(peaks >= core_span[0]) & (peaks < core_span[1])]
    flags = []
    if core.size == 0:
        flags.append("no_beats")
    if (n_valid < w).any():
        flags.append("padded")
    if gaps.any():
        flags.append("nan_gaps")
    if not np.isfinite(record.signal[rows, i0:i1]).all():
        flags.append("nan_repaired")
    if (lead_mask.sum(axis=0) < nw * present).any():
        flags.append("leads_masked")
    if any("used as lead II" in wmsg for wmsg in mapping.warnings):
        flags.append("lead_guessed")
    used, warnings = lead_usage(mapping.used, lead_mask, mapping.warnings)
    prepared = Prepared(
        path=record.path, record=record.name, fs_in=float(record.fs),
        duration_s=float(record.duration_s), leads_used=used,
        lead_warnings=warnings, signal=signal, lead_mask=lead_mask,
        n_valid=n_valid, rpeaks=rpeaks, rr=rr,
        window_start_s=(starts / spec.fs).astype(np.float32),
        heart_rate_bpm=heart_rate_bpm(core, spec.fs), n_beats=int(core.size),
        quality=record_quality(wq, n_valid), window_quality=wq.astype(np.float32), flags=flags,
        record_rpeaks=core, leads_present=mapping.used,
        mapping_warnings=list(mapping.warnings),
    )
    return prepared


def _detector_leads(y: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """Rows of the DETECT_LEADS usable leads where QRS complexes stand out most, the most
    first.

    Spikiness (largest slope over mean slope) favours leads with tall, sharp QRS and little
    noise; three such leads find the beats as well as twelve at a quarter of the cost.
    """
    rows = np.flatnonzero(usable)
    if rows.size == 0:
        return rows
    d = np.abs(np.diff(y[rows], axis=1))
    score = d.max(axis=1) / (d.mean(axis=1) + 1e-9)
    return rows[np.argsort(-score, kind="stable")][:DETECT_LEADS]


def _windows(y: np.ndarray, starts: np.ndarray, w: int, stride: float) -> np.ndarray:
    """(L, nw, W) windows of y starting at `starts`; samples past y's end are zero."""
    need = int(starts[-1]) + w
    if y.shape[1] < need:
        y = np.concatenate([y, np.zeros((y.shape[0], need - y.shape[1]), y.dtype)], axis=1)
    if starts.size == 1:
        return y[:, None, int(starts[0]):int(starts[0]) + w]
    if round(stride) == w and np.all(np.diff(starts) == w):  # back to back: a view
        return y[:, int(starts[0]):int(starts[0]) + starts.size * w].reshape(y.shape[0], -1, w)
    return y[:, starts[:, None] + np.arange(w)[None, :]]


def _fraction(mask: np.ndarray, starts: np.ndarray, n_valid: np.ndarray) -> np.ndarray:
    """(L, nw) fraction of each window's real samples where `mask` (L, n) is True."""
    if not mask.any():
        return np.zeros((mask.shape[0], starts.size))
    if starts.size == 1:  # one window (a 10 s record): no running sum needed
        s = int(min(starts[0], mask.shape[1]))
        return mask[:, s:s + int(n_valid[0])].sum(axis=1, keepdims=True) / max(int(n_valid[0]), 1)
    cs = np.zeros((mask.shape[0], mask.shape[1] + 1), np.int64)
    np.cumsum(mask, axis=1, out=cs[:, 1:])
    end = np.minimum(starts + n_valid, mask.shape[1])
    return (cs[:, end] - cs[:, np.minimum(starts, mask.shape[1])]) / np.maximum(n_valid, 1)
