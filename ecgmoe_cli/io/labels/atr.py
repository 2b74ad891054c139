"""Per-window labels from a WFDB `.atr` annotation file beside a long record.

Reference beats give the window's mean RR (ms). Rhythm notes (`(AFIB`, `(N`, ...: the aux
text of rhythm-change annotations) give the window's rhythm when one rhythm covers at least
half of it. Inside normal rhythm the class is refined from the beats: any PVC -> pvc, else
any supraventricular premature beat -> pac, else the mean rate (>100 sinus_tachy, <60
sinus_brady). AF with a mean rate over 100 bpm is afib_rvr. Notes that are not rhythm
changes (CPSC 2021 writes "None" on ordinary beats) are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.labels.codes import class_index
from ecgmoe_cli.io.records.record import Record

BEAT_SYMBOLS = frozenset("NLRBAaJSVrFejnE/fQ?")
PVC_SYMBOLS = frozenset("V")
PAC_SYMBOLS = frozenset("AaJS")
# MIT-BIH beat symbol -> AAMI EC57 class (N, S, V, F, Q); paced and unclassifiable beats are Q
AAMI_OF_SYMBOL = {**dict.fromkeys("NLRej", "N"), **dict.fromkeys(PAC_SYMBOLS, "S"),
                  **dict.fromkeys("VE", "V"), "F": "F", **dict.fromkeys("/fQ?", "Q")}
BEAT_MATCH_S = 0.15  # a detected beat within this of an annotated one is that beat (EC57)
# MIT-BIH rhythm note -> (rhythm labels, arrhythmia class; "" = refine from beats)
RHYTHMS: dict[str, tuple[tuple[str, ...], str]] = {
    "N": ((), ""), "PREX": ((), ""), "AFIB": (("afib",), "afib"), "AFL": (("afib",), "afib"),
    "SBR": (("brady",), "sinus_brady"), "SVTA": (("tachy",), "other"),
    "B": (("irregular",), "pvc"), "T": (("irregular",), "pvc"), "AB": (("irregular",), "pac"),
    "P": ((), "paced"), "VT": ((), "other"), "VFL": ((), "other"), "IVR": ((), "other"),
    "NOD": ((), "other"), "BII": ((), "other"),
}
RHYTHM_LABELS = ("afib", "tachy", "brady", "irregular")


@dataclass
class Annotations:
    """Beat samples/symbols and rhythm segments of one record, in seconds."""

    beat_t: np.ndarray  # (n,) float64 seconds
    beat_sym: np.ndarray  # (n,) str
    seg_start: np.ndarray  # (m,) float64 seconds: rhythm change times
    seg_rhythm: list[str]  # (m,) rhythm names without "("


def read_atr(record: Record) -> Annotations | None:
    """The record's `.atr` annotations, or None when there is no such file."""
    base = Path(record.path).with_suffix("")
    if not base.with_suffix(".atr").is_file():
        return None
    import wfdb

    try:
        ann = wfdb.rdann(str(base), "atr")
    except (OSError, ValueError, IndexError, KeyError, TypeError) as e:  # wfdb varies
        raise EcgMoeError(f"cannot read beat annotations: {e}", base.with_suffix(".atr")) from None
    fs = float(ann.fs or record.fs)
    t = np.asarray(ann.sample, np.float64) / fs
    sym = np.asarray(ann.symbol, dtype=object)
    notes = [(n or "").replace("\x00", "").strip() for n in (ann.aux_note or [""] * len(t))]
    rhythm = [(i, n[1:]) for i, n in enumerate(notes) if n.startswith("(") and len(n) > 1]
    is_beat = np.array([s in BEAT_SYMBOLS for s in sym], bool)
    return Annotations(t[is_beat], sym[is_beat].astype(str),
                       np.array([t[i] for i, _ in rhythm], np.float64), [r for _, r in rhythm])


