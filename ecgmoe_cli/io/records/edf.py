"""EDF/EDF+ and BDF records via pyedflib, after a size check pyedflib would print from C."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.records.record import Record
from ecgmoe_cli.io.records.wfdb_fast import unit_scale


def read_edf(p: Path) -> Record:
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
