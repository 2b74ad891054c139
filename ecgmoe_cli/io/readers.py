"""Record readers: WFDB (.hea + .dat/.mat), EDF/EDF+, CSV, NPY and hospital exports (DICOM ECG,
HL7 aECG, GE MUSE and Philips XML: `io/dicom_ecg.py`, `aecg.py`, `muse.py`, `philips.py`), all
into a Record in mV.

`read_record` is the only entry point. Every failure becomes an EcgMoeError naming the file and
the cause, so one broken file in a folder of thousands costs one error row, not the run.
"""

from __future__ import annotations

import csv
import errno
import io
import os
from pathlib import Path

import numpy as np

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.discover import EXPORTS, RECORD_SUFFIXES
from ecgmoe_cli.io.record import Record
from ecgmoe_cli.io.sniff import DICOM_SUFFIXES, XML_ROOTS, has_dicom_marker
from ecgmoe_cli.io.wfdb_fast import (
    Header,
    check_mat_v4,
    checked_file,
    data_file,
    fast_path_ok,
    parse_header,
    read_fast,
    unit_scale,
)

_MAX_FS = 100_000.0
MIN_FS = 10.0  # below this a "rate" stretches 2,500 samples over hours (--fs 0.001 hung predict)
_MAX_CSV_LINE = 1 << 16  # a CSV row holds one sample per lead: 64 KiB is thousands of columns
_TIME_COLUMNS = {"time", "t", "time_s", "seconds", "sample", "index", "timestamp"}


def read_record(path: str | Path, *, fs: float | None = None,
                lead_names: list[str] | None = None) -> Record:
    """Read one record file. `fs` and `lead_names` are needed for CSV/NPY (a CSV header row
    gives the names); in a record that names its own leads, `lead_names` (`--leads`) keeps
    only those leads, as `evaluate --leads` does."""
    p = Path(path)
    _refuse_too_long(p)
    if p.suffix == "" and p.with_suffix(".hea").is_file():
        p = p.with_suffix(".hea")  # a WFDB record named without its extension
    suffix = p.suffix.lower()
    try:
        if suffix == ".hea":
            rec = _read_wfdb(p)
        elif suffix in (".edf", ".bdf"):
            rec = _read_edf(p)
        elif suffix == ".csv":
            rec = _read_csv(p, fs, lead_names)
        elif suffix == ".npy":
            rec = _read_npy(p, fs, lead_names)
        elif suffix == ".xml":
            rec = _read_xml(p)
        elif suffix in DICOM_SUFFIXES or has_dicom_marker(p):
            from ecgmoe_cli.io.dicom_ecg import read_dicom_ecg

            rec = read_dicom_ecg(p)
        else:
            raise EcgMoeError(f"unknown record type {p.suffix!r} (expected "
                              f"{', '.join(RECORD_SUFFIXES)}, {EXPORTS})", p)
    except EcgMoeError:
        raise
    except PermissionError:
        raise EcgMoeError("permission denied", p) from None
    except FileNotFoundError:
        raise EcgMoeError("no such file", p) from None
    except MemoryError:
        raise EcgMoeError("record too large to read into memory", p) from None
    except Exception as e:  # noqa: BLE001 (third-party readers raise anything on a bad file)
        msg = " ".join(str(e).split())[:200] or type(e).__name__
        raise EcgMoeError(f"unreadable record ({type(e).__name__}: {msg})", p) from None
    rec = _checked(rec, p)
    if lead_names and not rec.meta.get("named_by_leads"):  # the file named its own leads
        rec = keep_leads(rec, lead_names)
    return rec


def _refuse_too_long(p: Path) -> None:
    """A path the system cannot open (ENAMETOOLONG) is said as such, with its length."""
    try:
        os.stat(p)
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            raise EcgMoeError(f"path of {len(str(p))} characters is too long for the system "
                              f"to open ({e.strerror}): move the record to a shorter path; "
                              "nothing inside it was read", str(p)[:160] + "...") from None


def keep_leads(rec: Record, wanted: list[str]) -> Record:
    """`rec` with only the channels that feed one of the `wanted` leads (canonical names or
    aliases); none of them in the record is an error naming what it has."""
    from ecgmoe_cli.signal.leads import CANONICAL_LEADS, canonicalize, lead_of

    keep = {lead_of(n) or n for n in wanted}
    mapping = canonicalize(rec.lead_names)
    rows = sorted(i for lead, i in zip(CANONICAL_LEADS, mapping.source_index)
                  if i is not None and lead in keep)
    if not rows:
        raise EcgMoeError(f"none of the leads --leads keeps ({', '.join(wanted)}) is in the "
                          f"record (it has {', '.join(mapping.used) or 'no ECG lead'})", rec.path)
    rec.signal = rec.signal[rows]
    rec.lead_names = [rec.lead_names[i] for i in rows]
    return rec


