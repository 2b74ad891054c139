"""What a synthetic record shows: patient covariates and findings, drawn as they co-occur in
real data.

A finding is named by the PTB-XL SCP code it is labelled with (plus a few simulator-only rhythm
names: EAR for an ectopic atrial rhythm). Every finding drawn is rendered by `pathology.apply`,
so the labels say exactly what the signal shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ecgmoe_cli.io.labels.codes import arrhythmia_class, scp_table

P_NORMAL = 0.40
P_POTASSIUM = 0.10

# Category -> (finding, relative weight). Weights give every label of the five tasks enough
# positives.
CATEGORIES: dict[str, tuple[tuple[str, float], ...]] = {
    "rhythm": (("AFIB", 3.0), ("AFLT", 1.0), ("STACH", 2.0), ("SBRAD", 2.0), ("SARRH", 2.0),
               ("PAC", 1.0), ("PVC", 1.5), ("BIGU", 0.7), ("TRIGU", 0.5), ("EAR", 0.8),
               ("PACE", 0.8)),
    "infarction": (("AMI", 1.0), ("IMI", 1.0), ("LMI", 1.0), ("PMI", 1.0)),
    "conduction": (("CLBBB", 1.0), ("CRBBB", 0.8), ("IRBBB", 0.5), ("LAFB", 0.7), ("LPFB", 0.4),
                   ("1AVB", 1.0), ("2AVB", 0.4), ("3AVB", 0.3), ("IVCD", 1.0), ("WPW", 1.0)),
    "st_t": (("NDT", 1.0), ("ISC", 1.0), ("LNGQT", 1.0)),
    "hypertrophy": (("LVH", 1.2), ("RVH", 0.8), ("LAE", 1.0), ("RAE", 1.0), ("SEHYP", 0.8)),
}
CATEGORY_WEIGHT = {"rhythm": 0.24, "infarction": 0.20, "conduction": 0.24, "st_t": 0.14,
                   "hypertrophy": 0.18}

ATRIAL = {"AFIB", "AFLT", "STACH", "SBRAD", "SARRH", "EAR", "PACE"}  # one atrial/base rhythm
ECTOPY = {"PAC", "PVC", "BIGU", "TRIGU"}
AVB = {"1AVB", "2AVB", "3AVB"}
WIDE = {"CLBBB", "CRBBB", "IRBBB", "IVCD", "WPW"}
MI = {"AMI", "IMI", "LMI", "PMI"}
STT = {"NDT", "ISC"}
SINUS_OK = {"STACH", "SBRAD", "SARRH"}  # sinus variants that allow AV block and ectopy

# Pairs that cannot be drawn together: one would hide the other, or real readers never code both.
_CLASH = [
    (ATRIAL, ATRIAL), (ECTOPY, ECTOPY), (AVB, AVB), ({"LVH"}, {"RVH"}), ({"LAFB"}, {"LPFB"}),
    ({"AFIB", "AFLT", "PACE", "EAR"}, AVB | ECTOPY), ({"3AVB", "2AVB"}, ECTOPY),
    ({"3AVB"}, ATRIAL), ({"PACE"}, WIDE | MI | {"LAFB", "LPFB", "LVH", "RVH", "SEHYP"} | STT),
    ({"CLBBB"}, WIDE | {"LAFB", "LPFB"} | MI | {"LVH", "RVH", "SEHYP"} | STT),
    ({"CRBBB", "IRBBB"}, {"CRBBB", "IRBBB", "IVCD", "WPW"}),
    ({"IVCD"}, {"WPW"}), ({"WPW"}, AVB | MI | {"LAFB", "LPFB", "LVH", "RVH", "SEHYP"} | STT),
    ({"LPFB"}, {"RVH"}), ({"LAFB"}, {"IMI"}), (MI, STT), ({"NDT"}, {"ISC"}),
    ({"SEHYP"}, {"LMI", "LVH", "RVH"}), ({"AFIB", "AFLT"}, {"LAE", "RAE"}),
]


def clashes(a: str, b: str) -> bool:
    """True when findings a and b are never drawn together."""
    return a == b or any((a in x and b in y) or (b in x and a in y) for x, y in _CLASH)


@dataclass
class Diagnosis:
    """One record's patient and findings, with the labels they give."""

    age: int
    female: bool
    findings: set[str] = field(default_factory=set)
    potassium: str = ""  # "" | hyper | hypo
    territory: dict[str, str] = field(default_factory=dict)  # ISC -> lateral | anterior | ...
    rvr: bool = False  # AF with a rapid ventricular response (> 100 bpm)

    def scp_codes(self) -> dict[str, float]:
        """PTB-XL scp_codes: the finding codes with likelihoods, SR for sinus rhythms."""
        codes: dict[str, float] = {}
        if not self.findings:
            codes["NORM"] = 100.0
        for f in sorted(self.findings):
            if f == "EAR":
                continue
            code = {"ISC": _ISC_CODE.get(self.territory.get("ISC", ""), "ISC_"),
                    "LAE": "LAO/LAE", "RAE": "RAO/RAE"}.get(f, f)
            codes[code] = 100.0 if f not in ("NDT",) else 50.0
            if f in ("BIGU", "TRIGU"):
                codes["PVC"] = 100.0
        if not self.findings & {"AFIB", "AFLT", "PACE", "EAR", "STACH", "SBRAD"}:
            codes["SR"] = 0.0
        return codes

    def arrhythmia(self) -> str:
        """The arrhythmia class, by the same priority the label sources use."""
        if "AFIB" in self.findings or "AFLT" in self.findings:
            return "afib_rvr" if self.rvr else "afib"
        if "EAR" in self.findings:
            return "ectopic_atrial"
        table = scp_table()
        cls = arrhythmia_class(table[c].arrhythmia for c in self.scp_codes()
                               if c in table and table[c].arrhythmia)
        return cls or "sinus"


_ISC_CODE = {"lateral": "ISCLA", "anterior": "ISCAN", "inferior": "ISCIN", "anterolateral": "ISCAL"}


def draw_diagnosis(rng: np.random.Generator) -> Diagnosis:
    """Age, sex, findings (about 40 % none) and potassium state of one synthetic patient."""
    age = int(np.clip(np.round(rng.normal(60.0, 17.0)), 18, 95))
    dx = Diagnosis(age=age, female=bool(rng.random() < 0.48))
    if rng.random() >= P_NORMAL:
        n = int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))
        cats = list(CATEGORY_WEIGHT)
        cat_p = np.array([CATEGORY_WEIGHT[c] for c in cats])
        for _ in range(12):
            if len(dx.findings) >= n:
                break
            cat = cats[int(rng.choice(len(cats), p=cat_p / cat_p.sum()))]
            names = [f for f, _ in CATEGORIES[cat]]
            w = np.array([x for _, x in CATEGORIES[cat]])
            f = names[int(rng.choice(len(names), p=w / w.sum()))]
            if not any(clashes(f, g) for g in dx.findings):
                dx.findings.add(f)
    if "ISC" in dx.findings:
        dx.territory["ISC"] = str(rng.choice(list(_ISC_CODE)))
    if "AFIB" in dx.findings:
        dx.rvr = bool(rng.random() < 0.35)
    if rng.random() < P_POTASSIUM and not dx.findings & (WIDE | {"LNGQT", "PACE"}):
        dx.potassium = "hyper" if rng.random() < 0.5 else "hypo"
    return dx
