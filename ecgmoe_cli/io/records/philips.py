"""Philips XML (`restingecgdata`, PageWriter / IntelliSpace ECG), document versions 1.03-1.04.

`waveforms/parsedwaveforms` holds the leads in base64: plain int16, lead after lead, or
XLI-compressed (`io/xli.py`). The stored III, aVR, aVL and aVF are residuals from the values
I and II (and III) predict, and are rebuilt here. Amplitudes are µV per bit
(`signalresolution`). Layout, residuals and version list follow sierra-ecg-tools' reader.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

import numpy as np

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.records.export_record import age_years, export_record, iso_time, sex_word
from ecgmoe_cli.io.records.record import Record
from ecgmoe_cli.io.records.xli import LIMB_LEADS, rebuild_limb_leads
from ecgmoe_cli.io.records.xml_safe import base64_bytes, int16_samples, number, parse_xml, text_of
from ecgmoe_cli.signal.leads import CANONICAL_LEADS

KNOWN_VERSIONS = ("1.03", "1.04")  # 1.04.01, 1.04.02 are 1.04


def read_philips(p: Path) -> Record:
    root = parse_xml(p)
    version = text_of(root.find("documentinfo/documentversion"), "documentversion", p)
    if not any(version == v or version.startswith(v + ".") for v in KNOWN_VERSIONS):
        raise EcgMoeError(f"Philips XML version {version!r} is not one this reader knows "
                          f"({', '.join(KNOWN_VERSIONS)})", p)
    acq = root.find("dataacquisition")
    signal_info = root.find("dataacquisition/signalcharacteristics")
    waves = root.find(".//parsedwaveforms")  # under waveforms/ in 1.03 and 1.04
    if acq is None or signal_info is None or waves is None:
        raise EcgMoeError("Philips XML lacks dataacquisition/signalcharacteristics or "
                          "waveforms/parsedwaveforms", p)
    fs = number(signal_info.findtext("samplingrate"), "samplingrate", p)
    uv_per_bit = number(signal_info.findtext("signalresolution")
                        or signal_info.findtext("resolution"), "signalresolution", p)
    if fs <= 0 or uv_per_bit <= 0:
        raise EcgMoeError(f"samplingrate {fs:g} Hz, signalresolution {uv_per_bit:g} µV: "
                          "both must be positive", p)
    names = _lead_names(waves, signal_info, p)
    n = round(number(waves.get("durationperchannel"), "durationperchannel", p) * fs / 1000)
    encoding = (waves.get("dataencoding") or "").strip().lower()
    if encoding != "base64":
        raise EcgMoeError(f"waveform encoding {waves.get('dataencoding')!r} is not Base64", p)
    compression = (waves.get("compressmethod") or waves.get("compression") or "none"
                   ).strip().upper()
    if compression == "XLI":
        digital = _xli_leads(waves.text, names, n, p)
    elif compression in ("NONE", "UNCOMPRESSED", ""):
        digital = _plain_leads(waves.text, names, n, p)
    else:
        raise EcgMoeError(f"waveform compression {compression!r} is not XLI or none", p)
    if names[:6] == LIMB_LEADS:
        digital = rebuild_limb_leads(digital)
    patient, machine = root.find("patient/generalpatientdata"), acq.find("machine")
    meta: dict[str, object] = {
        "format": "philips", "version": version, "compression": compression.lower(),
        "acquired": iso_time(_when(acq.get("date"), acq.get("time"))),
        "device": None if machine is None else machine.get("detaildescription"),
    }
    if patient is not None:
        meta["age"] = age_years(patient.findtext("age/years"), "years")
        meta["sex"] = sex_word(patient.findtext("sex"))
    return export_record(p, digital * (uv_per_bit / 1000), fs, names, meta)


def _lead_names(waves: ET.Element, signal_info: ET.Element, p: Path) -> list[str]:
    """`leadlabels` (as many as `numberofleads`), else the standard 12 of an STD-12 cart."""
    labels = (waves.get("leadlabels") or "").split()
    if labels:
        count = waves.get("numberofleads")
        return labels[: int(number(count, "numberofleads", p))] if count else labels
    if (signal_info.findtext("acquisitiontype") or "").strip() in ("STD-12", "10-WIRE"):
        channels = int(number(signal_info.findtext("numberchannelsallocated"),
                              "numberchannelsallocated", p))
        return [*CANONICAL_LEADS, *(f"Channel {i}" for i in range(13, channels + 1))][:channels]
    raise EcgMoeError("parsedwaveforms names no leads (no leadlabels, no STD-12 acquisition)", p)


def _when(date: str | None, time: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(f"{date}T{time or '00:00:00'}")
    except ValueError:
        return None


def _plain_leads(text: str | None, names: list[str], n: int, p: Path) -> np.ndarray:
    """Uncompressed: n int16 samples per lead, lead after lead."""
    raw = int16_samples(text, "parsedwaveforms", p)
    if n <= 0 or len(raw) < n * len(names):
        raise EcgMoeError(f"parsedwaveforms holds {len(raw) / max(n, 1):.1f} leads of "
                          f"{n} samples; leadlabels names {len(names)}", p)
    return raw[: n * len(names)].reshape(len(names), n).astype(np.int64)


def _xli_leads(text: str | None, names: list[str], n: int, p: Path) -> np.ndarray:
    """XLI chunks, one per lead, cut to the declared length."""
    from ecgmoe_cli.io.records.xli import xli_decode

    try:
        leads = xli_decode(base64_bytes(text, "parsedwaveforms", p))
    except ValueError as e:
        raise EcgMoeError(f"XLI stream is damaged ({e})", p) from None
    short = [len(x) for x in leads[: len(names)] if len(x) < n]
    if len(leads) < len(names) or short:
        raise EcgMoeError(f"XLI stream holds {len(leads)} leads ({len(short)} shorter than "
                          f"{n} samples); leadlabels names {len(names)}", p)
    return np.stack([lead[:n] for lead in leads[: len(names)]])
