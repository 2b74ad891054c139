"""Per-beat results of `predict`: the beat table (`--beats`) and the Holter summary of each record.

A record's beats are the R-peaks of its windows, each classified once by the beat head (with
overlapping windows, by the window where it lies most central). In an AF episode no beat is
called S: prematurity means an early beat against a regular rhythm, which AF does not have
(MIT-BIH and AAMI label the beats of AF N), so there S's probability is N's. The summary
counts them: `pvc_count` (V), `pac_count` (S), `pvc_burden` = V / classified beats, and
`af_burden` = the fraction of the record's time in AF episodes: windows the rhythm task calls
AF (afib at or over its calibrated threshold), each grown through its neighbours while they
stay at or over EPISODE_FRACTION of it, and a single window between two episodes joined to
them; then, at beat resolution, each episode's edge goes on into the window beside it for as
long as the beats stay irregular (`signal.beats.irregular_intervals`): a paroxysm that starts
or ends inside a window counts its own seconds there, not none. Beats past the last window (a
tail under min_tail_s) are not classified.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ecgmoe_cli.io.files import safe_text
from ecgmoe_cli.model.inference import WindowOutputs
from ecgmoe_cli.pipeline.predict.rows import RowContext, rhythm_afib
from ecgmoe_cli.pipeline.predict.schema import beat_schema
from ecgmoe_cli.pipeline.prepare import Prepared
from ecgmoe_cli.signal.arrays import median
from ecgmoe_cli.signal.beats import GAP_X, irregular_intervals
from ecgmoe_cli.tasks import AAMI_CLASSES

_N, _S, _V = (AAMI_CLASSES.index(c) for c in "NSV")
# Hysteresis, as episode detectors use: the threshold is calibrated to call AF in a window
# seen alone; the windows around one called AF are far likelier AF (episodes last minutes),
# so the episode goes on while they keep half of it. A record with no window at the threshold
# has no episode.
EPISODE_FRACTION = 0.5


@dataclass
class RecordBeats:
    """A record's classified beats in time order."""

    sample: np.ndarray  # (n,) int64 R-peak, samples at the model's rate from the record start
    probs: np.ndarray  # (n, 5) float32 AAMI class probabilities

    @property
    def classes(self) -> np.ndarray:
        return self.probs.argmax(1)


def record_beats(prep: Prepared, out: WindowOutputs, ctx: RowContext,
                 spans: np.ndarray | None) -> RecordBeats | None:
    """Every window's beats with their class probabilities, each beat once (inside the AF
    `spans`, `af_spans`, S's probability moved to N); None without a beat head."""
    if out.beat_probs is None:
        return None
    valid = prep.rpeaks >= 0  # (nw, K)
    sample = window_samples(prep, ctx.fs)
    probs = out.beat_probs[valid]
    if spans is not None and spans.size:
        in_af = in_spans(sample / ctx.fs, spans)
        probs = probs.copy()
        probs[in_af, _N] += probs[in_af, _S]
        probs[in_af, _S] = 0.0
    off_centre = np.abs(prep.rpeaks - np.asarray(prep.n_valid)[:, None] / 2)[valid]
    order = np.lexsort((off_centre, sample))  # by time; a repeated beat's most central first
    sample, probs = sample[order], probs[order]
    first = np.r_[True, np.diff(sample) > 0] if sample.size else np.zeros(0, bool)
    return RecordBeats(sample[first], probs[first])


def af_windows(out: WindowOutputs, ctx: RowContext) -> np.ndarray | None:
    """(nw,) bool: the windows in AF episodes (`af_episodes`); None without the rhythm task."""
    afib = rhythm_afib(ctx.tasks)
    if afib is None:
        return None
    name, i = afib
    return af_episodes(out.probs[name][:, i], ctx.thresholds[name][i])


def af_spans(prep: Prepared, out: WindowOutputs, ctx: RowContext) -> np.ndarray | None:
    """(m, 2) [start, end) seconds of the record's AF episodes (`af_windows`), each edge
    carried on to the beat into the window beside it (`episode_edges`), in time order; None
    without the rhythm task."""
    af = af_windows(out, ctx)
    if af is None:
        return None
    start = np.asarray(prep.window_start_s, np.float64)
    end = start + np.asarray(prep.n_valid, np.float64) / ctx.fs
    if not af.any():
        return np.zeros((0, 2))
    return episode_edges(beat_times(prep, ctx.fs), start, end, af)


def af_burden(prep: Prepared, ctx: RowContext, spans: np.ndarray | None) -> float | None:
    """Fraction of the record's time (its windows' union) in the AF `spans`; None without
    them (no rhythm task)."""
    if spans is None:
        return None
    start = np.asarray(prep.window_start_s, np.float64)
    windows = merged(np.stack([start, start + np.asarray(prep.n_valid) / ctx.fs], 1))
    covered = float(np.diff(windows, axis=1).sum())
    af = float(np.diff(merged(spans), axis=1).sum())
    return min(af / covered, 1.0) if covered > 0 else None


def window_samples(prep: Prepared, fs: float) -> np.ndarray:
    """The samples from the record start (at rate fs) of every window's valid beats, window by
    window: a beat in two overlapping windows appears twice."""
    starts = np.round(np.asarray(prep.window_start_s, np.float64) * fs).astype(np.int64)
    return (starts[:, None] + prep.rpeaks)[prep.rpeaks >= 0]


