"""Lead canonicalisation: aliases, non-ECG channels, unknown ECG channels, --lead-map."""

from __future__ import annotations

import pytest

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.signal.leads import CANONICAL_LEADS, canonicalize, parse_lead_map


def _feeds(names: list[str], lead_map: dict[str, str] | None = None) -> dict[str, str]:
    m = canonicalize(names, lead_map)
    return {lead: names[i] for lead, i in zip(CANONICAL_LEADS, m.source_index) if i is not None}


def test_twelve_leads_in_any_case_and_spelling() -> None:
    for names in (list(CANONICAL_LEADS),
                  ["i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6"],
                  ["I", "II", "III", "AVR", "AVL", "AVF", "V1 ", " V2", "V3", "V4", "V5", "V6"],
                  ["D1", "D2", "D3", "aVR", "aVL", "aVF", "lead V1", "Lead V2", "V3", "V4",
                   "V5", "V6"]):
        m = canonicalize(names)
        assert m.source_index == list(range(12)) and not m.warnings and not m.dropped


def test_hospital_export_lead_names() -> None:
    """DICOM channel code meanings and HL7 aECG sequence codes, as the files write them."""
    dicom = ["Lead I (Einthoven)", "Lead II", "Lead III", "aVR, augmented voltage, right",
             "aVL, augmented voltage, left", "Lead aVF", *(f"Lead V{i}" for i in range(1, 7))]
    aecg = [f"MDC_ECG_LEAD_{lead.upper()}" for lead in CANONICAL_LEADS]
    for names in (dicom, aecg, list(reversed(aecg))):
        m = canonicalize(names)
        assert sorted(m.used) == sorted(CANONICAL_LEADS) and not m.warnings and not m.dropped
    assert canonicalize(dicom).source_index == list(range(12))
    assert canonicalize(list(reversed(aecg))).source_index == list(range(11, -1, -1))


@pytest.mark.parametrize("name", ["MLII", "ML2", "ML II", "ml_ii", "lead II", "ECG II", "D2"])
def test_lead_ii_aliases(name: str) -> None:
    assert _feeds([name]) == {"II": name}


def test_non_ecg_channels_are_dropped_without_fuss() -> None:
    names = ["II", "ABP", "ART", "PLETH", "PAP", "RESP", "CVP", "SpO2", "EDR", "vx", "vy", "vz",
             "X", "Y", "Z"]
    m = canonicalize(names)
    assert _feeds(names) == {"II": "II"}
    assert m.dropped == names[1:] and not m.warnings


@pytest.mark.parametrize("name", ["ECG", "ECG 1", "ECG1", "MCL1", "ekg"])
def test_unknown_ecg_channel_becomes_lead_ii_with_a_warning(name: str) -> None:
    m = canonicalize([name, "ABP"])
    assert m.used == ["II"] and m.source_index[1] == 0
    assert len(m.warnings) == 1 and "lead II" in m.warnings[0]


def test_only_the_first_unknown_ecg_channel_is_used_and_never_over_a_real_ii() -> None:
    m = canonicalize(["ECG 1", "ECG 2"])
    assert m.source_index[1] == 0 and m.dropped == ["ECG 2"] and len(m.warnings) == 2
    m = canonicalize(["ECG", "II"])
    assert m.source_index[1] == 1 and m.dropped == ["ECG"]


def test_duplicates_keep_the_first() -> None:
    m = canonicalize(["II", "ii", "V1"])
    assert m.source_index[1] == 0 and m.dropped == ["ii"] and "duplicates" in m.warnings[0]


def test_lead_map_overrides_and_drops() -> None:
    assert _feeds(["ECG 1", "ECG 2"], {"ECG 1": "V1", "ecg 2": "v5"}) == {"V1": "ECG 1",
                                                                         "V5": "ECG 2"}
    m = canonicalize(["II", "V1"], {"V1": "none"})
    assert m.used == ["II"] and m.dropped == ["V1"]
    assert parse_lead_map(["ECG 1=II", "a=b=aVF"]) == {"ECG 1": "II", "a=b": "aVF"}
    with pytest.raises(EcgMoeError, match="not one of"):
        canonicalize(["ECG"], {"ECG": "V7"})
    with pytest.raises(EcgMoeError, match="NAME=LEAD"):
        parse_lead_map(["II"])


def test_unknown_non_ecg_name_is_dropped_with_a_warning() -> None:
    m = canonicalize(["II", "Foo"])
    assert m.dropped == ["Foo"] and "not a known ECG lead" in m.warnings[0]
