"""WFDB records (.hea + .dat/.mat, multi-segment too): the fast NumPy path where it applies,
else wfdb itself; every file the header names is checked before anything is opened."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.records.record import Record
from ecgmoe_cli.io.records.wfdb_fast import (
    Header,
    check_mat_v4,
    checked_file,
    data_file,
    fast_path_ok,
    parse_header,
    read_fast,
    unit_scale,
)


def read_wfdb(p: Path) -> Record:
    """A WFDB record from its header path, in mV."""
    h = parse_header(p)
    for name in sorted({c.file for c in h.channels} - {"~"} | {s + ".hea" for s in h.segments}):
        checked_file(p, name)  # refuse '../../etc/passwd', a pipe, a link out before any open
    check_mat_v4(p, h)
    if h.channels and not h.multi_segment and (h.n_samples == 0):
        raise EcgMoeError("record has no samples (header says 0)", p)
    if fast_path_ok(h):
        signal = read_fast(p, h)
        names = [c.name or f"ch{i}" for i, c in enumerate(h.channels)]
        units = [c.units for c in h.channels]
        return Record(str(p), p.stem, signal, h.fs, names, h.comments,
                      {"format": "wfdb", "storage": h.channels[0].fmt, "units": units})
    return _read_wfdb_lib(p, h)


def _missing_signal_file(p: Path, h: Header) -> str | None:
    """The first signal file `h` names that is not in the folder of `p` (None: all there)."""
    return next((c.file for c in h.channels
                 if c.file != "~" and not data_file(p, c.file).is_file()), None)


def _read_wfdb_lib(p: Path, h: Header) -> Record:
    """Everything the fast path does not cover, through wfdb (the reference reader)."""
    import wfdb

    if missing := _missing_signal_file(p, h):
        raise EcgMoeError(f"signal file {missing!r} is missing", p)
    for seg in h.segments:  # each segment is a record of its own: the same checks
        seg_header = data_file(p, seg + ".hea")
        if not seg_header.is_file():
            raise EcgMoeError(f"segment header {seg + '.hea'!r} is missing", p)
        if missing := _missing_signal_file(p, parse_header(seg_header)):
            raise EcgMoeError(f"signal file {missing!r} of segment {seg!r} is missing", p)
    spf = [c.spf for c in h.channels]
    # mixed rates: average every channel down to the frame rate; multi-segment: wfdb joins
    # the segments (and the layout's channels, NaN in gaps) only as frames
    smooth = h.multi_segment or len(set(spf)) > 1
    rec = wfdb.rdrecord(str(p.with_suffix("")), physical=True, smooth_frames=smooth)
    if smooth or rec.p_signal is not None:
        sig = np.asarray(rec.p_signal, dtype=np.float32).T
        fs = float(rec.fs)
    else:
        sig = np.stack([np.asarray(s, dtype=np.float32) for s in rec.e_p_signal])
        fs = float(rec.fs) * spf[0]
    units = list(rec.units or ["mV"] * sig.shape[0])
    scale = np.array([unit_scale(u or "mV") or 1.0 for u in units], np.float32)[:, None]
    names = [n or f"ch{i}" for i, n in enumerate(rec.sig_name or [])]
    return Record(str(p), p.stem, sig * scale, fs, names, list(rec.comments or h.comments),
                  {"format": "wfdb", "storage": ",".join(sorted(set(map(str, rec.fmt or [])))),
                   "units": units})
