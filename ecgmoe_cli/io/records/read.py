"""Record readers: WFDB (.hea + .dat/.mat), EDF/EDF+, CSV, NPY and hospital exports (DICOM ECG,
HL7 aECG, GE MUSE and Philips XML: `dicom_ecg.py`, `aecg.py`, `muse.py`, `philips.py`), all
into a Record in mV; the formats' readers sit beside this file (`wfdb_record.py`, `edf.py`,
`tables.py` for CSV/NPY).

`read_record` is the only entry point. Every failure becomes an EcgMoeError naming the file and
the cause, so one broken file in a folder of thousands costs one error row, not the run.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.records.discover import EXPORTS, RECORD_SUFFIXES
from ecgmoe_cli.io.records.edf import read_edf
from ecgmoe_cli.io.records.record import Record, plausible_fs
from ecgmoe_cli.io.records.sniff import DICOM_SUFFIXES, XML_ROOTS, has_dicom_marker
from ecgmoe_cli.io.records.tables import read_csv, read_npy
from ecgmoe_cli.io.records.wfdb_record import read_wfdb


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
            rec = read_wfdb(p)
        elif suffix in (".edf", ".bdf"):
            rec = read_edf(p)
        elif suffix == ".csv":
            rec = read_csv(p, fs, lead_names)
        elif suffix == ".npy":
            rec = read_npy(p, fs, lead_names)
        elif suffix == ".xml":
            rec = _read_xml(p)
        elif suffix in DICOM_SUFFIXES or has_dicom_marker(p):
            from ecgmoe_cli.io.records.dicom_ecg import read_dicom_ecg

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
    from ecgmoe_cli.io.records.xml_safe import root_name

    root = root_name(p)
    if root == "AnnotatedECG":
        from ecgmoe_cli.io.records.aecg import read_aecg

        return read_aecg(p)
    if root == "RestingECG":
        from ecgmoe_cli.io.records.muse import read_muse

        return read_muse(p)
    if root == "restingecgdata":
        from ecgmoe_cli.io.records.philips import read_philips

        return read_philips(p)
    raise EcgMoeError(f"XML root <{root}> is not an ECG export (expected "
                      f"{', '.join(f'<{r}>' for r in XML_ROOTS)})", p)