def aami_labels(ann: Annotations, times_s: np.ndarray, tol_s: float = BEAT_MATCH_S
                ) -> np.ndarray:
    """The AAMI class of the annotated beat nearest each detected beat time, or "" when none
    lies within tol_s (a false detection: nothing to learn from or score)."""
    t = np.asarray(times_s, np.float64)
    out = np.full(t.shape, "", dtype="<U1")
    if ann.beat_t.size == 0 or t.size == 0:
        return out
    j = np.clip(np.searchsorted(ann.beat_t, t), 1, ann.beat_t.size - 1)
    j = np.where(np.abs(ann.beat_t[j - 1] - t) <= np.abs(ann.beat_t[j] - t), j - 1, j)
    j = np.where(ann.beat_t.size == 1, 0, j)
    near = np.abs(ann.beat_t[j] - t) <= tol_s
    out[near] = [AAMI_OF_SYMBOL.get(s, "") for s in ann.beat_sym[j[near]]]
    return out


def in_af(ann: Annotations, times_s: np.ndarray) -> np.ndarray:
    """(n,) bool: each time lies in a rhythm segment annotated atrial fibrillation or flutter."""
    t = np.asarray(times_s, np.float64)
    seg = np.searchsorted(ann.seg_start, t, side="right") - 1
    af = np.array([_is_af(name) for name in ann.seg_rhythm] + [False], bool)
    return af[np.where(seg >= 0, seg, -1)]  # before the first rhythm note: not AF


def _is_af(rhythm: str) -> bool:
    return RHYTHMS.get(rhythm, ((), ""))[1] == "afib"


def af_seconds(ann: Annotations, duration_s: float) -> float:
    """Seconds of the record annotated as atrial fibrillation or flutter."""
    bounds = np.r_[ann.seg_start, duration_s]
    return float(sum(max(min(bounds[i + 1], duration_s) - bounds[i], 0.0)
                     for i, name in enumerate(ann.seg_rhythm) if _is_af(name)))


def _dominant_rhythm(ann: Annotations, start: float, end: float) -> str | None:
    """The rhythm covering at least half of [start, end), or None."""
    if not ann.seg_rhythm:
        return None
    cover: dict[str, float] = {}
    bounds = np.r_[ann.seg_start, np.inf]
    for i, name in enumerate(ann.seg_rhythm):
        overlap = min(end, bounds[i + 1]) - max(start, bounds[i])
        if overlap > 0:
            cover[name] = cover.get(name, 0.0) + overlap
    if not cover:
        return None
    name, seconds = max(cover.items(), key=lambda kv: kv[1])
    return name if seconds >= 0.5 * (end - start) else None


def window_targets(ann: Annotations, start_s: float, dur_s: float) -> dict[str, float]:
    """y_rr_interval and (when a rhythm dominates) rhythm labels and y_arrhythmia."""
    end = start_s + dur_s
    inside = (ann.beat_t >= start_s) & (ann.beat_t < end)
    t, sym = ann.beat_t[inside], ann.beat_sym[inside]
    out: dict[str, float] = {}
    rr_ms = float(np.mean(np.diff(t))) * 1000.0 if len(t) >= 2 else float("nan")
    if np.isfinite(rr_ms):
        out["y_rr_interval"] = rr_ms
    name = _dominant_rhythm(ann, start_s, end)
    if name is None or name not in RHYTHMS:
        return out
    named, cls = RHYTHMS[name]
    labels = set(named)
    hr = 60000.0 / rr_ms if np.isfinite(rr_ms) else float("nan")
    if cls == "":
        cls = ("pvc" if any(s in PVC_SYMBOLS for s in sym)
               else "pac" if any(s in PAC_SYMBOLS for s in sym)
               else "sinus_tachy" if hr > 100 else "sinus_brady" if hr < 60 else "sinus")
        labels |= {"tachy"} if hr > 100 else {"brady"} if hr < 60 else set()
    elif cls == "afib" and hr > 100:
        cls = "afib_rvr"
    for lb in RHYTHM_LABELS:
        out[f"y_rhythm__{lb}"] = float(lb in labels)
    out["y_arrhythmia"] = class_index(cls)
    return out
