"""DICOM ECG waveforms (12-lead, general and ambulatory ECG storage) through pydicom.

The RHYTHM multiplex group (else the longest) is the record; a median-beat group rides along in
`meta["median_beats"]`. Lead names are the channel sources' code meanings as written
('Lead I (Einthoven)'); units come from each channel's sensitivity units.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.records.export_record import (
    age_years,
    compact_time,
    export_record,
    iso_time,
    sex_word,
)
from ecgmoe_cli.io.records.record import Record
from ecgmoe_cli.io.records.wfdb_fast import unit_scale

# 12-lead, general and ambulatory ECG waveform storage: 1.2.840.10008.5.1.4.1.1.9.1.{1,2,3}
ECG_SOP_CLASS_PREFIX = "1.2.840.10008.5.1.4.1.1.9.1."


def read_dicom_ecg(p: Path) -> Record:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(p)
    except InvalidDicomError as e:
        raise EcgMoeError(f"not a DICOM file ({e})", p) from None
    if "EncryptedAttributesSequence" in ds:
        raise EcgMoeError("DICOM holds encrypted attributes: decrypt it before reading", p)
    sop = str(ds.get("SOPClassUID", ""))
    if "WaveformSequence" not in ds or not ds.WaveformSequence:
        what = getattr(ds.get("SOPClassUID"), "name", sop) or "none"
        raise EcgMoeError(f"DICOM has no waveform sequence (5400,0100); SOP class: {what}", p)
    groups = list(ds.WaveformSequence)
    labels = [str(g.get("MultiplexGroupLabel", "")).strip().upper() for g in groups]
    sizes = [int(g.get("NumberOfWaveformSamples", 0)) for g in groups]
    rhythm = labels.index("RHYTHM") if "RHYTHM" in labels else sizes.index(max(sizes))
    signal, fs, names = _group(ds, rhythm, p)
    meta: dict[str, object] = {
        "format": "dicom", "sop_class": sop,
        "age": age_years(ds.get("PatientAge")), "sex": sex_word(ds.get("PatientSex")),
        "acquired": iso_time(compact_time(ds.get("AcquisitionDateTime"))
                             or compact_time(f"{ds.get('ContentDate', '')}"
                                             f"{ds.get('ContentTime', '')}")),
        "device": " ".join(str(ds.get(k, "")) for k in ("Manufacturer", "ManufacturerModelName")
                           ).strip(),
    }
    if "MEDIAN BEAT" in labels:
        median, median_fs, median_names = _group(ds, labels.index("MEDIAN BEAT"), p)
        if median_names == names:
            meta["median_beats"], meta["median_fs"] = median, median_fs
    return export_record(p, signal, fs, names, meta)


def _group(ds: Any, index: int, p: Path) -> tuple[np.ndarray, float, list[str]]:
    """One multiplex group as ((channels, n) mV, rate, channel names)."""
    g = ds.WaveformSequence[index]
    channels = list(g.get("ChannelDefinitionSequence", []))
    n_ch, n = int(g.get("NumberOfWaveformChannels", 0)), int(g.get("NumberOfWaveformSamples", 0))
    width = int(g.get("WaveformBitsAllocated", 16)) // 8
    data = g.get("WaveformData", b"") or b""
    if len(channels) != n_ch:
        raise EcgMoeError(f"waveform group {index} declares {n_ch} channels and defines "
                          f"{len(channels)}", p)
    if len(data) < n_ch * n * width:
        raise EcgMoeError(f"waveform data truncated: {len(data)} of {n_ch * n * width} bytes", p)
    values = ds.waveform_array(index).T  # (channels, n), scaled by the channel sensitivity
    scale = np.array([_to_mv(c, i, p) for i, c in enumerate(channels)])[:, None]
    return values * scale, float(g.SamplingFrequency), [_channel_name(c, i)
                                                         for i, c in enumerate(channels)]


def _to_mv(channel: Any, i: int, p: Path) -> float:
    units = channel.get("ChannelSensitivityUnitsSequence") or []
    code = str(units[0].get("CodeValue", "")) if units else ""
    scale = unit_scale(code)
    if scale is None:
        raise EcgMoeError(f"channel {i + 1} is in {code or 'no unit'!r}, not a voltage", p)
    return scale


def _channel_name(channel: Any, i: int) -> str:
    source = channel.get("ChannelSourceSequence") or []
    meaning = str(source[0].get("CodeMeaning", "")).strip() if source else ""
    return meaning or str(channel.get("ChannelLabel", "")).strip() or f"ch{i}"