def _checked(rec: Record, p: Path) -> Record:
    """Refuse records no later step can use (no samples, absurd rate, names/rows mismatch)."""
    if not plausible_fs(rec.fs):
        raise EcgMoeError(f"sampling rate {rec.fs} Hz is not plausible", p)
    if rec.signal.ndim != 2 or rec.signal.shape[0] == 0 or rec.signal.shape[1] == 0:
        raise EcgMoeError("record has no samples", p)
    if len(rec.lead_names) != rec.signal.shape[0]:
        raise EcgMoeError(f"{len(rec.lead_names)} lead names for {rec.signal.shape[0]} signals", p)
    if rec.signal.dtype != np.float32:
        rec.signal = rec.signal.astype(np.float32)
    return rec


def _read_xml(p: Path) -> Record:
    """An XML export, by its root element."""
    from ecgmoe_cli.io.xml_safe import root_name

    root = root_name(p)
    if root == "AnnotatedECG":
        from ecgmoe_cli.io.aecg import read_aecg

        return read_aecg(p)
    if root == "RestingECG":
        from ecgmoe_cli.io.muse import read_muse

        return read_muse(p)
    if root == "restingecgdata":
        from ecgmoe_cli.io.philips import read_philips

        return read_philips(p)
    raise EcgMoeError(f"XML root <{root}> is not an ECG export (expected "
                      f"{', '.join(f'<{r}>' for r in XML_ROOTS)})", p)


def read_header(path: str | Path) -> Record:
    """A Record without samples (signal (leads, 0)) from a WFDB header: what label sources need."""
    p = Path(path)
    h = parse_header(p)
    names = [c.name or f"ch{i}" for i, c in enumerate(h.channels)]
    return Record(str(p), p.stem, np.zeros((len(names), 0), np.float32), h.fs, names,
                  h.comments, {"format": "wfdb"})


def _read_wfdb(p: Path) -> Record:
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


def _read_edf(p: Path) -> Record:
    """EDF/EDF+ via pyedflib; keeps the signals at the ECG (else the most common) rate."""
    import pyedflib

    from ecgmoe_cli.signal.leads import is_ecg_name

    _check_edf_size(p)  # pyedflib would print its size complaint on stdout, from C
    f = pyedflib.EdfReader(str(p))
    try:
        labels = [s.strip() for s in f.getSignalLabels()]
        rates = [float(r) for r in f.getSampleFrequencies()]
        if not labels:
            raise EcgMoeError("EDF file has no signals", p)
        ecg_rates = [r for r, n in zip(rates, labels) if is_ecg_name(n)]
        pool = ecg_rates or rates
        fs = max(set(pool), key=pool.count)
        keep = [i for i, r in enumerate(rates) if r == fs]
        rows = []
        for i in keep:
            scale = unit_scale(f.getPhysicalDimension(i)) or 1.0
            rows.append(f.readSignal(i).astype(np.float32) * np.float32(scale))
        n = min(len(r) for r in rows)
        sig = np.stack([r[:n] for r in rows])
        dropped = [labels[i] for i in range(len(labels)) if i not in keep]
        meta: dict[str, object] = {"format": "edf", "dropped_other_rate": dropped,
                "units": [f.getPhysicalDimension(i) for i in keep]}
        return Record(str(p), p.stem, sig, fs, [labels[i] for i in keep], [], meta)
    finally:
        f.close()


def _check_edf_size(p: Path) -> None:
    """Refuse an EDF/BDF whose size is not what its header declares (header + records).

    Fields that do not parse are left to pyedflib, which names them.
    """
    with open(p, "rb") as fh:  # a missing or unreadable file gets its plain cause here
        head = fh.read(256)
        size = os.fstat(fh.fileno()).st_size
        if len(head) < 256:
            return
        try:
            n_records, ns = int(head[236:244]), int(head[252:256])
        except ValueError:
            return
        if n_records < 0 or not 0 < ns <= 4096:
            return  # -1 records: still being recorded; pyedflib judges the rest
        fh.seek(256 + ns * 216)
        try:
            per_record = sum(int(fh.read(8)) for _ in range(ns))
        except ValueError:
            return
    width = 3 if head[:1] == b"\xff" else 2  # BDF stores 24-bit samples
    expected = 256 * (ns + 1) + n_records * per_record * width
    if size < expected:
        raise EcgMoeError(f"truncated EDF: {size} bytes, the header declares {expected}", p)
    if size > expected:
        raise EcgMoeError(f"EDF holds {size} bytes, more than the {expected} its header "
                          "declares", p)


