"""HL7 annotated ECG (aECG, the FDA's XML): `AnnotatedECG` -> series -> sequenceSet.

One sequence is time (a GLIST increment gives the rate), each other one a lead: an SLIST of
integer digits with an origin and a scale in physical units (value = origin + scale * digit).
Lead names are the sequence codes as written (`MDC_ECG_LEAD_II`). The first rhythm series is
the record; derived series (median beats) are not read.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.records.export_record import (
    compact_time,
    export_record,
    iso_time,
    sex_word,
    years_between,
)
from ecgmoe_cli.io.records.record import Record
from ecgmoe_cli.io.records.wfdb_fast import unit_scale
from ecgmoe_cli.io.records.xml_safe import number, parse_xml, text_of

_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


def read_aecg(p: Path) -> Record:
    root = parse_xml(p)
    series = root.findall("component/series")
    if not series:
        raise EcgMoeError("aECG holds no series", p)
    rhythm = next((s for s in series if (_attr(s, "code", "code") or "").upper() == "RHYTHM"),
                  series[0])
    sequences = rhythm.findall("component/sequenceSet/component/sequence")
    times = [s for s in sequences if s.find("value/increment") is not None]
    leads = [s for s in sequences if s.find("value/digits") is not None]
    if not times:
        raise EcgMoeError("aECG series has no time sequence (no sampling rate)", p)
    if not leads:
        raise EcgMoeError("aECG series has no lead sequences", p)
    increment = times[0].find("value/increment")
    step = number(increment.get("value"), "time increment", p) * _seconds(increment, p)
    if step <= 0:
        raise EcgMoeError(f"time increment {step:g} s is not positive", p)
    names = [_attr(s, "code", "code") or f"ch{i}" for i, s in enumerate(leads)]
    rows = [_lead(s, name, p) for s, name in zip(leads, names)]
    if len({len(r) for r in rows}) > 1:
        raise EcgMoeError(f"aECG leads differ in length ({min(map(len, rows))}-"
                          f"{max(map(len, rows))} samples)", p)
    when = compact_time(_attr(root, "effectiveTime/low", "value"))
    person = root.find("componentOf/timepointEvent/componentOf/subjectAssignment/subject/"
                       "trialSubject/subjectDemographicPerson")
    meta: dict[str, object] = {"format": "aecg", "acquired": iso_time(when),
                               "device": _device(rhythm)}
    if person is not None:
        meta["sex"] = sex_word(_attr(person, "administrativeGenderCode", "code"))
        meta["age"] = years_between(compact_time(_attr(person, "birthTime", "value")), when)
    return export_record(p, np.stack(rows), 1.0 / step, names, meta)


def _attr(el: ET.Element, path: str, name: str) -> str | None:
    found = el.find(path)
    return None if found is None else found.get(name)


def _seconds(increment: ET.Element, p: Path) -> float:
    unit = increment.get("unit", "s").strip()
    if unit not in _SECONDS:
        raise EcgMoeError(f"time increment unit {unit!r} is not a time unit", p)
    return _SECONDS[unit]


def _lead(seq: ET.Element, name: str, p: Path) -> np.ndarray:
    """origin + scale * digits, in mV."""
    value = seq.find("value")
    origin, scale = value.find("origin"), value.find("scale")
    if scale is None:
        raise EcgMoeError(f"lead {name} has no scale", p)
    per_digit = number(scale.get("value"), f"lead {name} scale", p) * _mv(scale, name, p)
    offset = 0.0 if origin is None else number(origin.get("value"), f"lead {name} origin",
                                                  p) * _mv(origin, name, p)
    try:
        digits = np.array(text_of(value.find("digits"), f"digits of lead {name}", p).split(),
                          dtype=np.float64)
    except ValueError:
        raise EcgMoeError(f"lead {name} digits are not numbers", p) from None
    return offset + per_digit * digits


def _mv(el: ET.Element, name: str, p: Path) -> float:
    unit = el.get("unit", "")
    scale = unit_scale(unit)
    if scale is None:
        raise EcgMoeError(f"lead {name} is in {unit or 'no unit'!r}, not a voltage", p)
    return scale


def _device(series: ET.Element) -> str | None:
    device = series.find("author/seriesAuthor/manufacturedSeriesDevice")
    if device is None:
        return None
    org = series.findtext("author/seriesAuthor/manufacturerOrganization/name") or ""
    return " ".join(f"{org} {device.findtext('manufacturerModelName') or ''}".split()) or None
