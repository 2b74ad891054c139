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
from ecgmoe_cli.pipeline.predict.rows import RowContext
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


def record_beats(prep: Prepared, out: WindowOutputs, ctx: RowContext) -> RecordBeats | None:
    """Every window's beats with their class probabilities, each beat once (in AF episodes S's
    probability moved to N); None without a beat head."""
    if out.beat_probs is None:
        return None
    valid = prep.rpeaks >= 0  # (nw, K)
    starts = np.round(np.asarray(prep.window_start_s, np.float64) * ctx.fs).astype(np.int64)
    sample = (starts[:, None] + prep.rpeaks)[valid]
    probs = out.beat_probs[valid]
    af = af_windows(out, ctx)
    if af is not None and af.any():
        in_af = np.broadcast_to(af[:, None], valid.shape)[valid]
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
    task = next((t for t in ctx.tasks if t.name == "rhythm"), None)
    if task is None or "afib" not in task.labels:
        return None
    i = task.labels.index("afib")
    return af_episodes(out.probs["rhythm"][:, i], ctx.thresholds["rhythm"][i])


def af_burden(prep: Prepared, out: WindowOutputs, ctx: RowContext) -> float | None:
    """Fraction of the record's time in AF episodes, their edges taken to the beat; None
    without the rhythm task. Overlapping windows count each stretch once per window (stride <
    window: an estimate)."""
    af = af_windows(out, ctx)
    if af is None:
        return None
    seconds = np.asarray(prep.n_valid, np.float64) / ctx.fs
    if not seconds.sum() > 0:
        return None
    edges = 0.0 if not af.any() else episode_edge_seconds(
        beat_times(prep, ctx.fs), np.asarray(prep.window_start_s, np.float64), seconds, af)
    return float(min((seconds * af).sum() + edges, seconds.sum()) / seconds.sum())


def beat_times(prep: Prepared, fs: float) -> np.ndarray:
    """(n,) seconds from the record start of every window's beats, each once, in order."""
    valid = prep.rpeaks >= 0
    starts = np.round(np.asarray(prep.window_start_s, np.float64) * fs).astype(np.int64)
    return np.unique((starts[:, None] + prep.rpeaks)[valid]) / fs


def episode_edge_seconds(t: np.ndarray, start: np.ndarray, seconds: np.ndarray,
                         af: np.ndarray) -> float:
    """Seconds of irregular beats that carry each AF episode (a run of `af` windows) on into
    the window before it and the one after it, from the episode's edge until the first
    regular interval or a gap (t: beat times; start, seconds: the windows')."""
    if t.size < 3:
        return 0.0
    rr = np.diff(t)
    go = irregular_intervals(rr) & (rr <= GAP_X * median(rr))
    mid = (t[:-1] + t[1:]) / 2
    end = start + seconds
    total = 0.0
    edge = np.diff(np.r_[0, af.astype(np.int8), 0])
    for a, b in zip(np.flatnonzero(edge == 1), np.flatnonzero(edge == -1) - 1, strict=True):
        if a > 0:  # backwards from the episode's start, within window a - 1
            lo, k = start[a - 1], np.searchsorted(mid, start[a]) - 1
            while k >= 0 and go[k] and t[k] >= lo:
                total += min(t[k + 1], start[a]) - t[k]
                k -= 1
        if b + 1 < af.size:  # forwards from its end, within window b + 1
            hi, k = end[b + 1], np.searchsorted(mid, end[b], side="right")
            while k < rr.size and go[k] and t[k + 1] <= hi:
                total += t[k + 1] - max(t[k], end[b])
                k += 1
    return total


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


def holter_columns(prep: Prepared, out: WindowOutputs, ctx: RowContext,
                   beats: RecordBeats | None) -> dict[str, Any]:
    """The record row's Holter summary (null where the model gives no answer)."""
    cols: dict[str, Any] = {"af_burden": af_burden(prep, out, ctx)}
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
