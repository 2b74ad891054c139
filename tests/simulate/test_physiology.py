"""The simulator's ECGs meet clinical criteria, measured on the noise-free render by
tests/ecg_measure.py (the project's R-peak detector plus envelope/velocity wave boundaries;
nothing read from the simulator's own fiducials). QTc uses Fridericia, the correction the
simulator's QT model follows.
"""

from __future__ import annotations

import numpy as np
import pytest
from ecg_measure import q_waves, sokolow_lyon, summary

from ecgmoe_cli.simulate.diagnosis import Diagnosis
from ecgmoe_cli.simulate.dipole import LEADS
from ecgmoe_cli.simulate.synthetic import synthesize

FS = 500.0
SEED = 20261123


def _records(findings: set[str], n: int, potassium: str = "") -> list[np.ndarray]:
    """n noise-free renders of patients of all ages and both sexes showing `findings`."""
    out = []
    for i in range(n):
        dx = Diagnosis(age=20 + (i * 37) % 70, female=i % 2 == 1, findings=set(findings),
                       potassium=potassium)
        out.append(synthesize(SEED, i, FS, 10.0, dx=dx).clean)
    return out


@pytest.fixture(scope="module")
def normals() -> list[dict[str, float]]:
    return [summary(x, FS) for x in _records(set(), 24)]


def test_normal_intervals(normals: list[dict[str, float]]) -> None:
    for m in normals:
        assert 50 <= m["hr"] <= 100, m
        assert 120 <= m["pr"] <= 200, m
        assert 70 <= m["qrs"] <= 110, m
        assert 350 <= m["qtc"] <= 450, m
        assert m["p_found"] == 1.0 and m["pr_sd"] < 10, m


def test_complete_bundle_branch_block_is_wide() -> None:
    for code in ("CLBBB", "CRBBB"):
        for x in _records({code}, 6):
            assert summary(x, FS)["qrs"] >= 120, code


def test_lvh_meets_sokolow_lyon_and_normals_do_not() -> None:
    assert all(sokolow_lyon(x, FS) > 3.5 for x in _records({"LVH"}, 10))
    assert all(sokolow_lyon(x, FS) < 3.5 for x in _records(set(), 24))


def test_af_has_no_p_waves_and_irregular_rr(normals: list[dict[str, float]]) -> None:
    sinus_cv = max(m["rr_cv"] for m in normals)
    for x in _records({"AFIB"}, 10):
        m = summary(x, FS)
        assert m["rr_cv"] > max(0.08, 2.5 * sinus_cv), m
        # Fibrillatory waves may cross the threshold, but nothing precedes each QRS at a fixed PR.
        assert m["p_found"] < 0.5 or m["pr_sd"] > 40, m


def test_rate_criteria() -> None:
    assert all(summary(x, FS)["hr"] > 100 for x in _records({"STACH"}, 8))
    assert all(summary(x, FS)["hr"] < 60 for x in _records({"SBRAD"}, 8))


@pytest.mark.parametrize("code, leads", [("AMI", ["V1", "V2", "V3", "V4"]),
                                         ("IMI", ["II", "III", "aVF"]),
                                         ("LMI", ["I", "aVL", "V5", "V6"])])
def test_infarction_q_waves_in_territory(code: str, leads: list[str]) -> None:
    rows = [LEADS.index(lead) for lead in leads]

    def n_wide_q(x: np.ndarray) -> int:
        return sum(w >= 40 for w in q_waves(x, FS, rows))

    assert all(n_wide_q(x) >= 2 for x in _records({code}, 8)), code
    assert all(n_wide_q(x) <= 1 for x in _records(set(), 12)), code


def test_first_degree_av_block_and_wpw_pr() -> None:
    assert all(summary(x, FS)["pr"] > 200 for x in _records({"1AVB"}, 6))
    assert all(summary(x, FS)["pr"] < 120 for x in _records({"WPW"}, 6))
