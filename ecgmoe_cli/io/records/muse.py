"""GE MUSE XML (`RestingECG`): base64 int16 leads scaled by LeadAmplitudeUnitsPerBit.

MUSE stores either all 12 leads or 8 (I, II, V1-V6): in 8-lead storage III, aVR, aVL and aVF
are by definition computed from I and II (Einthoven, Goldberger), as MUSE itself draws them,
and `meta["derived_leads"]` names them. The Rhythm waveform is the record; the Median beat,
when present, rides along in `meta["median_beats"]`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

import numpy as np

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.records.export_record import age_years, export_record, iso_time, sex_word
from ecgmoe_cli.io.records.record import Record
from ecgmoe_cli.io.records.wfdb_fast import unit_scale
from ecgmoe_cli.io.records.xml_safe import int16_samples, number, parse_xml, text_of

EIGHT_LEADS = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
DERIVED = ("III", "aVR", "aVL", "aVF")


def read_muse(p: Path) -> Record:
    root = parse_xml(p)
    waves = {(w.findtext("WaveformType") or "").strip().lower(): w for w in root.iter("Waveform")}
    if "rhythm" not in waves:
        raise EcgMoeError("MUSE XML has no Rhythm waveform", p)
    signal, fs, names, derived = _waveform(waves["rhythm"], p)
    patient, test = root.find("PatientDemographics"), root.find("TestDemographics")
    meta: dict[str, object] = {
        "format": "muse", "version": root.findtext("MuseInfo/MuseVersion"),
        "derived_leads": derived,
        "age": age_years(_field(patient, "PatientAge"), _field(patient, "AgeUnits") or "years"),
        "sex": sex_word(_field(patient, "Gender")),
        "acquired": iso_time(_when(_field(test, "AcquisitionDate"),
                                   _field(test, "AcquisitionTime"))),
        "device": _field(test, "AcquisitionDevice"),
    }
    if "median" in waves:
        median, median_fs, median_names, _ = _waveform(waves["median"], p)
        if median_names == names:
            meta["median_beats"], meta["median_fs"] = median, median_fs
    return export_record(p, signal, fs, names, meta)


def _field(parent: ET.Element | None, tag: str) -> str | None:
    return None if parent is None else (parent.findtext(tag) or "").strip() or None


def _when(date: str | None, time: str | None) -> datetime | None:
    """MUSE writes MM-DD-YYYY and HH:MM:SS."""
    try:
        return datetime.strptime(f"{date} {time or '00:00:00'}", "%m-%d-%Y %H:%M:%S")
    except ValueError:
        return None


def _waveform(wave: ET.Element, p: Path) -> tuple[np.ndarray, float, list[str], list[str]]:
    """((leads, n) mV, rate, lead names, names of the leads derived from I and II)."""
    kind = (wave.findtext("WaveformType") or "").strip()
    fs = number(wave.findtext("SampleBase"), f"{kind} SampleBase", p) * 10 ** number(
        wave.findtext("SampleExponent") or "0", f"{kind} SampleExponent", p)
    leads = wave.findall("LeadData")
    declared = wave.findtext("NumberofLeads")
    if declared is not None and int(number(declared, "NumberofLeads", p)) != len(leads):
        raise EcgMoeError(f"{kind} waveform declares {declared.strip()} leads and holds "
                          f"{len(leads)}", p)
    if not leads:
        raise EcgMoeError(f"{kind} waveform holds no leads", p)
    names = [text_of(lead.find("LeadID"), "LeadID", p) for lead in leads]
    rows = [_lead(lead, name, p) for lead, name in zip(leads, names)]
    if len({len(r) for r in rows}) > 1:
        raise EcgMoeError(f"{kind} leads differ in length ({min(map(len, rows))}-"
                          f"{max(map(len, rows))} samples)", p)
    signal = np.stack(rows)
    if sorted(names) == sorted(EIGHT_LEADS):
        signal, names = derive_limb_leads(signal, names)
        return signal, fs, names, list(DERIVED)
    return signal, fs, names, []


def derive_limb_leads(signal: np.ndarray, names: list[str]) -> tuple[np.ndarray, list[str]]:
    """8-lead storage -> I, II, III, aVR, aVL, aVF, then the chest leads as stored."""
    i, ii = signal[names.index("I")], signal[names.index("II")]
    limb = np.stack([i, ii, ii - i, -(i + ii) / 2, i - ii / 2, ii - i / 2])
    chest = [k for k, n in enumerate(names) if n not in ("I", "II")]
    return (np.concatenate([limb, signal[chest]]),
            ["I", "II", *DERIVED, *(names[k] for k in chest)])


def _lead(lead: ET.Element, name: str, p: Path) -> np.ndarray:
    """One lead in mV; its sample count must be what LeadSampleCountTotal declares."""
    raw = int16_samples(lead.findtext("WaveFormData"), f"lead {name} WaveFormData", p)
    count = lead.findtext("LeadSampleCountTotal")
    if count is not None and len(raw) != int(number(count, f"lead {name} sample count", p)):
        raise EcgMoeError(f"lead {name} holds {len(raw)} samples, LeadSampleCountTotal says "
                          f"{count.strip()} (truncated base64?)", p)
    units = (lead.findtext("LeadAmplitudeUnits") or "MICROVOLTS").strip()
    scale = unit_scale(units)
    if scale is None:
        raise EcgMoeError(f"lead {name} amplitude units {units!r} are not a voltage", p)
    per_bit = number(lead.findtext("LeadAmplitudeUnitsPerBit"), f"lead {name} units per bit", p)
    if per_bit <= 0:
        raise EcgMoeError(f"lead {name} LeadAmplitudeUnitsPerBit is {per_bit:g}", p)
    return raw.astype(np.float32) * np.float32(per_bit * scale)