def beat_times(prep: Prepared, fs: float) -> np.ndarray:
    """(n,) seconds from the record start of every window's beats, each once, in order."""
    return np.unique(window_samples(prep, fs)) / fs


def episode_edges(t: np.ndarray, start: np.ndarray, end: np.ndarray, af: np.ndarray
                  ) -> np.ndarray:
    """(m, 2) seconds of each run of `af` windows, its start moved back through the window
    before it and its end on through the window after it while the beats' intervals stay
    irregular (to the first regular interval or gap; t: beat times in order)."""
    edge = np.diff(np.r_[0, af.astype(np.int8), 0])
    runs = list(zip(np.flatnonzero(edge == 1), np.flatnonzero(edge == -1) - 1, strict=True))
    spans = np.array([[start[a], end[a:b + 1].max()] for a, b in runs],
                     np.float64).reshape(-1, 2)
    if t.size < 3:
        return spans
    rr = np.diff(t)
    go = irregular_intervals(rr) & (rr <= GAP_X * median(rr))
    mid = (t[:-1] + t[1:]) / 2
    for row, (a, b) in zip(spans, runs, strict=True):
        if a > 0:  # back from the episode's start, within window a - 1
            k = np.searchsorted(mid, row[0]) - 1
            while k >= 0 and go[k] and t[k] >= start[a - 1]:
                row[0] = min(row[0], t[k])
                k -= 1
        if b + 1 < af.size:  # on from its end, within window b + 1
            k = np.searchsorted(mid, row[1], side="right")
            while k < rr.size and go[k] and t[k + 1] <= end[b + 1]:
                row[1] = max(row[1], t[k + 1])
                k += 1
    return spans


def merged(spans: np.ndarray) -> np.ndarray:
    """(m, 2) [start, end) spans -> their union as disjoint spans in time order."""
    out: list[list[float]] = []
    for lo, hi in spans[np.argsort(spans[:, 0], kind="stable")] if len(spans) else []:
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return np.array(out, np.float64).reshape(-1, 2)


def in_spans(t: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """(n,) bool: the times inside any of the (m, 2) [start, end) spans."""
    u = merged(spans)
    i = np.searchsorted(u[:, 0], t, side="right") - 1
    return (i >= 0) & (t < u[np.maximum(i, 0), 1]) if len(u) else np.zeros(t.size, bool)


def af_episodes(p: np.ndarray, threshold: float) -> np.ndarray:
    """(nw,) bool: windows in a run at or over EPISODE_FRACTION x threshold that holds one at
    or over the threshold, and single windows between two such (p: the windows' AF
    probability in time order)."""
    low = p >= EPISODE_FRACTION * threshold
    run = np.cumsum(~low)  # windows of one run under `low` share a number
    called = np.zeros(run[-1] + 1 if run.size else 0, bool)
    called[run[low & (p >= threshold)]] = True
    episodes = low & called[run]
    # 10 s of noise or a regular-looking stretch does not end an episode (Holter episode
    # detectors merge across short gaps); two such windows do
    episodes[1:-1] |= episodes[:-2] & episodes[2:]
    return episodes


def holter_columns(prep: Prepared, ctx: RowContext, beats: RecordBeats | None,
                   spans: np.ndarray | None) -> dict[str, Any]:
    """The record row's Holter summary (null where the model gives no answer)."""
    cols: dict[str, Any] = {"af_burden": af_burden(prep, ctx, spans)}
    if beats is not None:
        cls = beats.classes
        n, v = int(cls.size), int((cls == _V).sum())
        cols.update(n_classified=n, pvc_count=v, pac_count=int((cls == _S).sum()),
                    pvc_burden=v / n if n else None)
    return cols


def beat_table(prep: Prepared, beats: RecordBeats, fs: float, stamp: str) -> pa.Table:
    """One row per beat (`--beats`): time, sample at the file's own rate, RR before and after
    (null at the record's ends), class and its probability, and the record row's
    `source_stamp` (for --resume)."""
    n = beats.sample.size
    t = beats.sample / fs
    rr = np.diff(t) * 1000.0
    edge = np.ones(1, bool)
    cls = beats.classes
    names = np.array(AAMI_CLASSES)[cls]
    columns = {
        "path": pa.array([safe_text(str(prep.path))] * n, pa.string()),
        "record": pa.array([safe_text(str(prep.record))] * n, pa.string()),
        "time_s": pa.array(t, pa.float64()),
        "sample": pa.array(np.round(t * float(prep.fs_in)).astype(np.int64), pa.int64()),
        "rr_pre_ms": pa.array(np.r_[np.nan, rr].astype(np.float32)[:n], pa.float32(),
                              mask=np.r_[edge, np.zeros(max(n - 1, 0), bool)][:n]),
        "rr_post_ms": pa.array(np.r_[rr, np.nan].astype(np.float32)[:n], pa.float32(),
                               mask=np.r_[np.zeros(max(n - 1, 0), bool), edge][:n]),
        "beat_class": pa.array(names.tolist(), pa.string()),
        "beat_prob": pa.array(beats.probs[np.arange(n), cls].astype(np.float32), pa.float32()),
        "source_stamp": pa.array([stamp] * n, pa.string()),
    }
    schema = beat_schema()
    return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)
