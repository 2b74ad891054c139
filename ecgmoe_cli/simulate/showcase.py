"""Curated findings for a small demo corpus (`ecgmoe simulate --showcase`).

Eight records that between them give a positive for every label of the five diagnostic tasks,
abnormal potassium both ways, and eight arrhythmia classes; eight 10 s 500 Hz 12-lead records
stay under 1 MB.
"""

from __future__ import annotations

from ecgmoe_cli.simulate.diagnosis import Diagnosis

SHOWCASE: tuple[tuple[frozenset[str], str, dict[str, str], bool], ...] = tuple(
    (frozenset(f.split()), k, terr, rvr)
    for f, k, terr, rvr in (
        ("", "", {}, False),
        ("AFIB LVH ISC", "", {"ISC": "lateral"}, True),
        ("AMI 1AVB LAE", "hypo", {}, False),
        ("IMI PMI RAE SEHYP SBRAD", "", {}, False),
        ("LMI CRBBB LAFB LNGQT", "", {}, False),
        ("CLBBB STACH", "", {}, False),
        ("WPW SARRH", "hyper", {}, False),
        ("IVCD RVH NDT BIGU", "", {}, False),
    )
)


def showcase_diagnosis(index: int, drawn: Diagnosis) -> Diagnosis:
    """Record `index` of the showcase, with the age and sex drawn for it."""
    findings, potassium, territory, rvr = SHOWCASE[index % len(SHOWCASE)]
    return Diagnosis(age=drawn.age, female=drawn.female, findings=set(findings),
                     potassium=potassium, territory=dict(territory), rvr=rvr)