def _need(p: Path, fs: float | None, names: list[str] | None, what: str) -> float:
    if fs is None:
        raise EcgMoeError(f"{what} files carry no sampling rate: pass --fs (and --leads)", p)
    if not plausible_fs(fs):
        raise EcgMoeError(f"sampling rate {fs} Hz is not plausible", p)
    return float(fs)


def plausible_fs(fs: float) -> bool:
    """A sampling rate an ECG can have: finite, in [MIN_FS, 100 kHz]."""
    return bool(np.isfinite(fs)) and MIN_FS <= fs <= _MAX_FS


def check_fs_option(fs: float | None) -> None:
    """--fs refused before any work (not once per record, after the records are listed)."""
    if fs is not None and not plausible_fs(fs):
        raise EcgMoeError(f"--fs {fs} Hz is not a plausible ECG sampling rate (use "
                          f"{MIN_FS:g}-{_MAX_FS:g} Hz)")


def _read_csv(p: Path, fs: float | None, lead_names: list[str] | None) -> Record:
    """Rows are samples, columns leads; a non-numeric first row names the leads."""
    fs_ = _need(p, fs, lead_names, "CSV")
    _check_csv_lines(p)
    text = p.read_bytes().decode("utf-8", errors="strict")
    if not text.strip():
        raise EcgMoeError("empty file", p)
    first = text.split("\n", 1)[0]
    dialect = ";" if first.count(";") > first.count(",") else ("\t" if "\t" in first else ",")
    head = next(csv.reader(io.StringIO(first), delimiter=dialect), [])
    header = [h.strip() for h in head]
    has_header = any(not _is_number(h) for h in header)
    body = text.split("\n", 1)[1] if has_header and "\n" in text else ("" if has_header else text)
    if not body.strip():
        raise EcgMoeError("CSV has a header row but no samples", p)
    try:
        data = np.loadtxt(io.StringIO(body), delimiter=dialect, dtype=np.float32, ndmin=2)
    except ValueError as e:
        raise EcgMoeError(f"CSV holds non-numeric samples ({e})", p) from None
    cols = list(range(data.shape[1]))
    if has_header:
        if len(header) != data.shape[1]:
            raise EcgMoeError(f"CSV header has {len(header)} names for {data.shape[1]} columns", p)
        cols = [i for i in cols if header[i].lower() not in _TIME_COLUMNS]
    names = [header[i] for i in cols] if has_header else lead_names
    if names is None:
        raise EcgMoeError("CSV has no header row naming the leads: pass --leads", p)
    if len(names) != len(cols):
        raise EcgMoeError(f"{len(names)} lead names for {len(cols)} CSV columns", p)
    sig = np.ascontiguousarray(data[:, cols].T)
    return Record(str(p), p.stem, sig, fs_, list(names), [],
                  {"format": "csv", "named_by_leads": not has_header})


def _check_csv_lines(p: Path) -> None:
    """Refuse a CSV with a line over _MAX_CSV_LINE bytes before parsing it: a 400 MB file on
    one line cost 11 GB in the parser. One pass in 1 MiB blocks, nothing kept."""
    run = 0  # bytes since the last newline
    with open(p, "rb") as f:
        while block := f.read(1 << 20):
            nl = np.flatnonzero(np.frombuffer(block, np.uint8) == 10)
            if nl.size == 0:
                run += len(block)
            else:
                longest = max(run + int(nl[0]), int(np.diff(nl).max(initial=1)) - 1)
                if longest > _MAX_CSV_LINE:
                    run = longest
                    break
                run = len(block) - int(nl[-1]) - 1
            if run > _MAX_CSV_LINE:
                break
    if run > _MAX_CSV_LINE:
        raise EcgMoeError(f"CSV has a line longer than {_MAX_CSV_LINE} bytes (a row holds one "
                          "sample per lead): not a record", p)


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return s.strip() == ""
    return True


def _read_npy(p: Path, fs: float | None, lead_names: list[str] | None) -> Record:
    """A 2-D array, (leads, n) or (n, leads): the short axis is the leads."""
    fs_ = _need(p, fs, lead_names, "NPY")
    if not lead_names:
        raise EcgMoeError("NPY files carry no lead names: pass --leads", p)
    try:
        arr = np.load(p, allow_pickle=False)
    except ValueError as e:
        raise EcgMoeError(f"not a plain numeric .npy array ({e})", p) from None
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
        raise EcgMoeError(f"expected a 2-D numeric array, got {arr.dtype} {arr.shape}", p)
    if arr.shape[0] != len(lead_names) and arr.shape[1] == len(lead_names):
        arr = arr.T
    if arr.shape[0] != len(lead_names):
        raise EcgMoeError(f"{len(lead_names)} lead names for an array of shape {arr.shape}", p)
    return Record(str(p), p.stem, np.ascontiguousarray(arr, dtype=np.float32), fs_,
                  list(lead_names), [], {"format": "npy", "named_by_leads": True})
