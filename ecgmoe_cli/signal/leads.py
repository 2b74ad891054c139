"""Canonical 12-lead names and the mapping of whatever a file calls its leads onto them.

Names are matched case- and space-insensitively through aliases (AVR, MLII, D2, "lead I"),
also as hospital exports spell them: DICOM code meanings ("Lead I (Einthoven)", "aVR,
augmented voltage, right") and HL7 aECG codes ("MDC_ECG_LEAD_AVR").
Non-ECG channels (pressure, pleth, respiration, Frank XYZ) are dropped. An ECG channel with no
recognisable lead name ("ECG", "ECG 1", "MCL1") feeds lead II when the record has no II, with
a warning, because lead II is what single-lead monitors most often record.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from ecgmoe_cli.errors import EcgMoeError

CANONICAL_LEADS: tuple[str, ...] = (
    "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6",
)
_BY_KEY = {lead.lower(): lead for lead in CANONICAL_LEADS}
_ALIASES = {
    "d1": "I", "d2": "II", "d3": "III", "di": "I", "dii": "II", "diii": "III",
    "mli": "I", "mlii": "II", "ml2": "II", "mliii": "III", "ml3": "III",
    "ar": "aVR", "al": "aVL", "af": "aVF",
}
_NON_ECG = re.compile(
    r"^(abp|art|pleth|pap|resp|cvp|spo2|sao2|edr|vx|vy|vz|x|y|z|icp|cpp|uap|lap|rap|pawp|"
    r"co2|etco2|hr|pulse|temp|nbp.*|press.*|flow|eeg.*|emg.*|eog.*|annotations?|status|"
    r"event.*|marker|time|imp.*|thorax|abdo.*|airflow|snore|position|sound|pcg|ppg)$"
)
_ECG_LIKE = re.compile(r"^(ecg|ekg|mcl|ml|cm\d|cc\d|ch\d|v$|es$|as$|ai$)")
_NONE_WORDS = {"-", "none", "drop", "off"}


def _key(name: str) -> str:
    """Lower case without spaces, underscores, dashes, a leading 'lead'/'ecg' word, an aECG
    'MDC_ECG_LEAD_' prefix, a trailing '(Einthoven)' or ', augmented voltage, right'."""
    k = re.sub(r"[\s_\-.]+", "", str(name).strip().lower()).partition(",")[0]
    k = re.sub(r"\([a-z]*\)$", "", k.removeprefix("mdcecg"))
    return k.removeprefix("lead")


def lead_of(name: str) -> str | None:
    """The canonical lead a channel name means, or None."""
    k = _key(name)
    for key in (k, k.removeprefix("ecg"), k.removeprefix("ekg")):
        if key in _BY_KEY:
            return _BY_KEY[key]
        if key in _ALIASES:
            return _ALIASES[key]
    return None


def is_non_ecg(name: str) -> bool:
    return bool(_NON_ECG.match(_key(name)))


def is_ecg_name(name: str) -> bool:
    """True for a known lead or an ECG-like channel name (used to pick rates, e.g. in EDF)."""
    return lead_of(name) is not None or (not is_non_ecg(name) and bool(_ECG_LIKE.match(_key(name))))


@dataclass
class LeadMapping:
    """Which record row feeds each canonical lead (None = missing), and what was set aside."""

    source_index: list[int | None]
    warnings: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    @property
    def used(self) -> list[str]:
        """Canonical names of the leads present, in canonical order."""
        return [lead for lead, i in zip(CANONICAL_LEADS, self.source_index) if i is not None]


def parse_lead_map(items: list[str] | None) -> dict[str, str]:
    """`["ECG1=II", "chan 3=V1"]` -> {"ECG1": "II", "chan 3": "V1"}; checks the lead names."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, lead = item.rpartition("=")
        if not sep or not name.strip():
            raise EcgMoeError(f"--lead-map expects NAME=LEAD, got {item!r}")
        out[name.strip()] = lead.strip()
    _check_targets(out)
    return out


def _check_targets(lead_map: dict[str, str]) -> dict[str, str | None]:
    """Map values onto canonical leads (None = drop); raises for an unknown lead."""
    out: dict[str, str | None] = {}
    for name, lead in lead_map.items():
        if lead.strip().lower() in _NONE_WORDS:
            out[_key(name)] = None
            continue
        canon = _BY_KEY.get(lead.strip().lower()) or lead_of(lead)
        if canon is None:
            raise EcgMoeError(f"--lead-map {name}={lead}: {lead!r} is not one of "
                              f"{', '.join(CANONICAL_LEADS)} (or 'none' to drop)")
        out[_key(name)] = canon
    return out


def canonicalize(lead_names: list[str], lead_map: dict[str, str] | None = None) -> LeadMapping:
    """Map a record's channel names onto CANONICAL_LEADS.

    The first channel naming a lead wins; later duplicates, non-ECG channels and unknown
    channels are dropped (listed in `dropped`, with a warning for the surprising ones).
    """
    m = _canonical(tuple(lead_names), tuple(sorted((lead_map or {}).items())))
    return LeadMapping(list(m.source_index), list(m.warnings), list(m.dropped))


@lru_cache(maxsize=256)  # a corpus has few distinct channel lists: decided once for each
def _canonical(lead_names: tuple[str, ...], lead_map: tuple[tuple[str, str], ...]) -> LeadMapping:
    overrides = _check_targets(dict(lead_map))
    source: list[int | None] = [None] * len(CANONICAL_LEADS)
    warnings: list[str] = []
    dropped: list[str] = []
    unknown_ecg: list[int] = []
    for i, name in enumerate(lead_names):
        k = _key(name)
        if k in overrides:
            lead = overrides[k]
            if lead is None:
                dropped.append(name)
                continue
        else:
            lead = lead_of(name)
        if lead is None:
            if is_non_ecg(name):
                dropped.append(name)
            elif _ECG_LIKE.match(k) or k.removeprefix("ecg").isdigit():
                unknown_ecg.append(i)
            else:
                dropped.append(name)
                warnings.append(f"channel {name!r} is not a known ECG lead; dropped")
            continue
        j = CANONICAL_LEADS.index(lead)
        if source[j] is None:
            source[j] = i
        else:
            dropped.append(name)
            warnings.append(f"channel {name!r} duplicates lead {lead}; dropped")
    ii = CANONICAL_LEADS.index("II")
    for n, i in enumerate(unknown_ecg):
        name = lead_names[i]
        if n == 0 and source[ii] is None:
            source[ii] = i
            warnings.append(f"ECG channel {name!r} has no standard lead name; used as lead II "
                            "(override with --lead-map)")
        else:
            dropped.append(name)
            warnings.append(f"ECG channel {name!r} has no standard lead name; dropped "
                            "(name it with --lead-map)")
    return LeadMapping(source, warnings, dropped)
